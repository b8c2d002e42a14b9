"""Prometheus metrics of the API, served at `/metrics`.

The names are a contract with the Helm chart's alerts and dashboard; change
one only together with them:

    tm_http_requests_total{route,method,status}     counter
    tm_http_request_duration_seconds{route,method}  histogram
    tm_cache_requests_total{view,result}            counter, result hit|miss
    tm_rate_limit_rejections_total{scope}           counter, scope ip|user|tasks
    tm_redis_unavailable_total{component}           counter, limiter|cache|idempotency
    tm_fast_view_requests_total{result}             counter, result served|passed

`route` is the route's template (`/api/v1/visitor/time/tasks/{task_id}`), or
`unmatched` for a path no route serves, so the label stays bounded whatever
clients request. Each app has its own registry, so several apps in one
process (tests) do not collide.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.responses import Response

# Routes, methods and statuses are bounded, but a made-up method is a key of
# its own: past this many, children are looked up by label again.
_SERIES_KEPT = 1000
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# From a cached read (a few milliseconds) to a slow write under load.
_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tm_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "tm_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ["route", "method"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.cache = Counter(
            "tm_cache_requests",
            "Reads of cached views, by view and whether the cache had it.",
            ["view", "result"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "tm_rate_limit_rejections",
            "Requests refused with 429, by the scope of the limit.",
            ["scope"],
            registry=self.registry,
        )
        self.redis_unavailable = Counter(
            "tm_redis_unavailable",
            "Calls to Redis that failed, so the component went on without it.",
            ["component"],
            registry=self.registry,
        )
        self.fast_views = Counter(
            "tm_fast_view_requests",
            "Daily view requests answered before the application's stack "
            "(served) or left to it (passed).",
            ["result"],
            registry=self.registry,
        )
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._before_scrape: list[Callable[[], None]] = []

    def before_scrape(self, count: Callable[[], None]) -> Callable[[], None]:
        """Have `count` add what it holds back to the metrics before every
        scrape (a hot path counting its requests in a batch); returns what
        stops that, counting one last time."""
        self._before_scrape.append(count)

        def stop() -> None:
            count()
            self._before_scrape.remove(count)

        return stop

    def page(self) -> bytes:
        """The metrics as Prometheus scrapes them, everything counted."""
        for count in self._before_scrape:
            count()
        return generate_latest(self.registry)

    def observe_request(
        self, *, route: str, method: str, status: int, seconds: float
    ) -> None:
        count, duration = self.series(route=route, method=method, status=status)
        count.inc()
        duration.observe(seconds)

    def series(self, *, route: str, method: str, status: int) -> tuple[Any, Any]:
        """The request counter's and the duration histogram's children for
        one route, method and status."""
        # Found once: looking them up by their labels each time cost more
        # than counting.
        series = self._series.get((route, method, status))
        if series is None:
            # Any method a client makes up is one label value, not one each.
            shown = method if method in _METHODS else "OTHER"
            series = (
                self.requests.labels(route, shown, str(status)),
                self.duration.labels(route, shown),
            )
            if len(self._series) < _SERIES_KEPT:
                self._series[(route, method, status)] = series

        return series


router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics of this process",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    found: Metrics = request.app.state.metrics
    return Response(found.page(), media_type=CONTENT_TYPE_LATEST)
