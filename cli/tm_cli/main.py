"""The tmctl application: global options, and every command group joined here.

A new command group is one module in `tm_cli.commands` with a `app` (a
Typer) or a `command` function; add it to `GROUPS` or `COMMANDS` below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tm_cli import config, errors
from tm_cli.commands import contexts, dev, gdpr, reminders, status, tenants
from tm_cli.session import Session

app = typer.Typer(
    name="tmctl",
    help=(
        "Administer a time-manager deployment: answer data-subject requests, "
        "inspect reminders and tenants, check the platform's health.\n\n"
        "Example: tmctl --api-url https://tm.example.com gdpr export --user u-42"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

GROUPS = [
    (gdpr.app, "gdpr"),
    (reminders.app, "reminders"),
    (tenants.app, "tenants"),
    (contexts.app, "context"),
]
COMMANDS = [(status.command, "status"), (dev.command, "dev")]

# Every command reports a CliError on stderr and exits with its code.
for group, name in GROUPS:
    for info in group.registered_commands:
        if info.callback is not None:
            info.callback = errors.reported(info.callback)
    app.add_typer(group, name=name)
for function, name in COMMANDS:
    app.command(name)(errors.reported(function))


@app.callback()
def options(
    ctx: typer.Context,
    api_url: Annotated[
        str | None,
        typer.Option(
            "--api-url",
            envvar="TM_API_URL",
            help="the API's base URL [default: the context's, or "
            + config.DEFAULT_API_URL
            + "]",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token", envvar="TM_TOKEN", help="bearer token of an administrator"
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option(
            "--context", envvar="TMCTL_CONTEXT", help="a context of the config file"
        ),
    ] = None,
    config_path: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="TMCTL_CONFIG",
            help="the contexts file [default: ~/.config/tmctl/config.json]",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="seconds to wait for the API")
    ] = 30.0,
) -> None:
    ctx.obj = Session(
        config_path=config_path or config.default_path(),
        context=context,
        api_url=api_url,
        token=token,
        timeout_s=timeout,
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
