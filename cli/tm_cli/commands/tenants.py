"""`tmctl tenants`: the tenant you administer, as the time service sees it.

The API knows a tenant only by the tasks it stores under the tenant's id;
tenants themselves are defined by the operator, which tmctl does not read.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tm_cli import output, session
from tm_cli.api import ADMIN
from tm_cli.output import Format, OutputOption

app = typer.Typer(
    help="Show the tenants you administer.\n\nExample: tmctl tenants list",
    no_args_is_help=True,
)

_COLUMNS = [
    "tenant",
    "users",
    "tasks",
    "deleted tasks",
    "erasures to purge",
    "retention",
]


def _row(t: dict[str, Any]) -> list[Any]:
    return [
        t["tenantId"],
        t["users"],
        t["tasks"],
        t["deletedTasks"],
        t["erasuresAwaitingPurge"],
        f"{t['retentionDays']} days",
    ]


@app.command("list")
def list_tenants(ctx: typer.Context, fmt: OutputOption = Format.TABLE) -> None:
    """List the tenants your credentials administer (one per token or key).

    Example: tmctl tenants list -o json
    """
    found = session.api(ctx).call("GET", f"{ADMIN}/tenants")
    output.emit(
        found, fmt, lambda ts: output.table("tenants", _COLUMNS, [_row(t) for t in ts])
    )


@app.command("show")
def show(
    ctx: typer.Context,
    tenant_id: Annotated[str, typer.Argument(help="the tenant's id")],
    fmt: OutputOption = Format.TABLE,
) -> None:
    """Show one tenant: its users, tasks and data awaiting purge.

    Example: tmctl tenants show acme
    """
    found = session.api(ctx).call("GET", f"{ADMIN}/tenants/{tenant_id}")
    output.emit(found, fmt, lambda t: output.pairs(f"tenant {tenant_id}", t))
