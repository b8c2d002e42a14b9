"""`tmctl status`: whether the API and the servers behind it answer."""

from __future__ import annotations

from typing import Any

import typer

from tm_cli import errors, output, session
from tm_cli.api import ADMIN
from tm_cli.errors import CliError
from tm_cli.output import Format, OutputOption


def _table(found: dict[str, Any]) -> Any:
    rows = []
    # The API, then whatever servers this deployment uses, as it reports them.
    for name, part in found.items():
        if isinstance(part, dict) and "state" in part:
            rows.append((name, part["state"], part.get("detail")))
    worker = found.get("worker") or {}
    overdue = worker.get("overdueDeliveries")
    oldest = worker.get("oldestOverdueSeconds")
    lag = "unknown" if overdue is None else f"{overdue} overdue deliveries"
    if oldest is not None:
        lag += f", oldest {oldest}s late"
    consumer = worker.get("consumerLag") or {}
    behind = consumer.get("total")
    if behind is None:
        lag += "; task events unread: unknown"
    else:
        lag += f"; {behind} task events unread"
    rows.append(("worker", "lagging" if overdue else "ok", lag))

    return output.table("status", ["component", "state", "detail"], rows)


def command(ctx: typer.Context, fmt: OutputOption = Format.TABLE) -> None:
    """Check the API, its store and servers, and how late the worker runs.

    Exits 7 when a server is down or the worker has overdue deliveries.

    Example: tmctl status -o json
    """
    found = session.api(ctx).call("GET", f"{ADMIN}/status")
    output.emit(found, fmt, _table)
    if not found.get("ready") or (found.get("worker") or {}).get("overdueDeliveries"):
        raise CliError("the platform is degraded", code=errors.SERVER_ERROR)
