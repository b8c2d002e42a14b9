"""`tmctl reminders`: the tenant's reminders, and sending a failed one again."""

from __future__ import annotations

import enum
from typing import Annotated, Any

import typer

from tm_cli import output, session
from tm_cli.api import ADMIN
from tm_cli.output import Format, OutputOption

app = typer.Typer(
    help="List and retry reminders.\n\nExample: tmctl reminders list --status failed",
    no_args_is_help=True,
)


class Status(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _rows(found: list[dict[str, Any]]) -> Any:
    return output.table(
        f"{len(found)} reminders",
        ["task", "user", "status", "send at", "deliveries", "attempts", "last error"],
        [
            (
                r["taskId"],
                r["userId"],
                r["status"],
                r["sendAt"],
                ", ".join(f"{c}: {s}" for c, s in sorted(r["deliveries"].items())),
                r["attempts"],
                r["lastError"],
            )
            for r in found
        ],
    )


@app.command("list")
def list_reminders(
    ctx: typer.Context,
    status: Annotated[
        Status | None, typer.Option("--status", "-s", help="only this status")
    ] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="one user")] = None,
    fmt: OutputOption = Format.TABLE,
) -> None:
    """List reminders of undeleted tasks, earliest first.

    Example: tmctl reminders list --status failed --user u-42
    """
    found = session.api(ctx).call(
        "GET",
        f"{ADMIN}/reminders",
        status=None if status is None else str(status),
        user=user,
    )
    output.emit(found, fmt, _rows)


@app.command("retry")
def retry(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(help="the task whose reminder failed")],
    fmt: OutputOption = Format.TABLE,
) -> None:
    """Send a failed reminder again now; its failed channels start afresh.

    Example: tmctl reminders retry 6650f0c2a1b2c3d4e5f60718
    """
    done = session.api(ctx).call("POST", f"{ADMIN}/reminders/{task_id}/retry")
    reminder = done.get("reminder") or {}
    shown = {
        "task": done["taskId"],
        "user": done["userId"],
        "status": reminder.get("status"),
        "revision": reminder.get("revision"),
    }
    output.emit(done, fmt, lambda _: output.pairs("reminder scheduled again", shown))
