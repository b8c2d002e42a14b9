"""The staged limits' script call, as sent and as read back."""

from __future__ import annotations

import pytest

from tm_adapters import redis_pipelining, redis_state
from tm_domain import limits

IP = limits.Limit("ip", quota=100, window_s=60, burst=200)
USER = limits.Limit("user", quota=60, window_s=60)
STAGES = [[limits.Bucket("ip:10.0.0.1", IP)], [limits.Bucket("user:{t/u}", USER)]]
NOW_MS = 1_800_000_000_000.0


def test_the_stages_are_sent_as_the_script_reads_them() -> None:
    call = redis_state._staged_call(STAGES, prefix="tm:", cost=1)

    keys = ["tm:rl:ip:10.0.0.1", "tm:rl:user:{t/u}"]
    assert list(call.keys) == keys
    stages = (2, 1, IP.interval_ms, IP.capacity, 1, USER.interval_ms, USER.capacity)
    plain = ("EVALSHA", call.script.sha, 2, *keys, NOW_MS, 1, *stages)
    assert call.template.command(NOW_MS) == redis_pipelining.encode(plain)


def test_a_call_costing_more_says_so() -> None:
    call = redis_state._staged_call(STAGES[1:], prefix="tm:", cost=3)

    stages = (1, 1, USER.interval_ms, USER.capacity)
    plain = ("EVALSHA", call.script.sha, 1, "tm:rl:user:{t/u}", NOW_MS, 3, *stages)
    assert call.template.command(NOW_MS) == redis_pipelining.encode(plain)


def test_a_stage_found_in_the_reply_is_judged_as_evaluate_judges_it() -> None:
    # The IP bucket nearly full, the user's half spent.
    stored = [b"%.3f" % (NOW_MS + 199 * IP.interval_ms), b"%.3f" % (NOW_MS + 30_000)]

    verdicts = redis_state._Verdicts(STAGES, stored, now_ms=NOW_MS, cost=1)

    expected = [
        limits.evaluate([IP], [NOW_MS + 199 * IP.interval_ms], now_ms=NOW_MS)[0],
        limits.evaluate([USER], [NOW_MS + 30_000], now_ms=NOW_MS)[0],
    ]
    assert len(verdicts) == 2
    assert verdicts[-1] == expected[1]
    assert list(verdicts) == expected
    assert verdicts[0:1] == (expected[0],)


def test_only_the_stages_asked_for_are_worked_out() -> None:
    verdicts = redis_state._Verdicts(STAGES, [b"", b""], now_ms=NOW_MS, cost=1)

    last = verdicts[-1]

    assert last.allowed
    assert list(verdicts._found) == [1]


def test_a_refused_stage_ends_the_verdicts() -> None:
    # The script stops at a refused stage: the user's bucket was not read.
    full = b"%.3f" % (NOW_MS + 200 * IP.interval_ms)

    verdicts = redis_state._Verdicts(STAGES, [full], now_ms=NOW_MS, cost=1)

    assert len(verdicts) == 1
    assert not verdicts[0].allowed
    with pytest.raises(IndexError):
        verdicts[1]
