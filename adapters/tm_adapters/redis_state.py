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
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError, ResponseError

from tm_adapters import redis_pipelining
from tm_domain import caching, limits, storage

T = TypeVar("T")

# Rate limits taken in stages: the arrival times of a stage's buckets are
# advanced only if all of them allow, and a stage refused ends the script.
# The rule is `limits.decide`'s, on how far each arrival time runs ahead of
# now, with its room of a microsecond (1e-3 ms).
# KEYS: the buckets of every stage in order. ARGV: now (ms), cost, the number
# of stages, then per stage its number of buckets and each bucket's interval
# (ms) and capacity. Reply: 1 or 0 for allowed, then the arrival time found
# in each bucket of the stages taken ('' for none).
_ADMIT = """
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local found = redis.call('MGET', unpack(KEYS))
local reply = {1}
local key = 1
local arg = 4
for stage = 1, tonumber(ARGV[3]) do
  local count = tonumber(ARGV[arg])
  local allowed = true
  local ahead = {}
  for i = 0, count - 1 do
    local interval = tonumber(ARGV[arg + 1 + 2 * i])
    local capacity = tonumber(ARGV[arg + 2 + 2 * i])
    local stored = found[key + i]
    reply[#reply + 1] = stored or ''
    local behind = 0
    if stored then behind = math.max(tonumber(stored) - now, 0) end
    ahead[i] = behind + interval * cost
    if ahead[i] > interval * capacity + 1e-3 then allowed = false end
  end
  if not allowed then
    reply[1] = 0
    return reply
  end
  for i = 0, count - 1 do
    local ttl = math.max(1, math.ceil(ahead[i]))
    redis.call('SET', KEYS[key + i], string.format('%.3f', now + ahead[i]), 'PX', ttl)
  end
  key = key + count
  arg = arg + 1 + 2 * count
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


class ScriptCall:
    """A script's call made again and again, alike but for its first
    argument (the time): the rest is encoded once."""

    __slots__ = ("keys", "rest", "script", "template")

    def __init__(
        self,
        script: Script,
        keys: Sequence[str],
        rest: Sequence[redis_pipelining.Arg],
    ) -> None:
        """`rest`: the arguments after the first."""
        self.script = script
        self.keys = tuple(keys)
        self.rest = tuple(rest)
        self.template = redis_pipelining.Template(
            ("EVALSHA", script.sha, len(self.keys), *self.keys), self.rest
        )


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
        return await self.send(redis_pipelining.encode(args))

    async def send(self, command: bytes) -> Any:
        """`execute` for a command already encoded."""
        self._must_be_up()
        try:
            return await self.pipelined.send(command)
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
        command = redis_pipelining.encode(
            ("EVALSHA", script.sha, len(keys), *keys, *args)
        )
        return await self._evaluated(script, keys, args, command)

    async def run_call(self, call: ScriptCall, first: float) -> Any:
        """`run` for a call prepared once, given its first argument."""
        command = call.template.command(first)
        return await self._evaluated(
            call.script, call.keys, (first, *call.rest), command
        )

    async def run_call_then(
        self, call: ScriptCall, first: float, then: bytes
    ) -> tuple[Any, Any]:
        """`run_call`, and the reply to a command sent right after it in the
        same write (`then`, encoded)."""
        self._must_be_up()
        try:
            command = call.template.command(first)
            reply, after = await self.pipelined.send_all([command, then])
            if isinstance(after, ResponseError):
                raise after
            if isinstance(reply, ResponseError):
                if not str(reply).startswith("NOSCRIPT"):
                    raise reply
                reply = await self._eval(call.script, call.keys, (first, *call.rest))
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._down(exc) from exc

        return reply, after

    async def _evaluated(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[redis_pipelining.Arg],
        command: bytes,
    ) -> Any:
        """The reply to `command`, the script's EVALSHA with these keys and
        arguments."""
        self._must_be_up()
        try:
            try:
                return await self.pipelined.send(command)
            except ResponseError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
            return await self._eval(script, keys, args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._down(exc) from exc

    async def _eval(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[redis_pipelining.Arg],
    ) -> Any:
        """For a restarted or flushed Redis, which answered NOSCRIPT: EVAL
        runs the script and keeps it."""
        return await self.pipelined.execute(
            "EVAL", script.text, len(keys), *keys, *args
        )

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


def _staged_call(
    stages: Sequence[Sequence[limits.Bucket]],
    *,
    prefix: str,
    cost: int,
) -> ScriptCall:
    """_ADMIT's call for these stages; its first argument is the time."""
    keys = [f"{prefix}rl:{bucket.key}" for stage in stages for bucket in stage]
    shape = tuple(tuple(bucket.limit for bucket in stage) for stage in stages)
    rest = (cost, _stages_encoded(shape))

    return ScriptCall(_ADMIT_SCRIPT, keys, rest)


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
        found = redis_pipelining.encoded(tuple(args))
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
        taken = len(self._starts)
        if index < 0:
            index += taken
        if not 0 <= index < taken:
            raise IndexError("no such stage taken")
        verdict = self._found.get(index)
        if verdict is None:
            stage = self._stages[index]
            start = self._starts[index]
            if len(stage) == 1:
                # The usual stage, of one bucket, without evaluate's lists.
                stored = self._stored[start]
                decision, _ = limits.decide(
                    stage[0].limit,
                    float(stored) if stored else None,
                    now_ms=self._now_ms,
                    cost=self._cost,
                )
                verdict = limits.Verdict((decision,))
            else:
                found = [
                    float(v) if v else None
                    for v in self._stored[start : start + len(stage)]
                ]
                verdict, _ = limits.evaluate(
                    [b.limit for b in stage],
                    found,
                    now_ms=self._now_ms,
                    cost=self._cost,
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

    def _staged(
        self, stages: Sequence[Sequence[limits.Bucket]], *, cost: int
    ) -> _Staged:
        call = _staged_call(stages, prefix=self.prefix, cost=cost)
        return _Staged(stages, call, cost)

    def _verdicts(
        self, staged: _Staged, reply: list[Any], *, now_ms: float
    ) -> _Verdicts:
        return _Verdicts(staged.stages, reply[1:], now_ms=now_ms, cost=staged.cost)


@dataclass(frozen=True, slots=True)
class _Staged:
    """The stages of a call, and the call."""

    stages: Sequence[Sequence[limits.Bucket]]
    call: ScriptCall
    cost: int


class RedisRateLimiter(_StagedLimits):
    """`limits.RateLimiter` on Redis: one script call per request."""

    async def acquire(
        self, buckets: Sequence[limits.Bucket], *, cost: int = 1
    ) -> limits.Verdict:
        staged = self._staged([buckets], cost=cost)
        now_ms = self.clock() * 1000
        reply = await self.link.run_call(staged.call, now_ms)
        [verdict] = self._verdicts(staged, reply, now_ms=now_ms)

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
    """`caching.ViewGate` on Redis: the limits' script and the entry's read
    in one write, so in one trip.

    The read is a plain MGET after the script rather than part of it: a
    view's bytes copied into Lua and out again cost Redis more than the
    limits did. An entry read for a request a limit refused is dropped.

    NB: the script touches the caller's keys and the client address's
    bucket, which are in different Redis Cluster slots: it needs a Redis
    that is not a Cluster, as the client of `RedisLink` does.
    """

    def prepare(
        self, key: str, stages: Sequence[Sequence[limits.Bucket]]
    ) -> _GatedView:
        read = redis_pipelining.encode(("MGET", *_view_keys(self.prefix, key)))
        return _GatedView(self, self._staged(stages, cost=1), read)

    async def admit(
        self, key: str, stages: Sequence[Sequence[limits.Bucket]]
    ) -> caching.Admission:
        return await self.prepare(key, stages).admit()


class _GatedView:
    """`caching.Gated`: one `RedisViewGate.admit`, its commands encoded once."""

    __slots__ = ("gate", "read", "staged")

    def __init__(self, gate: RedisViewGate, staged: _Staged, read: bytes) -> None:
        self.gate = gate
        self.staged = staged
        self.read = read

    async def admit(self) -> caching.Admission:
        gate, staged = self.gate, self.staged
        if not staged.stages:
            body, stamp = await gate.link.send(self.read)
            return caching.Admission((), _cached(body, stamp))

        now_ms = gate.clock() * 1000
        reply, (body, stamp) = await gate.link.run_call_then(
            staged.call, now_ms, self.read
        )
        verdicts = gate._verdicts(staged, reply, now_ms=now_ms)
        if reply[0] != 1:
            return caching.Admission(verdicts, None)

        return caching.Admission(verdicts, _cached(body, stamp))


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
