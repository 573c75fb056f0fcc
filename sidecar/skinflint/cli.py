"""The ``skinflint`` command: ``serve``, ``version``, ``config check``, ``budget``, ``report``,
and ``estimate`` / ``project`` (defined in ``foresight_cli``).

``skinflint budget get|set|list|delete`` talks gRPC to a running sidecar (``--address``,
default 127.0.0.1:50051) and prints rich tables (``--json`` for scripts); a failed RPC exits 1
with the status code and message.

Exit codes: 0 success; 2 invalid configuration (the message on stderr names the key and
the fix); 1 any other failure at start.

Flags take their environment variable as a fallback for ``--help``'s sake, but the values
are handed to ``load_settings`` only when typed on the command line: the environment is
read there, so an error names the real source of a bad value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from skinflint import __version__
from skinflint.config import (
    CONFIG_ENV,
    NAMED_OVERRIDES,
    Settings,
    data_dir_issue,
    load_settings,
    resolve_config_path,
)
from skinflint.errors import ConfigError
from skinflint.foresight_cli import register as register_foresight

EXIT_CONFIG = 2

app = typer.Typer(
    name="skinflint",
    help="Cost-aware inference sidecar for LLM applications.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", envvar=CONFIG_ENV, help="YAML config file.", show_default=False),
]


def _from_command_line(ctx: typer.Context, name: str, value: Any) -> Any:
    """``value`` if it was typed as a flag, else None (the environment is read later)."""
    source = ctx.get_parameter_source(name)
    # Compared by name: typer vendors its own click, whose enum is not importable publicly.
    return value if source is not None and source.name == "COMMANDLINE" else None


def _fail_config(error: ConfigError) -> typer.Exit:
    typer.echo(f"skinflint: invalid configuration: {error}", err=True)
    return typer.Exit(EXIT_CONFIG)


def _load(ctx: typer.Context, config: Path | None, flags: dict[str, Any]) -> Settings:
    try:
        return load_settings(_from_command_line(ctx, "config", config), flags=flags)
    except ConfigError as exc:
        raise _fail_config(exc) from None


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it imports (grpc.aio and the provider SDKs share one loop, and
    uvloop's is cheaper per callback); otherwise asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(envvar=NAMED_OVERRIDES["host"].env, help="Listen address [127.0.0.1]."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(envvar=NAMED_OVERRIDES["port"].env, help="Listen port; 0 picks one [50051]."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            envvar=NAMED_OVERRIDES["data_dir"].env, help="Data directory [./skinflint-data]."
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run the gRPC sidecar until SIGTERM/SIGINT, then drain in-flight calls and exit."""
    # Imported here so `version` and `config check` stay quick and need no gRPC.
    from skinflint.app import App
    from skinflint.logs import configure_logging
    from skinflint.server import serve as run_server

    flags = {
        name: _from_command_line(ctx, name, value)
        for name, value in (("host", host), ("port", port), ("data_dir", data_dir))
    }
    settings = _load(ctx, config, flags)
    configure_logging(settings.logging)
    if settings.server.workers > 1:  # several processes on one port (skinflint.workers)
        from skinflint.workers import supervise

        try:
            path = _from_command_line(ctx, "config", config)
            code = supervise(settings, str(path) if path else None, flags, _event_loop_factory())
        except ConfigError as exc:
            raise _fail_config(exc) from None
        raise typer.Exit(code)
    try:
        application = App.open(settings)
    except ConfigError as exc:
        raise _fail_config(exc) from None
    try:
        # asyncio.Runner, not asyncio.run: loop_factory reached asyncio.run only in 3.12.
        with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
            runner.run(run_server(application))
    except ConfigError as exc:
        application.close()
        raise _fail_config(exc) from None


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"skinflint {__version__}")


@config_app.command("check")
def config_check(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Validate the configuration (file + environment) and print the effective result."""
    settings = _load(ctx, config, {})
    issue = data_dir_issue(settings)
    if issue is not None:
        raise _fail_config(ConfigError([issue]))
    path = resolve_config_path(_from_command_line(ctx, "config", config))
    origin = f"{path} + environment" if path is not None else "defaults + environment"
    typer.echo(f"# skinflint effective configuration ({origin})")
    typer.echo(settings.to_yaml(), nl=False)
    typer.echo("configuration OK", err=True)


# ---------------------------------------------------------------------------------------------
# skinflint budget get|set|list|delete: the budget RPCs of a running sidecar
# ---------------------------------------------------------------------------------------------

budget_app = typer.Typer(
    help="Manage the budgets of a running sidecar (over gRPC).", no_args_is_help=True
)
app.add_typer(budget_app, name="budget")

DEFAULT_ADDRESS = "127.0.0.1:50051"
AddressOption = Annotated[
    str,
    typer.Option("--address", envvar="SKINFLINT_ADDRESS", help="The sidecar's gRPC address."),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON (one object per budget) instead of a table.")
]
_WINDOW_NAMES = ("minute", "hour", "day", "month", "total")
_ACTION_NAMES = ("reject", "downgrade", "defer")


def _rpc(address: str, method: str, request: Any) -> Any:
    """Call one budget RPC; a failed call exits 1 with the status and its message."""
    import grpc

    from skinflint.v1 import skinflint_pb2_grpc as pb_grpc

    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.SkinflintStub(channel)
        try:
            return getattr(stub, method)(request, timeout=30)
        except grpc.RpcError as exc:
            code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
            details = exc.details() if hasattr(exc, "details") else str(exc)
            typer.echo(f"skinflint: {method} failed: {code}: {details}", err=True)
            raise typer.Exit(1) from None


def _usd(nanousd: int) -> str:
    return f"${nanousd / 1e9:,.6f}".rstrip("0").rstrip(".")


def _budget_dict(budget: Any) -> dict[str, Any]:
    from skinflint.v1 import skinflint_pb2 as pb

    spec, state = budget.spec, budget.state
    return {
        "id": spec.id,
        "scope": spec.scope,
        "window": pb.BudgetWindow.Name(spec.window).removeprefix("BUDGET_WINDOW_").lower(),
        "action": pb.BudgetAction.Name(spec.action).removeprefix("BUDGET_ACTION_").lower(),
        "limit_nanousd": spec.limit_nanousd,
        "limit_tokens": spec.limit_tokens,
        "soft_thresholds_percent": list(spec.soft_thresholds_percent),
        "spent_nanousd": state.spent_nanousd,
        "reserved_nanousd": state.reserved_nanousd,
        "remaining_nanousd": state.remaining_nanousd,
        "spent_tokens": state.spent_tokens,
        "reserved_tokens": state.reserved_tokens,
        "remaining_tokens": state.remaining_tokens,
        "requests": state.requests,
        "window_start": state.window_start.ToJsonString(),
        "resets_at": state.resets_at.ToJsonString() if state.HasField("resets_at") else None,
    }


def _print_budgets(budgets: list[Any], as_json: bool) -> None:
    import json

    rows = [_budget_dict(b) for b in budgets]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="budgets", show_lines=False)
    for column in ("id", "scope", "window", "action", "limit", "spent", "reserved", "remaining"):
        table.add_column(column, overflow="fold")
    table.add_column("requests", justify="right")
    table.add_column("resets at (UTC)")

    def money_and_tokens(row: dict[str, Any], key: str) -> str:
        parts = []
        if row["limit_nanousd"]:
            parts.append(_usd(row[f"{key}_nanousd"]))
        if row["limit_tokens"]:
            parts.append(f"{row[f'{key}_tokens']:,} tok")
        return "\n".join(parts)

    for row in rows:
        limits = []
        if row["limit_nanousd"]:
            limits.append(_usd(row["limit_nanousd"]))
        if row["limit_tokens"]:
            limits.append(f"{row['limit_tokens']:,} tok")
        table.add_row(
            row["id"],
            row["scope"],
            row["window"],
            row["action"],
            "\n".join(limits),
            money_and_tokens(row, "spent"),
            money_and_tokens(row, "reserved"),
            money_and_tokens(row, "remaining"),
            str(row["requests"]),
            row["resets_at"] or "never",
        )
    Console(width=160).print(table)


@budget_app.command("get")
def budget_get(
    budget_id: Annotated[str, typer.Argument(help="The budget's id.")],
    address: AddressOption = DEFAULT_ADDRESS,
    as_json: JsonOption = False,
) -> None:
    """Show one budget: its spec, spent, reserved, remaining and reset time."""
    from skinflint.v1 import skinflint_pb2 as pb

    _print_budgets([_rpc(address, "GetBudget", pb.GetBudgetRequest(id=budget_id))], as_json)


@budget_app.command("set")
def budget_set(
    budget_id: Annotated[str, typer.Argument(help="The budget's id (created or replaced).")],
    scope: Annotated[
        str, typer.Option(help='"global", or tenant:/team:/feature:/user: parts joined by "+".')
    ],
    window: Annotated[str, typer.Option(help="minute | hour | day | month | total.")],
    limit_usd: Annotated[
        str | None, typer.Option(help="Money limit in USD (exact decimal, e.g. 12.50).")
    ] = None,
    limit_nanousd: Annotated[int, typer.Option(help="Money limit in nano-USD.")] = 0,
    limit_tokens: Annotated[int, typer.Option(help="Token limit.")] = 0,
    threshold: Annotated[
        list[int] | None,
        typer.Option("--threshold", help="Soft threshold percent (repeat: 50, 80, 100)."),
    ] = None,
    action: Annotated[str, typer.Option(help="reject | downgrade | defer.")] = "reject",
    address: AddressOption = DEFAULT_ADDRESS,
    as_json: JsonOption = False,
) -> None:
    """Create or replace a budget."""
    from decimal import Decimal, InvalidOperation

    from skinflint.v1 import skinflint_pb2 as pb

    if window not in _WINDOW_NAMES:
        typer.echo(f"skinflint: --window must be one of {', '.join(_WINDOW_NAMES)}", err=True)
        raise typer.Exit(2)
    if action not in _ACTION_NAMES:
        typer.echo(f"skinflint: --action must be one of {', '.join(_ACTION_NAMES)}", err=True)
        raise typer.Exit(2)
    if limit_usd is not None:
        try:
            nano = Decimal(limit_usd).scaleb(9)
        except InvalidOperation:
            nano = Decimal("NaN")
        if not nano.is_finite() or nano != nano.to_integral_value() or limit_nanousd:
            typer.echo(
                "skinflint: --limit-usd takes a USD amount with at most 9 decimals, and not "
                "together with --limit-nanousd",
                err=True,
            )
            raise typer.Exit(2)
        limit_nanousd = int(nano)
    spec = pb.BudgetSpec(
        id=budget_id,
        scope=scope,
        window=pb.BudgetWindow.Value(f"BUDGET_WINDOW_{window.upper()}"),
        limit_nanousd=limit_nanousd,
        limit_tokens=limit_tokens,
        soft_thresholds_percent=threshold or [],
        action=pb.BudgetAction.Value(f"BUDGET_ACTION_{action.upper()}"),
    )
    _print_budgets([_rpc(address, "SetBudget", pb.SetBudgetRequest(budget=spec))], as_json)


@budget_app.command("list")
def budget_list(
    scope_prefix: Annotated[str, typer.Option(help="Only scopes starting with this.")] = "",
    address: AddressOption = DEFAULT_ADDRESS,
    as_json: JsonOption = False,
) -> None:
    """List every budget (all pages) with its current window."""
    from skinflint.v1 import skinflint_pb2 as pb

    budgets: list[Any] = []
    token = ""
    while True:
        request = pb.ListBudgetsRequest(scope_prefix=scope_prefix, page_size=1000, page_token=token)
        page = _rpc(address, "ListBudgets", request)
        budgets.extend(page.budgets)
        token = page.next_page_token
        if not token:
            break
    _print_budgets(budgets, as_json)


@budget_app.command("delete")
def budget_delete(
    budget_id: Annotated[str, typer.Argument(help="The budget's id.")],
    address: AddressOption = DEFAULT_ADDRESS,
) -> None:
    """Delete a budget and its spend; exits 1 when there was no such budget."""
    from skinflint.v1 import skinflint_pb2 as pb

    response = _rpc(address, "DeleteBudget", pb.DeleteBudgetRequest(id=budget_id))
    if not response.deleted:
        typer.echo(f"skinflint: no budget {budget_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"deleted budget {budget_id}")


# ---------------------------------------------------------------------------------------------
# skinflint report: spend, baseline and savings from the ledger in the data dir
# ---------------------------------------------------------------------------------------------


@app.command()
def report(
    ctx: typer.Context,
    since: Annotated[
        str, typer.Option(help="Start: a duration back from now (30m, 24h, 7d, 2w) or an ISO date.")
    ] = "30d",
    by: Annotated[
        str, typer.Option(help="Group by feature | team | tenant | model | tier | lane.")
    ] = "feature",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (exact nano-USD) instead of tables.")
    ] = False,
    html_path: Annotated[
        Path | None, typer.Option("--html", help="Also write an HTML page with charts here.")
    ] = None,
    png_path: Annotated[
        Path | None, typer.Option("--png", help="Also write the charts as a PNG here.")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            envvar=NAMED_OVERRIDES["data_dir"].env, help="Data directory [./skinflint-data]."
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Spend, requests, baseline and savings by lever from the ledger, with top spenders."""
    import json
    import sqlite3
    from datetime import UTC, datetime

    from rich.console import Console

    from skinflint.ledger import FILENAME
    from skinflint.reporting.report import GroupBy, build_report, parse_since, report_json

    settings = _load(ctx, config, {"data_dir": _from_command_line(ctx, "data_dir", data_dir)})
    try:
        group = GroupBy(by)
    except ValueError:
        choices = " | ".join(g.value for g in GroupBy)
        typer.echo(f"skinflint: --by {by!r}: use one of {choices}", err=True)
        raise typer.Exit(1) from None
    now = datetime.now(UTC)
    try:
        start = parse_since(since, now)
    except ValueError as exc:
        typer.echo(f"skinflint: {exc}", err=True)
        raise typer.Exit(1) from None
    path = settings.data_dir / FILENAME
    if not path.is_file():
        typer.echo(
            f"skinflint: no ledger at {path}: the sidecar writes it while serving "
            "(ledger.enabled); pass --data-dir to read another one",
            err=True,
        )
        raise typer.Exit(1)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = build_report(conn, since=start, until=now, by=group)
    finally:
        conn.close()
    if as_json:
        typer.echo(json.dumps(report_json(result), indent=2))
    else:
        from skinflint.reporting.render import print_report

        print_report(result, Console())
    if html_path is not None or png_path is not None:
        from skinflint.reporting.charts import charts_png
        from skinflint.reporting.render import report_html

        try:
            png = charts_png(result)
        except ConfigError as exc:
            raise _fail_config(exc) from None
        if png_path is not None:
            png_path.write_bytes(png)
        if html_path is not None:
            html_path.write_text(report_html(result, png), encoding="utf-8")


# skinflint estimate / project: defined in foresight_cli, registered here.
register_foresight(app, _load)
