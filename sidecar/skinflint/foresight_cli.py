"""``skinflint estimate`` and ``skinflint project``: Estimate and Project from the command line.

Both run in-process against the sidecar's own configuration and data dir (``--config``, as
``skinflint config check``): the same price table, router, response cache (LMDB, shared with
a running sidecar), budget store and spend ledger. Neither calls a provider or changes state.

``skinflint estimate FILE`` reads a request in the shape of a ``CompleteRequest`` (proto3 JSON
mapping, as JSON or YAML; see the README), validates it as the RPC does and prints the route,
token counts, cost range, levers, predicted cache status and budget admissions; ``--json``
prints the ``EstimateResponse`` as JSON.

``skinflint project`` takes a workload file (the ``WorkloadModel`` shape), or one feature from
options, or ``--from-ledger N`` (the ledger's last N days), and prints the month-by-month table
(``--json`` for the ``ProjectResponse``) and, with ``--png``, a chart.

Exit codes: 0 success; 2 an invalid request or configuration (the message names the field
or key and the fix); 1 any other failure.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml

from skinflint.config import CONFIG_ENV, Settings
from skinflint.errors import ConfigError, InvalidArgument, SkinflintError

Loader = Callable[[typer.Context, Path | None, dict[str, Any]], Settings]
T = TypeVar("T")

EXIT_INVALID = 2
LEVER_NAMES = ("response_cache", "routing", "prompt_caching", "batching", "local_tier")


def _fail(message: str, code: int = EXIT_INVALID) -> typer.Exit:
    typer.echo(f"skinflint: {message}", err=True)
    return typer.Exit(code)


def read_document(path: Path, what: str) -> dict[str, Any]:
    """A JSON or YAML mapping from ``path`` (YAML is a superset of JSON)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _fail(f"cannot read {what} {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise _fail(f"{path} is not valid JSON or YAML: {exc}") from None
    if not isinstance(document, dict):
        raise _fail(f"{path} must hold a mapping (the {what}), not {type(document).__name__}")
    return document


def parse_message(document: dict[str, Any], message: Any, path: Path) -> Any:
    """The document as ``message`` (proto3 JSON mapping: snake_case or camelCase names)."""
    from google.protobuf import json_format

    try:
        json_format.ParseDict(document, message)
    except json_format.ParseError as exc:
        raise _fail(f"{path}: {exc}") from None
    return message


def _run(settings: Settings, operation: Callable[[Any], Awaitable[T]]) -> T:
    """Open the App, run ``operation(app)``, close it; errors become exit codes."""
    from skinflint.app import App
    from skinflint.logs import configure_logging

    # Warnings and errors only, on stderr: stdout is the table or the JSON.
    configure_logging(settings.logging.model_copy(update={"level": "warning"}))

    async def main() -> T:
        application = App.open(settings)
        try:
            return await operation(application)
        finally:
            await application.aclose()

    try:
        return asyncio.run(main())
    except (InvalidArgument, ConfigError) as exc:
        raise _fail(str(exc)) from None
    except SkinflintError as exc:
        raise _fail(f"{exc.code.name}: {exc}", 1) from None


def usd(nanousd: int) -> str:
    """Display only: nano-USD as dollars with up to 9 decimals (exact, no float)."""
    sign = "-" if nanousd < 0 else ""
    whole, frac = divmod(abs(nanousd), 1_000_000_000)
    cents, rest = f"{frac:09d}"[:2], f"{frac:09d}"[2:].rstrip("0")
    return f"{sign}${whole:,}.{cents}{rest}"


# -- estimate --------------------------------------------------------------------------------


def print_estimate(response: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from skinflint.v1 import skinflint_pb2 as pb

    route = response.route
    console = Console(width=160)
    head = Table(title="estimate", show_header=False)
    head.add_column("what")
    head.add_column("value", overflow="fold")
    tier = pb.Tier.Name(route.tier).removeprefix("TIER_").lower()
    head.add_row("route", f"{route.provider}/{route.model} (tier {tier})")
    head.add_row("why", route.route_reason)
    exact = "exact" if response.input_tokens_exact else "upper bound"
    head.add_row("input tokens", f"{response.input_tokens:,} ({exact}, {response.tokenizer})")
    out = response.output_tokens
    head.add_row(
        "output tokens",
        f"low {out.low:,} / expected {out.expected:,} / high {out.high:,} ({response.method})",
    )
    status = pb.CacheStatus.Name(response.predicted_cache_status).removeprefix("CACHE_STATUS_")
    head.add_row("response cache", status.lower())
    console.print(head)

    costs = Table(title="cost (USD)")
    for column in ("", "low", "expected", "high", "applies", "why"):
        costs.add_column(
            column, justify="right" if column in ("low", "expected", "high") else "left"
        )

    def row(name: str, value: Any, applies: str = "", why: str = "") -> None:
        costs.add_row(
            name,
            usd(value.low_nanousd),
            usd(value.expected_nanousd),
            usd(value.high_nanousd),
            applies,
            why,
        )

    row("cost", response.cost)
    row("baseline", response.baseline_cost)
    for lever in response.levers:
        name = pb.Lever.Name(lever.lever).removeprefix("LEVER_").lower()
        applies = "yes" if lever.applies else "no"
        row(f"without {name}", lever.without_lever, applies, lever.reason)
        row(f"with {name}", lever.with_lever)
    console.print(costs)
    if response.budgets:
        budgets = Table(title="budgets")
        for column in ("budget", "scope", "admits", "remaining", "why"):
            budgets.add_column(column)
        for budget in response.budgets:
            budgets.add_row(
                budget.budget_id,
                budget.scope,
                "yes" if budget.admitted else "NO",
                usd(budget.remaining_nanousd),
                budget.reason,
            )
        console.print(budgets)


def estimate_command(
    load: Loader,
) -> Callable[..., None]:
    def estimate(
        ctx: typer.Context,
        request_file: Annotated[
            Path, typer.Argument(help="A CompleteRequest as JSON or YAML (see the README).")
        ],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
        config: Annotated[
            Path | None,
            typer.Option(
                "--config", envvar=CONFIG_ENV, help="YAML config file.", show_default=False
            ),
        ] = None,
    ) -> None:
        """Estimate a request without calling a provider: route, tokens, costs, levers."""
        from google.protobuf import json_format

        from skinflint.transports.grpc import convert, responses
        from skinflint.v1 import skinflint_pb2 as pb

        settings = load(ctx, config, {})
        document = read_document(request_file, "request")
        request = parse_message(document, pb.CompleteRequest(), request_file)

        async def operation(application: Any) -> Any:
            estimate = await application.estimate(convert.to_call(request))
            return responses.estimate_response(estimate)

        response = _run(settings, operation)
        if as_json:
            typer.echo(
                json.dumps(
                    json_format.MessageToDict(
                        response,
                        preserving_proto_field_name=True,
                        always_print_fields_with_no_presence=True,
                    ),
                    indent=2,
                    sort_keys=True,
                )
            )
        else:
            print_estimate(response)

    return estimate


# -- project ---------------------------------------------------------------------------------


def _tier_mix(text: str) -> dict[str, float]:
    """``small=0.7,mid=0.3`` -> the map (validated by the RPC's rules afterwards)."""
    mix: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, share = item.partition("=")
        try:
            if not sep:
                raise ValueError
            mix[name.strip()] = float(share)
        except ValueError:
            raise _fail(
                f"--tier-mix: {item!r} is not tier=share; write e.g. small=0.7,mid=0.3"
            ) from None
    return mix


def projection_rows(response: Any) -> list[dict[str, Any]]:
    rows = []
    for month in response.months:
        s = month.savings
        rows.append(
            {
                "month": month.month,
                "requests": month.requests,
                "cost_nanousd": month.cost_nanousd,
                "baseline_cost_nanousd": month.baseline_cost_nanousd,
                **{f"saved_{name}_nanousd": getattr(s, f"{name}_nanousd") for name in LEVER_NAMES},
            }
        )
    return rows


def print_projection(response: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=180)
    table = Table(title="projection (USD per month)")
    columns = ["month", "requests", "baseline", "cost", *[f"saved: {n}" for n in LEVER_NAMES]]
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    rows = projection_rows(response)
    for row in rows:
        table.add_row(
            str(row["month"]),
            f"{row['requests']:,}",
            usd(row["baseline_cost_nanousd"]),
            usd(row["cost_nanousd"]),
            *[usd(row[f"saved_{n}_nanousd"]) for n in LEVER_NAMES],
        )
    console.print(table)
    first, last = rows[0], rows[-1]
    if len(rows) > 1 and first["requests"] and first["cost_nanousd"]:
        volume = last["requests"] / first["requests"]
        cost = last["cost_nanousd"] / first["cost_nanousd"]
        baseline = last["baseline_cost_nanousd"] / max(1, first["baseline_cost_nanousd"])
        console.print(
            f"month {last['month']} vs month 1: {volume:.2f}x requests, {cost:.2f}x cost "
            f"(baseline {baseline:.2f}x)"
        )
    console.print(f"method: {response.method}", soft_wrap=True)


def project_command(load: Loader) -> Callable[..., None]:
    def project(
        ctx: typer.Context,
        workload: Annotated[
            Path | None,
            typer.Option(help="A WorkloadModel as JSON or YAML (features, monthly_growth)."),
        ] = None,
        from_ledger: Annotated[
            int | None, typer.Option(help="Derive the workload from the ledger's last N days.")
        ] = None,
        feature: Annotated[str, typer.Option(help="One feature's name (without --workload).")] = (
            "default"
        ),
        requests: Annotated[int, typer.Option(help="Its requests in month 1.")] = 0,
        input_tokens: Annotated[int, typer.Option(help="Its average input tokens.")] = 0,
        output_tokens: Annotated[int, typer.Option(help="Its average output tokens.")] = 0,
        tier_mix: Annotated[
            str, typer.Option(help="Share of requests per tier: small=0.7,mid=0.3.")
        ] = "small=1",
        cache_hit_rate: Annotated[float, typer.Option(help="Response-cache hit rate.")] = 0.0,
        prompt_cache_share: Annotated[
            float, typer.Option(help="Share of input tokens that is a reusable prefix.")
        ] = 0.0,
        batchable_share: Annotated[
            float, typer.Option(help="Share of requests that may use the async lane.")
        ] = 0.0,
        growth: Annotated[
            float | None,
            typer.Option(help="Monthly growth (0.58 = +58%/month, ~10x in 5 months)."),
        ] = None,
        months: Annotated[int, typer.Option(help="Months to project (1-60).")] = 6,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
        png: Annotated[Path | None, typer.Option(help="Also write a PNG chart here.")] = None,
        config: Annotated[
            Path | None,
            typer.Option(
                "--config", envvar=CONFIG_ENV, help="YAML config file.", show_default=False
            ),
        ] = None,
    ) -> None:
        """Project monthly cost, month 1 to N, with what each lever saves."""
        from google.protobuf import json_format

        from skinflint.transports.grpc import convert, responses
        from skinflint.v1 import skinflint_pb2 as pb

        settings = load(ctx, config, {})
        if workload is not None and from_ledger is not None:
            raise _fail("give --workload or --from-ledger, not both")
        request = pb.ProjectRequest(months=months)
        if from_ledger is not None:
            if from_ledger < 0:
                raise _fail(f"--from-ledger must be a number of days >= 1 (got {from_ledger})")
            request.ledger.SetInParent()
            request.ledger.last_days = from_ledger
            request.ledger.monthly_growth = growth or 0.0
        elif workload is not None:
            document = read_document(workload, "workload")
            parse_message(document, request.workload, workload)
            if growth is not None:
                request.workload.monthly_growth = growth
        else:
            request.workload.features.append(
                pb.FeatureWorkload(
                    feature=feature,
                    requests_per_month=requests,
                    avg_input_tokens=input_tokens,
                    avg_output_tokens=output_tokens,
                    tier_mix=_tier_mix(tier_mix),
                    cache_hit_rate=cache_hit_rate,
                    prompt_cache_share=prompt_cache_share,
                    batchable_share=batchable_share,
                )
            )
            request.workload.monthly_growth = growth or 0.0
        if not 1 <= months <= 60:
            raise _fail(f"--months must be between 1 and 60 (got {months})")
        try:
            query = convert.to_projection(request)
        except InvalidArgument as exc:
            raise _fail(str(exc)) from None

        projection = _run(settings, lambda application: application.project(query))
        response = responses.projection_response(projection)
        if png is not None:
            from skinflint.projection_chart import render_png

            try:
                render_png(projection, png)
            except ConfigError as exc:
                raise _fail(str(exc)) from None
        if as_json:
            typer.echo(
                json.dumps(
                    json_format.MessageToDict(
                        response,
                        preserving_proto_field_name=True,
                        always_print_fields_with_no_presence=True,
                    ),
                    indent=2,
                    sort_keys=True,
                )
            )
        else:
            print_projection(response)
        if png is not None:
            typer.echo(f"chart written to {png}", err=True)

    return project


def register(app: typer.Typer, load: Loader) -> None:
    """Add ``estimate`` and ``project`` to the ``skinflint`` command."""
    app.command("estimate")(estimate_command(load))
    app.command("project")(project_command(load))


__all__ = ["read_document", "register", "usd"]
