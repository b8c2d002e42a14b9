"""Rate limits, cached views and idempotency keys on Redis, shared by replicas.

Each of the three is one small Lua script or pipeline, so that every step a
replica takes is atomic on the server: a limit cannot be overrun by two
replicas reading the same count, a stale view cannot be stored over an
invalidation, and two retries cannot both claim an idempotency key. A
request for a cached view takes its limits and reads the view in one script
(`RedisViewGate`).

Keys start with a configurable prefix (several deployments, or tests, can
share one server) and carry the caller in a hash tag, `{tenant/user}`, so all
keys a script touches sit in one slot of a Redis Cluster.

A server that does not answer makes every call raise
`storage.StoreUnavailable` at once for `retry_s` seconds after the failure,
so requests do not queue behind a dead connection; the service decides what
each component does without Redis.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, overload

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError, ResponseError

from tm_adapters import redis_pipelining
from tm_domain import caching, limits, storage

T = TypeVar("T")

# Rate limits taken in stages, then, if asked and every stage allowed, a
# cached view read: the arrival times of a stage's buckets are advanced only
# if all of them allow, and a stage refused ends the script.
# KEYS: the buckets of every stage in order, then the entry and its stamp
# when reading. ARGV: now (ms), cost, 1 to read or 0, the number of stages,
# then per stage its number of buckets and each bucket's interval (ms) and
# capacity. Reply: 1 or 0 for allowed, the entry, the stamp (false when not
# read or absent), then the arrival time found in each bucket of the stages
# taken ('' for none).
_ADMIT = """
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local reply = {1, false, false}
local key = 1
local arg = 5
for stage = 1, tonumber(ARGV[4]) do
  local count = tonumber(ARGV[arg])
  local allowed = true
  local advanced = {}
  for i = 0, count - 1 do
    local interval = tonumber(ARGV[arg + 1 + 2 * i])
    local capacity = tonumber(ARGV[arg + 2 + 2 * i])
    local found = redis.call('GET', KEYS[key + i])
    reply[#reply + 1] = found or ''
    local tat = now
    if found then tat = math.max(tonumber(found), now) end
    advanced[i] = tat + interval * cost
    if advanced[i] - now > interval * capacity + 1e-6 then allowed = false end
  end
  if not allowed then
    reply[1] = 0
    return reply
  end
  for i = 0, count - 1 do
    local ttl = math.max(1, math.ceil(advanced[i] - now))
    redis.call('SET', KEYS[key + i], string.format('%.3f', advanced[i]), 'PX', ttl)
  end
  key = key + count
  arg = arg + 1 + 2 * count
end
if ARGV[3] == '1' then
  reply[2] = redis.call('GET', KEYS[key])
  reply[3] = redis.call('GET', KEYS[key + 1])
end
return reply
"""

# KEYS: the entry, its stamp. ARGV: body, stamp seen before the read, ttl (s).
_FILL = """
local stamp = redis.call('GET', KEYS[2]) or ''
if stamp ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""

# KEYS: entry, stamp, entry, stamp... ARGV: how long a stamp lives (s).
_INVALIDATE = """
for i = 1, #KEYS, 2 do
  redis.call('DEL', KEYS[i])
  redis.call('INCR', KEYS[i + 1])
  redis.call('EXPIRE', KEYS[i + 1], ARGV[1])
end
return #KEYS / 2
"""

# KEYS: the idempotency key. ARGV: the claim record, its lifetime (s).
_BEGIN = """
local found = redis.call('GET', KEYS[1])
if found then return found end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ''
"""

# A stamp outlives every entry by far, so a read that began before an
# invalidation always sees the stamp move.
STAMP_TTL_S = 86_400


class Script:
    """A Lua script, known to Redis by its SHA-1 once it has run."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


class RedisLink:
    """One Redis client, with a breaker that fails fast after an outage.

    Requests' commands (limits, cached views) go over one pipelined
    connection (`tm_adapters.redis_pipelining`); the rest, rarer, through
    redis-py's pool.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        retry_s: float,
        password: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`password` is used when the URL carries none."""
        self.client: redis.Redis = redis.Redis.from_url(
            url,
            password=password,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
        )
        self.pipelined = redis_pipelining.PipelinedConnection(
            self.client, timeout_s=timeout_s
        )
        self.retry_s = retry_s
        self.clock = clock
        self._closed_until = 0.0

    async def call(self, step: Callable[[redis.Redis], Awaitable[T]]) -> T:
        """Run `step` on the client; StoreUnavailable while Redis is out."""
        self._must_be_up()
        try:
            return await step(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._down(exc) from exc

    async def execute(self, *args: redis_pipelining.Arg) -> Any:
        """One command over the pipelined connection; StoreUnavailable while
        Redis is out."""
        self._must_be_up()
        try:
            return await self.pipelined.execute(*args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._down(exc) from exc

    async def run(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[redis_pipelining.Arg],
    ) -> Any:
        """A script's reply over the pipelined connection; StoreUnavailable
        while Redis is out."""
        self._must_be_up()
        try:
            try:
                return await self.pipelined.execute(
                    "EVALSHA", script.sha, len(keys), *keys, *args
                )
            except ResponseError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
            # A restarted or flushed Redis: EVAL runs the script and keeps it.
            return await self.pipelined.execute(
                "EVAL", script.text, len(keys), *keys, *args
            )
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._down(exc) from exc

    def _must_be_up(self) -> None:
        if self.clock() < self._closed_until:
            raise storage.StoreUnavailable("Redis: unavailable, not tried again yet")

    def _down(self, exc: BaseException) -> storage.StoreUnavailable:
        self._closed_until = self.clock() + self.retry_s
        return storage.StoreUnavailable(f"Redis: {type(exc).__name__}")

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.pipelined.close()
        await self.client.aclose()


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_ADMIT_SCRIPT = Script(_ADMIT)
_FILL_SCRIPT = Script(_FILL)
_INVALIDATE_SCRIPT = Script(_INVALIDATE)


def _staged_args(
    stages: Sequence[Sequence[limits.Bucket]],
    *,
    prefix: str,
    now_ms: float,
    cost: int,
    read: bool,
) -> tuple[list[str], list[float | int | redis_pipelining.Encoded]]:
    """The keys and arguments of _ADMIT for these stages (read keys apart)."""
    keys = [f"{prefix}rl:{bucket.key}" for stage in stages for bucket in stage]
    shape = tuple(tuple(bucket.limit for bucket in stage) for stage in stages)
    return keys, [now_ms, cost, 1 if read else 0, _stages_encoded(shape)]


def _stages_encoded(
    shape: tuple[tuple[limits.Limit, ...], ...],
) -> redis_pipelining.Encoded:
    """The arguments that describe the stages, encoded once for each shape:
    their number, then per stage its number of buckets and each bucket's
    interval and capacity. Tenants' quotas take few values, so shapes are few."""
    found = _ENCODED_STAGES.get(shape)
    if found is None:
        args: list[float | int] = [len(shape)]
        for stage in shape:
            args.append(len(stage))
            for limit in stage:
                args += [limit.interval_ms, limit.capacity]
        command = redis_pipelining.encode(tuple(args))
        found = redis_pipelining.Encoded(command[command.index(b"\n") + 1 :], len(args))
        if len(_ENCODED_STAGES) < 1000:
            _ENCODED_STAGES[shape] = found

    return found


_ENCODED_STAGES: dict[
    tuple[tuple[limits.Limit, ...], ...], redis_pipelining.Encoded
] = {}


class _Verdicts(Sequence[limits.Verdict]):
    """The verdict of each stage the script took, from the times it found,
    each worked out when first asked for: an answer from the cache needs
    only the last stage's, for its headers."""

    def __init__(
        self,
        stages: Sequence[Sequence[limits.Bucket]],
        stored: Sequence[Any],
        *,
        now_ms: float,
        cost: int,
    ) -> None:
        self._stages = stages
        self._stored = stored
        self._now_ms = now_ms
        self._cost = cost
        self._starts: list[int] = []
        at = 0
        for stage in stages:
            if at >= len(stored):
                break
            self._starts.append(at)
            at += len(stage)
        self._found: dict[int, limits.Verdict] = {}

    def __len__(self) -> int:
        return len(self._starts)

    @overload
    def __getitem__(self, index: int) -> limits.Verdict: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[limits.Verdict]: ...

    def __getitem__(
        self, index: int | slice
    ) -> limits.Verdict | Sequence[limits.Verdict]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(len(self))[index])
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("no such stage taken")
        verdict = self._found.get(index)
        if verdict is None:
            stage = self._stages[index]
            start = self._starts[index]
            found = [
                None if not v else float(v)
                for v in self._stored[start : start + len(stage)]
            ]
            verdict, _ = limits.evaluate(
                [b.limit for b in stage], found, now_ms=self._now_ms, cost=self._cost
            )
            self._found[index] = verdict

        return verdict


class _StagedLimits:
    """The one script that takes limits stage by stage, and may read a view.

    NB: the time is this process's clock, sent with each call, so the
    replicas' clocks must agree (NTP keeps them within milliseconds, far
    below the shortest interval of a limit); a test can drive it.
    """

    def __init__(
        self,
        link: RedisLink,
        *,
        prefix: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.link = link
        self.prefix = prefix
        self.clock = clock

    async def _run(
        self,
        stages: Sequence[Sequence[limits.Bucket]],
        *,
        cost: int,
        view: str | None = None,
    ) -> tuple[Sequence[limits.Verdict], list[Any]]:
        """The verdict of each stage, and the script's reply."""
        now_ms = self.clock() * 1000
        keys, args = _staged_args(
            stages, prefix=self.prefix, now_ms=now_ms, cost=cost, read=view is not None
        )
        if view is not None:
            keys += _view_keys(self.prefix, view)

        reply = await self.link.run(_ADMIT_SCRIPT, keys, args)

        return _Verdicts(stages, reply[3:], now_ms=now_ms, cost=cost), reply


class RedisRateLimiter(_StagedLimits):
    """`limits.RateLimiter` on Redis: one script call per request."""

    async def acquire(
        self, buckets: Sequence[limits.Bucket], *, cost: int = 1
    ) -> limits.Verdict:
        [verdict], _ = await self._run([buckets], cost=cost)

        return verdict


def _view_keys(prefix: str, key: str) -> list[str]:
    entry = f"{prefix}{key}"
    return [entry, f"{entry}:stamp"]


def _cached(body: Any, stamp: Any) -> caching.Cached:
    return caching.Cached(
        body=None if body is None else _bytes(body),
        stamp=None if stamp is None else _text(stamp),
    )


class RedisViewCache:
    """`caching.ViewCache` on Redis: an entry and its stamp under each key."""

    def __init__(self, link: RedisLink, *, prefix: str) -> None:
        self.link = link
        self.prefix = prefix

    async def read(self, key: str) -> caching.Cached:
        body, stamp = await self.link.execute("MGET", *_view_keys(self.prefix, key))

        return _cached(body, stamp)

    async def fill(
        self, key: str, body: bytes, *, stamp: str | None, ttl_s: int
    ) -> bool:
        keys = _view_keys(self.prefix, key)
        kept = await self.link.run(_FILL_SCRIPT, keys, [body, stamp or "", ttl_s])

        return bool(kept)

    async def invalidate(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        pairs = [k for key in keys for k in _view_keys(self.prefix, key)]
        await self.link.run(_INVALIDATE_SCRIPT, pairs, [STAMP_TTL_S])


class RedisViewGate(_StagedLimits):
    """`caching.ViewGate` on Redis: the limits and the read in one script.

    NB: the script touches the caller's keys and the client address's
    bucket, which are in different Redis Cluster slots: it needs a Redis
    that is not a Cluster, as the client of `RedisLink` does.
    """

    async def admit(
        self, key: str, stages: Sequence[Sequence[limits.Bucket]]
    ) -> caching.Admission:
        verdicts, reply = await self._run(stages, cost=1, view=key)
        if reply[0] != 1:
            return caching.Admission(verdicts, None)

        return caching.Admission(verdicts, _cached(reply[1], reply[2]))


class RedisIdempotencyStore:
    """`caching.IdempotencyStore` on Redis: one JSON record per key."""

    def __init__(self, link: RedisLink, *, prefix: str) -> None:
        self.link = link
        self.prefix = prefix
        self._begin = link.client.register_script(_BEGIN)

    def _key(self, key: str) -> str:
        return f"{self.prefix}idem:{key}"

    async def begin(self, key: str, fingerprint: str, *, lock_s: int) -> caching.Begun:
        record = orjson.dumps({"fingerprint": fingerprint, "state": "running"})
        keys = [self._key(key)]
        found = await self.link.call(
            lambda client: self._begin(keys=keys, args=[record, lock_s], client=client)
        )
        if not found:
            return caching.Begun(caching.Claim.STARTED)

        return _claim_of(orjson.loads(found), fingerprint)

    async def finish(
        self, key: str, fingerprint: str, answer: caching.Answer, *, ttl_s: int
    ) -> None:
        record = orjson.dumps(
            {
                "fingerprint": fingerprint,
                "state": "done",
                "status": answer.status,
                "body": answer.body.decode(),
            }
        )
        name = self._key(key)
        await self.link.call(lambda client: client.set(name, record, ex=ttl_s))

    async def abandon(self, key: str) -> None:
        name = self._key(key)
        await self.link.call(lambda client: client.delete(name))


def _claim_of(record: dict[str, Any], fingerprint: str) -> caching.Begun:
    """What a stored record means for a request with `fingerprint`."""
    if record.get("fingerprint") != fingerprint:
        return caching.Begun(caching.Claim.MISMATCH)
    if record.get("state") != "done":
        return caching.Begun(caching.Claim.RUNNING)

    answer = caching.Answer(int(record["status"]), str(record["body"]).encode())
    return caching.Begun(caching.Claim.DONE, answer)
