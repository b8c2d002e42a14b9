"""Search: which of a user's tasks a query selects, and in what order.

A query combines any of: text found in the title or the notes (any case),
tags that must all be present, a category, a priority, a part of day, the
completion state and a range of dates. Results come in the order of the views
(date, part of day, time of day) with the task id as the tie-breaker, so the
order is total and stable: a page ends at a position, and the next page
starts after it, whatever was written in between.

`matches` and `comes_after` are the reference semantics; a store may
translate them into its own query language, and the storage contract tests
hold it to these.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tm_domain.errors import InvalidInput, Problem
from tm_domain.tasks import Priority, Session

LIMIT_DEFAULT = 50
LIMIT_MAX = 100
TEXT_MAX = 200
TAGS_MAX = 10


@dataclass(frozen=True)
class Position:
    """Where a page ended: the last task's sort key and id."""

    sort_key: str
    task_id: str


@dataclass(frozen=True)
class SearchQuery:
    text: str | None = None
    tags: tuple[str, ...] = ()
    category: str | None = None
    priority: Priority | None = None
    session: Session | None = None
    completed: bool | None = None
    first: str | None = None
    """The earliest task date, `YYYY-MM-DD`, included."""
    last: str | None = None
    """The latest task date, `YYYY-MM-DD`, included."""


def check(query: SearchQuery) -> list[Problem]:
    problems = []
    if query.text is not None and not 1 <= len(query.text) <= TEXT_MAX:
        problems.append(Problem("q", f"must be 1 to {TEXT_MAX} characters"))
    if len(query.tags) > TAGS_MAX:
        problems.append(Problem("tags", f"may name at most {TAGS_MAX} tags"))
    if any(not tag for tag in query.tags):
        problems.append(Problem("tags", "must not hold an empty tag"))
    if query.first and query.last and query.first > query.last:
        problems.append(Problem("from", "must not be after `to`"))
    return problems


def matches(task: Mapping[str, Any], query: SearchQuery) -> bool:
    """Whether a (not deleted) task is selected by `query`."""
    if query.text is not None:
        needle = query.text.casefold()
        haystacks = (task.get("title") or "", task.get("notes") or "")
        if not any(needle in text.casefold() for text in haystacks):
            return False
    if not set(query.tags) <= set(task.get("tags") or ()):
        return False
    wanted = {
        "category": query.category,
        "priority": None if query.priority is None else str(query.priority),
        "session": None if query.session is None else str(query.session),
    }
    for field, value in wanted.items():
        if value is not None and task.get(field) != value:
            return False
    if query.completed is not None and bool(task.get("completed")) != query.completed:
        return False
    task_date = task.get("taskDate") or ""
    if query.first is not None and task_date < query.first:
        return False
    return query.last is None or task_date <= query.last


def order_key(task: Mapping[str, Any]) -> tuple[str, str]:
    return (str(task["sortKey"]), str(task["_id"]))


def comes_after(task: Mapping[str, Any], position: Position) -> bool:
    return order_key(task) > (position.sort_key, position.task_id)


def encode_cursor(position: Position) -> str:
    raw = json.dumps([position.sort_key, position.task_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position a cursor names; InvalidInput for anything we did not make."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        sort_key, task_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise InvalidInput(
            [Problem("cursor", "is not a cursor of this search")]
        ) from None
    if not isinstance(sort_key, str) or not isinstance(task_id, str):
        raise InvalidInput([Problem("cursor", "is not a cursor of this search")])
    return Position(sort_key, task_id)
