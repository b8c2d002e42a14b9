"""Rate limits: how many calls or task creations a caller may make, and when.

Every limit is a generic cell rate algorithm (GCRA) over one number per
bucket, the theoretical arrival time (TAT): the instant at which the bucket
would be empty again if nothing more came. A limit of `quota` units per
`window` spends one unit every `window / quota`; a bucket holds at most
`burst` units (the quota unless said otherwise), so up to `burst` calls may
come at once and then one per interval. After a whole window without calls
the bucket is full again: the limit slides, it has no fixed window edges for
clients to pile up on.

`evaluate` is the whole rule, on plain numbers, so an in-process limiter and
a Redis script compute the same answers; several buckets are taken together
or not at all, so a creation refused by the daily quota spends nothing of
the hourly one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# Room a bucket is taken to have beyond its tolerance: arrival times are
# stored to the microsecond (three decimals of a millisecond, in Redis), so
# a unit short by less than that is not refused, nor left out of the count.
_EPSILON_MS = 1e-3


@dataclass(frozen=True)
class Limit:
    """`quota` units per `window_s` seconds, at most `burst` at once."""

    name: str
    """The policy's name in the `RateLimit` headers: ip, user, tasks-hour..."""
    quota: int
    window_s: int
    burst: int | None = None

    def __post_init__(self) -> None:
        if self.quota < 1 or self.window_s < 1:
            raise ValueError("a limit needs a quota and a window of at least 1")
        if self.burst is not None and self.burst < 1:
            raise ValueError("a burst must be at least 1")

    # Worked out on first use, then kept: every request asks again.

    @functools.cached_property
    def capacity(self) -> int:
        return self.burst if self.burst is not None else self.quota

    @functools.cached_property
    def interval_ms(self) -> float:
        """How long one unit takes to come back, in milliseconds."""
        return self.window_s * 1000 / self.quota

    @functools.cached_property
    def tolerance_ms(self) -> float:
        """How far ahead of now a bucket's arrival time may run: a full
        bucket's worth of intervals."""
        return self.interval_ms * self.capacity

    @functools.cached_property
    def full_decisions(self) -> dict[int, Decision]:
        """The decision for a full bucket, by cost (`decide`)."""
        return {}

    @functools.cached_property
    def policy(self) -> str:
        """The limit as an item of the `RateLimit-Policy` header."""
        return f'"{self.name}";q={self.quota};w={self.window_s}'


@dataclass(frozen=True)
class Bucket:
    """One limit applied to one caller: the key names whose units they are."""

    key: str
    limit: Limit


@dataclass(frozen=True)
class Decision:
    """What one bucket says about a request."""

    limit: Limit
    allowed: bool
    remaining: int
    """Units left after this request (or before it, when refused)."""
    retry_after_s: int
    """Seconds to wait before the request can succeed; 0 when allowed."""
    reset_s: int
    """Seconds until the bucket is full again."""

    def header(self) -> str:
        """The bucket as the `RateLimit` header states it."""
        return f'"{self.limit.name}";r={self.remaining};t={self.reset_s}'


@dataclass(frozen=True)
class Verdict:
    """The buckets of one request together: allowed only if all allow."""

    decisions: tuple[Decision, ...]

    @property
    def allowed(self) -> bool:
        for decision in self.decisions:
            if not decision.allowed:
                return False
        return True

    @property
    def binding(self) -> Decision | None:
        """The decision a client should heed: the refusal that lasts longest,
        or, when all allow, the bucket closest to empty."""
        if len(self.decisions) < 2:
            return self.decisions[0] if self.decisions else None
        refused = [d for d in self.decisions if not d.allowed]
        if refused:
            return max(refused, key=lambda d: d.retry_after_s)

        return min(self.decisions, key=lambda d: d.remaining)


def _seconds(ms: float) -> int:
    seconds = math.ceil(ms / 1000 - _EPSILON_MS / 1000)
    return seconds if seconds > 0 else 0


def decide(
    limit: Limit, stored: float | None, *, now_ms: float, cost: int = 1
) -> tuple[Decision, float]:
    """`evaluate`'s rule for one bucket, its arrival time at `stored`: the
    decision, and the arrival time it would have if this request is let in."""
    # How far the arrival time runs ahead of now, from their difference:
    # times since the epoch in milliseconds are exact to a quarter of a
    # microsecond only, and an interval such as 60000/7 ms added to one and
    # taken off again came back short of a unit.
    if stored is None or stored <= now_ms:
        # A full bucket: the same decision at any time, so made once.
        full = limit.full_decisions.get(cost)
        if full is None:
            full = limit.full_decisions[cost] = _judged(limit, 0.0, cost)
        return full, now_ms + limit.interval_ms * cost

    behind = stored - now_ms
    return _judged(limit, behind, cost), now_ms + behind + limit.interval_ms * cost


def _judged(limit: Limit, behind: float, cost: int) -> Decision:
    """A request of `cost` units against a bucket whose arrival time is
    `behind` ms ahead of now."""
    interval = limit.interval_ms
    room = limit.tolerance_ms + _EPSILON_MS
    ahead = behind + interval * cost

    # Decisions are made with positional arguments, the fields' order:
    # requests make them by the thousand.
    if ahead <= room:
        remaining = math.floor((room - ahead) / interval)
        return Decision(limit, True, remaining, 0, _seconds(ahead))

    remaining = math.floor((room - behind) / interval)
    return Decision(
        limit,
        False,
        max(0, remaining),
        max(1, _seconds(ahead - limit.tolerance_ms)),
        _seconds(behind),
    )


def evaluate(
    limits: Sequence[Limit],
    tats_ms: Sequence[float | None],
    *,
    now_ms: float,
    cost: int = 1,
) -> tuple[Verdict, list[float]]:
    """Decide a request of `cost` units against buckets at `tats_ms`.

    Returns the verdict and the arrival times to store: the new ones when
    every bucket allows, the old ones (unchanged) when any refuses.
    """
    decisions = []
    advanced = []
    every = True
    for limit, stored in zip(limits, tats_ms, strict=True):
        decision, new_tat = decide(limit, stored, now_ms=now_ms, cost=cost)
        every = every and decision.allowed
        decisions.append(decision)
        advanced.append(new_tat)

    verdict = Verdict(tuple(decisions))
    if not every:
        kept = [now_ms if t is None else max(t, now_ms) for t in tats_ms]
        return verdict, kept

    return verdict, advanced


class RateLimiter(Protocol):
    """Where buckets are kept: Redis for several replicas, memory for one."""

    async def acquire(self, buckets: Sequence[Bucket], *, cost: int = 1) -> Verdict:
        """Take `cost` units from every bucket, or from none if any refuses.

        Raises `storage.StoreUnavailable` when the buckets cannot be read.
        """
        ...
