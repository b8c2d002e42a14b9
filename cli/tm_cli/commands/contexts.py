"""`tmctl context`: named API addresses and tokens for several deployments."""

from __future__ import annotations

from typing import Annotated

import typer

from tm_cli import config, output, session
from tm_cli.errors import CliError
from tm_cli.output import Format, OutputOption

app = typer.Typer(
    help=(
        "Manage contexts (API URL and token by name).\n\n"
        "Example: tmctl context set prod --url https://tm.example.com --use"
    ),
    no_args_is_help=True,
)


def _load(ctx: typer.Context) -> config.Config:
    return config.Config.load(session.of(ctx).config_path)


@app.command("set")
def set_context(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the context's name")],
    api_url: Annotated[str, typer.Option("--url", help="the API's base URL")],
    token: Annotated[
        str | None, typer.Option("--token", help="bearer token to store with it")
    ] = None,
    use: Annotated[bool, typer.Option("--use", help="make it current")] = False,
) -> None:
    """Add or replace a context; the file is readable by you only.

    Example: tmctl context set prod --url https://tm.example.com --use
    """
    found = _load(ctx)
    found.contexts[name] = {"apiUrl": api_url, **({"token": token} if token else {})}
    if use or found.current is None:
        found.current = name
    found.save()
    output.stderr.print(f"context {name} saved in {found.path}")


@app.command("use")
def use_context(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="a context's name")]
) -> None:
    """Make a context the current one.

    Example: tmctl context use staging
    """
    found = _load(ctx)
    if name not in found.contexts:
        raise CliError(f"no context named {name!r} in {found.path}")
    found.current = name
    found.save()


@app.command("list")
def list_contexts(ctx: typer.Context, fmt: OutputOption = Format.TABLE) -> None:
    """List contexts; tokens are never shown.

    Example: tmctl context list
    """
    found = _load(ctx)
    rows = [
        {
            "name": name,
            "apiUrl": values.get("apiUrl"),
            "token": "set" if values.get("token") else "unset",
            "current": name == found.current,
        }
        for name, values in sorted(found.contexts.items())
    ]
    output.emit(
        rows,
        fmt,
        lambda rs: output.table(
            "contexts",
            ["", "name", "API URL", "token"],
            [
                ("*" if r["current"] else "", r["name"], r["apiUrl"], r["token"])
                for r in rs
            ],
        ),
    )
