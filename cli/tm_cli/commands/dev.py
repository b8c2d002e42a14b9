"""`tmctl dev`: the time service and its reminders in this process, on SQLite.

Unlike every other command, this one does not call an API: it is one. It
imports the single-process mode only when run, so the other commands start
without loading the service.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from tm_cli import errors
from tm_cli.errors import CliError


def command(
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            min=1,
            max=65535,
            help="port of the API on 127.0.0.1 [default: TM_SERVICE_PORT, or 5500]",
            show_default=False,
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            file_okay=False,
            help="folder of the database and the outbox file [default: "
            "TM_DATA_DIR, or time-manager in $XDG_DATA_HOME or ~/.local/share]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the time service and its reminders here, with no server to start.

    Tasks, reminders and personal data live in SQLite in the data folder and
    survive a restart; reminders that fell due while it was stopped go out at
    start. Without provider credentials, reminders are printed here and added
    to outbox.jsonl in the data folder. Stop it with Ctrl-C.

    Example: tmctl dev --port 5600 --data-dir ./tm-data
    """
    from tm_local import serving
    from tm_local.settings import LocalSettings

    chosen: dict[str, Any] = {}
    if port is not None:
        chosen["service_port"] = port
    if data_dir is not None:
        chosen["data_dir"] = data_dir.expanduser().resolve()
    try:
        settings = LocalSettings(**chosen)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise CliError(f"invalid settings: {problems}", code=errors.USAGE) from None

    try:
        asyncio.run(
            serving.serve(
                settings,
                console=sys.stdout,
                on_started=lambda started: print(
                    serving.welcome(settings, started), flush=True
                ),
            )
        )
    except serving.StartupFailed as exc:
        raise CliError(str(exc)) from None
