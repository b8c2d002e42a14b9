"""What the daily view's front takes for its own, and what it leaves to the routes."""

from __future__ import annotations

import pytest

from tm_service import fast_views


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
