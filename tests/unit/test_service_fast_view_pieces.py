"""What the daily view's front takes for its own, and what it leaves to the routes."""

from __future__ import annotations

import pytest

from tm_domain import limits, storage, tenants
from tm_service import errors, fast_views
from tm_service.metrics import Metrics
from tm_service.quotas import Guard
from tm_service.settings import ServiceSettings


@pytest.mark.parametrize(
    ("query", "day"),
    [
        (b"date=2030-01-15", "2030-01-15"),
        (b"date=2030-02-30", None),
        (b"date=2030-1-15", None),
        (b"date=20300115", None),
        (b"date=2030%2D01-15", None),
        (b"date=2030-01-15&date=2030-01-16", None),
        (b"date=2030-01-15&x=1", None),
        (b"x=1&date=2030-01-15", None),
        (b"date=1800-01-15", None),
        (b"", None),
    ],
)
def test_only_a_query_of_exactly_one_date_the_route_accepts_is_taken(
    query: bytes, day: str | None
) -> None:
    assert fast_views._day(query) == day


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ([(b"authorization", b"Bearer abc.def.ghi")], "abc.def.ghi"),
        ([(b"authorization", b"bearer  abc.def.ghi ")], "abc.def.ghi"),
        ([(b"authorization", b"Basic dXNlcjpwYXNz")], None),
        ([(b"authorization", b"Bearer")], None),
        ([(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")], "a"),
        ([(b"x-api-key", b"acme.key")], None),
        ([], None),
    ],
)
def test_the_bearer_token_is_read_as_the_routes_read_it(
    headers: list[tuple[bytes, bytes]], token: str | None
) -> None:
    sent = fast_views._Sent.of(headers)

    assert sent is not None
    assert sent.token == token


@pytest.mark.parametrize(
    "headers",
    [
        [(b"content-length", b"2")],
        [(b"transfer-encoding", b"chunked")],
        [(b"authorization", b"Bearer a"), (b"content-length", b"10")],
    ],
)
def test_a_request_announcing_a_body_is_left_to_the_stack(
    headers: list[tuple[bytes, bytes]],
) -> None:
    assert fast_views._Sent.of(headers) is None


def test_the_first_request_id_sent_is_the_one_read() -> None:
    sent = fast_views._Sent.of([(b"x-request-id", b"one"), (b"x-request-id", b"two")])

    assert sent is not None
    assert sent.request_id == "one"


@pytest.mark.parametrize(
    "stages",
    [
        # (limit, arrival time found relative to now in ms) of each bucket
        [[("user", 60, 60, None, None)]],
        [[("ip", 100, 60, 200, 5_000.0)], [("user", 60, 60, None, 59_000.0)]],
        [[("tasks-hour", 100, 3600, None, 0.0), ("tasks-day", 1000, 86400, None, 1.0)]],
    ],
)
def test_the_fronts_limit_headers_are_the_routes_headers(
    stages: list[list[tuple[str, int, int, int | None, float | None]]],
) -> None:
    now_ms = 1_900_000_000_000.0
    verdicts = [
        limits.evaluate(
            [
                limits.Limit(name, quota, window, burst)
                for name, quota, window, burst, _ in stage
            ],
            [None if ahead is None else now_ms + ahead for *_, ahead in stage],
            now_ms=now_ms,
        )[0]
        for stage in stages
    ]
    guard = Guard(ServiceSettings(), limiter=None, registry=None, metrics=Metrics())  # type: ignore[arg-type]

    answered = guard.answered(verdicts)

    expected = errors.rate_limit_headers(verdicts[-1])
    assert answered == [
        (name.lower().encode(), value.encode()) for name, value in expected.items()
    ]
    assert guard.answered([]) == []


def test_plans_are_bounded_and_a_plan_made_again_evicts_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Gate:
        def prepare(self, key: str, stages: object) -> object:
            return (key, stages)

    class Stages:
        def stages(self, scope: object, user: object, quotas: object) -> list[object]:
            return []

    monkeypatch.setattr(fast_views, "_PLANS_KEPT", 2)
    front = fast_views.DailyViews(
        gate=Gate(),  # type: ignore[arg-type]
        guard=Stages(),  # type: ignore[arg-type]
        tokens=None,  # type: ignore[arg-type]
        views=None,  # type: ignore[arg-type]
        metrics=Metrics(),
    )
    user = storage.User(user_id="u", tenant_id="t")
    old, new = tenants.Quotas(60, 100, 1000), tenants.Quotas(600, 100, 1000)

    def plan(key: bytes, quotas: tenants.Quotas) -> None:
        front._plan(
            (key, "", b"date=2030-01-15"), {}, user, quotas, "tok", "2030-01-15"
        )

    plan(b"a", old)
    plan(b"b", old)
    plan(b"a", new)  # the tenant's quotas changed: made again in its place
    assert [key[0] for key in front._plans] == [b"a", b"b"]
    assert front._plans[(b"a", "", b"date=2030-01-15")].quotas == new
    plan(b"c", old)
    assert [key[0] for key in front._plans] == [b"b", b"c"]


def test_what_counts_before_a_scrape_counts_once_more_when_stopped() -> None:
    metrics = Metrics()
    calls: list[str] = []

    stop = metrics.before_scrape(lambda: calls.append("counted"))
    metrics.page()
    stop()
    metrics.page()

    assert calls == ["counted", "counted"]
