"""The API against its own OpenAPI document, driven by schemathesis.

The service runs with uvicorn on a free loopback port, on the real servers,
and schemathesis calls every documented operation with inputs generated from
the document, valid and invalid, as an administrator (who may call every
route). Each answer must not be a 5xx, must have a documented status and
content type, and must match the documented schema.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import jwt
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, assume, settings
from pymongo import MongoClient
from schemathesis import checks

from tests.integration.conftest import SECRET
from tm_adapters.settings import ConnectionSettings
from tm_service.app import create_app
from tm_service.settings import ServiceSettings

pytestmark = pytest.mark.integration

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Served:
    """One service under uvicorn in a thread of its own."""

    def __init__(self, chosen: ServiceSettings) -> None:
        self.port = _free_port()
        config = uvicorn.Config(
            create_app(chosen),
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                pytest.fail("the service did not start under uvicorn")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def served_url() -> Iterator[str]:
    found = ConnectionSettings()
    unique = uuid.uuid4().hex[:10]
    chosen = ServiceSettings(
        mongodb_uri=found.mongodb_uri,
        mongodb_database=f"tm_openapi_{unique}",
        kafka_bootstrap=found.kafka_bootstrap,
        kafka_task_events_topic=f"tm-openapi-{unique}",
        redis_url=found.redis_url,
        redis_key_prefix=f"tm-openapi-{unique}:",
        jwt_secret=SECRET,
        # Generated calls come fast; the limits have tests of their own.
        rate_limit_user_per_minute=1_000_000,
        rate_limit_ip_per_minute=1_000_000,
        rate_limit_ip_burst=1_000_000,
        rate_limit_tasks_per_hour=1_000_000,
        rate_limit_tasks_per_day=1_000_000,
        purge_interval_s=0,
    )
    try:
        with Served(chosen) as url:
            yield url
    finally:
        with MongoClient(found.mongodb_uri) as client:
            client.drop_database(chosen.mongodb_database)


# The document needs no server: the app describes itself before it starts.
schema = schemathesis.openapi.from_dict(
    create_app(ServiceSettings(jwt_secret=SECRET)).openapi()
)


# Headers that frame the message are the HTTP server's: uvicorn refuses one
# it cannot frame by (a made-up transfer coding) with its own 400 in plain
# text, before the application sees the request.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "host"})


def _admin_token() -> str:
    claims = {
        "sub": "fuzzer",
        "tenant": "tenant-openapi",
        "role": "admin",
        "exp": time.time() + 3600,
    }
    return jwt.encode(claims, SECRET, algorithm="HS256")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_keeps_to_its_documented_answers(
    case: schemathesis.Case, served_url: str
) -> None:
    assume(not any(name.lower() in _FRAMING for name in case.headers or {}))
    case.call_and_validate(
        base_url=served_url,
        headers={"Authorization": f"Bearer {_admin_token()}"},
        checks=CHECKS,
        timeout=30,
    )
