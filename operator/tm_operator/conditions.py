"""Status conditions in the shape Kubernetes tools read.

A condition's `lastTransitionTime` moves only when its status flips, so a
re-check that finds nothing new leaves the status as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

READY = "Ready"


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render(
    condition: Condition,
    *,
    generation: int,
    previous: Iterable[Mapping[str, Any]] | None,
    at: str | None = None,
) -> dict[str, Any]:
    """The condition as a status entry, keeping its transition time if unflipped."""
    status = "True" if condition.status else "False"
    transition = at or now_text()
    for old in previous or ():
        if old.get("type") == condition.type and old.get("status") == status:
            transition = str(old.get("lastTransitionTime") or transition)

    return {
        "type": condition.type,
        "status": status,
        "reason": condition.reason,
        "message": condition.message[:1024],
        "lastTransitionTime": transition,
        "observedGeneration": generation,
    }


def find(status: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any] | None:
    for entry in (status or {}).get("conditions") or ():
        if entry.get("type") == kind:
            return dict(entry)
    return None
