"""The ``skinflint`` command: ``serve``, ``version`` and ``config check``.

Exit codes: 0 success; 2 invalid configuration (the message on stderr names the key and
the fix); 1 any other failure at start.

Flags take their environment variable as a fallback for ``--help``'s sake, but the values
are handed to ``load_settings`` only when typed on the command line: the environment is
read there, so an error names the real source of a bad value.
"""

from __future__ import annotations

import asyncio
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
    try:
        application = App.open(settings)
    except ConfigError as exc:
        raise _fail_config(exc) from None
    try:
        asyncio.run(run_server(application))
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
