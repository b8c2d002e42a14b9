"""End-to-end fixtures: the service and the worker as processes on real servers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.platform import Platform
from tm_adapters.settings import ConnectionSettings


@pytest.fixture(scope="session")
def servers() -> ConnectionSettings:
    found = ConnectionSettings()
    for name, address in (
        ("MongoDB", found.mongodb_uri.split("//")[-1].split("/")[0]),
        ("Kafka", found.kafka_bootstrap.split(",")[0]),
        ("Redis", found.redis_url.split("//")[-1].split("/")[0]),
    ):
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
        except OSError as exc:
            pytest.fail(
                f"{name} is not reachable at {address} ({exc}); run scripts/infra up"
            )
    return found


@pytest.fixture
def platform(servers: ConnectionSettings, tmp_path: Path) -> Iterator[Platform]:
    """The service and a warmed-up worker, on a database of the test's own."""
    running = Platform(servers, tmp_path)
    try:
        running.start_service()
        running.start_worker()
        running.warm_up()
        yield running
    finally:
        running.close()
