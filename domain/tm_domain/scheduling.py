"""Scheduling rules: when to try a delivery again, and when it is too late to try.

These are policies, not machinery: the delivery engine asks them, and a test
can ask them too without starting anything.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tm_domain.events import Due


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for transient provider failures.

    The n-th retry waits between half and all of `base * 2**(n-1)`, capped at
    `cap`; the spread keeps many reminders failing together from retrying in
    lockstep, the floor keeps the delay growing.
    """

    max_attempts: int = 5
    base: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(minutes=5)

    def delay(self, attempts: int, rng: random.Random | None = None) -> timedelta:
        """How long to wait after the `attempts`-th failed attempt."""
        ceiling = min(self.cap, self.base * (1 << max(attempts - 1, 0)))
        spread = (rng or random).uniform(0.5, 1.0)

        return ceiling * spread

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


@dataclass(frozen=True)
class LatenessPolicy:
    """How late a reminder may still go out, after downtime or retries."""

    max_lateness: timedelta = timedelta(hours=6)

    def too_late(self, planned: datetime, now: datetime) -> bool:
        return now - planned > self.max_lateness


class DueQueue:
    """The deliveries due soon, earliest first, at most one entry per delivery.

    A heap of (due instant, key) with a dictionary of the live entries; an
    entry replaced or forgotten stays in the heap and is skipped when it
    surfaces, which keeps every operation logarithmic.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, tuple[str, int, str]]] = []
        self._live: dict[tuple[str, int, str], Due] = {}
        self._by_task: dict[str, set[tuple[str, int, str]]] = {}

    def __len__(self) -> int:
        return len(self._live)

    def put(self, due: Due) -> None:
        current = self._live.get(due.key)
        if current is not None and current.due_at == due.due_at:
            return
        self._live[due.key] = due
        self._by_task.setdefault(due.task_id, set()).add(due.key)
        heapq.heappush(self._heap, (due.due_at, due.key))

    def put_all(self, dues: Iterable[Due]) -> None:
        for due in dues:
            self.put(due)

    def offer(self, due: Due) -> None:
        """Hold `due` unless the queue holds its delivery for an earlier time.

        For what may be out of date: the earlier of two times is the one
        that must not be missed, and a delivery taken too early is refused
        by its claim with the time it waits for.
        """
        current = self._live.get(due.key)
        if current is None or due.due_at < current.due_at:
            self.put(due)

    def forget_task(self, task_id: str, *, keep_revision: int | None = None) -> None:
        """Drop a task's entries, except those of `keep_revision`."""
        for key in list(self._by_task.get(task_id, ())):
            if key[1] != keep_revision:
                self._discard(key)

    def next_due(self) -> datetime | None:
        self._skip_dead()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: datetime) -> list[Due]:
        """Remove and return every entry due at or before `now`."""
        ready: list[Due] = []
        while True:
            self._skip_dead()
            if not self._heap or self._heap[0][0] > now:
                break
            _, key = heapq.heappop(self._heap)
            ready.append(self._live[key])
            self._discard(key)

        return ready

    def _skip_dead(self) -> None:
        while self._heap:
            due_at, key = self._heap[0]
            live = self._live.get(key)
            if live is not None and live.due_at == due_at:
                return
            heapq.heappop(self._heap)

    def _discard(self, key: tuple[str, int, str]) -> None:
        self._live.pop(key, None)
        keys = self._by_task.get(key[0])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_task[key[0]]
