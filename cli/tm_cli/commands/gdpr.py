"""`tmctl gdpr`: answer data-subject requests for a user of your tenant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tm_cli import errors, output, session
from tm_cli.api import ADMIN
from tm_cli.errors import CliError
from tm_cli.output import Format, OutputOption

app = typer.Typer(
    help=(
        "Export, erase and purge personal data.\n\n"
        "Example: tmctl gdpr export --user u-42 --out u-42.json"
    ),
    no_args_is_help=True,
)

UserOption = Annotated[str, typer.Option("--user", "-u", help="the user's id")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="do not ask first")]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="say what would happen, change nothing")
]


def confirm(question: str, *, yes: bool) -> None:
    if yes:
        return
    try:
        agreed = typer.confirm(question, default=False, err=True)
    except typer.Abort:
        agreed = False
    if not agreed:
        raise CliError("aborted; nothing was changed", code=errors.ABORTED)


@app.command("export")
def export(
    ctx: typer.Context,
    user: UserOption,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="write the export here instead of to stdout"),
    ] = None,
    fmt: OutputOption = Format.TABLE,
) -> None:
    """Export everything stored about a user, in the documented JSON format.

    Without --out the export itself goes to stdout.

    Example: tmctl gdpr export --user u-42 --out u-42.json
    """
    api = session.api(ctx)
    with output.download_bar() as bar:
        job = bar.add_task(f"exporting {user}", total=None)

        def advance(received: int, total: int | None) -> None:
            bar.update(job, completed=received, total=total)

        document = api.download(f"{ADMIN}/users/{user}/export", progress=advance)

    text = json.dumps(document, indent=2, sort_keys=True)
    if out is None:
        typer.echo(text)
        return
    out.write_text(text + "\n")
    summary: dict[str, Any] = {
        "file": str(out),
        "user": user,
        "formatVersion": document.get("formatVersion"),
        "tasks": len(document.get("tasks") or ()),
        "reminderDeliveries": len(document.get("reminderDeliveries") or ()),
        "auditTrail": len(document.get("auditTrail") or ()),
    }
    output.emit(summary, fmt, lambda s: output.pairs("export written", s))


@app.command("delete")
def delete(
    ctx: typer.Context,
    user: UserOption,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    fmt: OutputOption = Format.TABLE,
) -> None:
    """Erase a user's data: hidden at once, reminders cancelled, purged later.

    Example: tmctl gdpr delete --user u-42 --dry-run
    """
    api = session.api(ctx)
    path = f"{ADMIN}/users/{user}/data"
    if not dry_run:
        # Show what will go before asking, from the same API.
        preview = api.call("DELETE", path, dryRun="true")
        confirm(
            f"Erase {preview['tasks']} tasks of {user} and cancel "
            f"{preview['remindersCancelled']} reminders?",
            yes=yes,
        )
    summary = api.call("DELETE", path, dryRun="true" if dry_run else None)
    title = "would erase (dry run)" if dry_run else "erased"
    output.emit(summary, fmt, lambda s: output.pairs(title, s))


@app.command("purge")
def purge(
    ctx: typer.Context,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    batch: Annotated[
        int, typer.Option("--batch", min=1, max=10_000, help="tasks per request")
    ] = 100,
    fmt: OutputOption = Format.TABLE,
) -> None:
    """Remove for good what was deleted longer ago than the retention window.

    Example: tmctl gdpr purge --dry-run -o json
    """
    api = session.api(ctx)
    plan = api.call("POST", f"{ADMIN}/data/purge", dryRun="true", limit=10_000)
    if dry_run:
        output.emit(plan, fmt, lambda s: output.pairs("would purge (dry run)", s))
        return
    confirm(
        f"Remove {plan['tasks']}{'+' if plan['remaining'] else ''} tasks and their "
        "delivery history for good?",
        yes=yes,
    )

    totals = {"tasks": 0, "deliveries": 0, "erasuresCompleted": 0}
    with output.count_bar() as bar:
        job = bar.add_task("purging", total=plan["tasks"] or None)
        while True:
            done = api.call("POST", f"{ADMIN}/data/purge", limit=batch)
            for name in totals:
                totals[name] += int(done[name])
            bar.update(job, completed=totals["tasks"])
            if not done["remaining"]:
                break
    result = {**totals, "retentionDays": plan["retentionDays"]}
    output.emit(result, fmt, lambda s: output.pairs("purged", s))
