"""The platform as deployed: `tm-service` and `tm-streams` as processes.

Both run against the real servers of `scripts/infra up`, on a database and a
Kafka topic of their own, with the worker's providers aimed at the fake
Twilio and SendGrid in this process. The end-to-end tests and the benchmarks
read what the providers received, and when, from the fakes.

`DevPlatform` is the same face over the single-process mode: one `tmctl dev`
process, on SQLite in a folder of its own, aimed at the same fakes, with the
servers' addresses pointed where nothing listens.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from pymongo import MongoClient

from tests.support import documents
from tests.support.fake_providers import (
    SENDGRID_API_KEY,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    FakeProviders,
)
from tm_adapters.settings import ConnectionSettings

SECRET = "end-to-end-test-secret-long-enough-0123456789"
TASKS = "/api/v1/visitor/time/tasks"
BIN = Path(sys.executable).parent
# The tests poll and create faster than people do; the limits have tests of
# their own.
GENEROUS_LIMITS = {
    "TM_RATE_LIMIT_USER_PER_MINUTE": "100000",
    "TM_RATE_LIMIT_IP_PER_MINUTE": "100000",
    "TM_RATE_LIMIT_IP_BURST": "100000",
    "TM_RATE_LIMIT_TASKS_PER_HOUR": "1000000",
    "TM_RATE_LIMIT_TASKS_PER_DAY": "1000000",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def iso(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class Process:
    """One deployable started with its console script, its output in a file."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        log_dir: Path,
        *,
        args: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                [str(BIN / self.name), *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_line(self, needle: str, *, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if needle in self.output():
                return
            self.must_be_running()
            time.sleep(0.1)
        pytest.fail(f"{self.name} never logged {needle!r}:\n{self.tail()}")

    def must_be_running(self) -> None:
        assert self.popen is not None
        if self.popen.poll() is not None:
            pytest.fail(
                f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}"
            )

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


class Platform:
    """The service, the worker and the fake providers of one test."""

    def __init__(
        self,
        servers: ConnectionSettings,
        log_dir: Path,
        *,
        overrides: dict[str, str] | None = None,
    ) -> None:
        unique = uuid.uuid4().hex[:10]
        self.database = f"tm_e2e_{unique}"
        self.providers = FakeProviders().start()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TM_")},
            "TM_ENVIRONMENT": "development",
            "TM_MONGODB_URI": servers.mongodb_uri,
            "TM_MONGODB_DATABASE": self.database,
            "TM_KAFKA_BOOTSTRAP": servers.kafka_bootstrap,
            "TM_KAFKA_TASK_EVENTS_TOPIC": f"tm-e2e-{unique}",
            "TM_KAFKA_TASK_EVENTS_PARTITIONS": "3",
            "TM_REDIS_URL": servers.redis_url,
            "TM_REDIS_KEY_PREFIX": f"tm-e2e-{unique}:",
            **GENEROUS_LIMITS,
            "TM_JWT_SECRET": SECRET,
            "TM_SERVICE_PORT": str(self.port),
            "TM_TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT_SID,
            "TM_TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
            "TM_TWILIO_FROM_NUMBER": "+15005550006",
            "TM_TWILIO_API_BASE": self.providers.url,
            "TM_SENDGRID_API_KEY": SENDGRID_API_KEY,
            "TM_SENDGRID_FROM_EMAIL": "reminders@time-manager.test",
            "TM_SENDGRID_API_HOST": self.providers.url,
            "TM_DELIVERY_BACKOFF_BASE_MS": "200",
            "TM_DELIVERY_SEND_TIMEOUT_MS": "3000",
            "TM_SWEEP_INTERVAL_MS": "2000",
            "TM_STREAMS_APP_ID": f"tm-streams-e2e-{unique}",
            "TM_STREAMS_DATA_DIR": str(log_dir / f"streams-{unique}"),
            "TM_STREAMS_WEB_PORT": str(free_port()),
            **(overrides or {}),
        }
        self.service = Process("tm-service", self.env, log_dir)
        self.worker: Process | None = None
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def start_service(self) -> None:
        self.service.start()
        self.start_service_answering()

    def start_service_answering(self) -> None:
        """Wait until the service answers /healthz."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.service.must_be_running()
            try:
                if self.http.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"tm-service did not answer /healthz:\n{self.service.tail()}")

    def start_worker(self) -> Process:
        self.worker = Process("tm-streams", self.env, self.log_dir).start()
        self.worker.wait_for_line("delivery engine started")
        return self.worker

    def warm_up(self) -> None:
        """Send one reminder through the whole chain, so later timings are fair.

        A worker's first seconds go to joining its consumer group; a reminder
        due then is late through no fault of the scheduling.
        """
        task = self.create(self.task(due_in=timedelta(seconds=1), channels=["email"]))
        self.wait_for_messages(for_task(task), count=1, within=60)
        self.providers.reset()

    def token(self, user: str = "alice", tenant: str = "acme") -> str:
        claims = {
            "sub": user,
            "tenant": tenant,
            "role": "visitor",
            "exp": time.time() + 3600,
        }
        return jwt.encode(claims, SECRET, algorithm="HS256")

    def headers(self, user: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}

    def task(
        self,
        *,
        due_in: timedelta,
        channels: list[str] | None = None,
        phone: str = "+14155550100",
        email: str = "alice@example.com",
    ) -> dict[str, Any]:
        """The design document's example request, its reminder due soon."""
        send_at = datetime.now(UTC) + due_in
        example = documents.design_example(taskDate=send_at.date().isoformat())
        example["reminder"].update(
            channels=channels or ["sms", "email"],
            sendAt=iso(send_at),
            phone=phone,
            email=email,
        )
        return example

    def create(self, body: dict[str, Any], user: str = "alice") -> dict[str, Any]:
        """Create a task whose title, and so its reminder texts, are its own."""
        body = {**body, "title": f"{body['title']} #{uuid.uuid4().hex[:8]}"}
        response = self.http.post(TASKS, json=body, headers=self.headers(user))
        assert response.status_code == 201, response.text
        task: dict[str, Any] = response.json()["data"]
        return task

    def put(
        self, task: dict[str, Any], user: str = "alice", **changes: Any
    ) -> dict[str, Any]:
        """A full update of a task as read, with `changes` applied."""
        body = {k: v for k, v in task.items() if k in EDITABLE}
        if body.get("reminder"):
            body["reminder"] = {
                k: v for k, v in body["reminder"].items() if k in REMINDER_EDITABLE
            }
        body.update(changes)
        body["version"] = task["version"]
        response = self.http.put(
            f"{TASKS}/{task['_id']}", json=body, headers=self.headers(user)
        )
        assert response.status_code == 200, response.text
        updated: dict[str, Any] = response.json()["data"]
        return updated

    def get(self, task_id: str, user: str = "alice") -> dict[str, Any]:
        response = self.http.get(f"{TASKS}/{task_id}", headers=self.headers(user))
        assert response.status_code == 200, response.text
        task: dict[str, Any] = response.json()["data"]
        return task

    def wait_for_messages(
        self,
        match: Callable[[dict[str, Any]], bool],
        *,
        count: int,
        within: float = 15.0,
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            found = [m for m in self.providers.messages() if match(m)]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        pytest.fail(
            f"{len(found)} of {count} messages arrived in {within}s; worker log:\n"
            + (self.worker.tail() if self.worker else "(no worker)")
        )

    def wait_for_task(
        self,
        task_id: str,
        done: Callable[[dict[str, Any]], bool],
        *,
        within: float = 15.0,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        task = self.get(task_id)
        while not done(task) and time.monotonic() < deadline:
            time.sleep(0.1)
            task = self.get(task_id)
        return task

    def close(self) -> None:
        if self.worker is not None:
            self.worker.kill(signal.SIGTERM)
        self.service.kill(signal.SIGTERM)
        self.http.close()
        self.providers.stop()
        with MongoClient(self.env["TM_MONGODB_URI"]) as client:
            client.drop_database(self.database)


class DevPlatform(Platform):
    """`tmctl dev` in place of the service and the worker: one process."""

    def __init__(self, log_dir: Path) -> None:
        self.database = ""
        self.providers = FakeProviders().start()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.data_dir = log_dir / f"dev-data-{uuid.uuid4().hex[:6]}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TM_")},
            "TM_ENVIRONMENT": "development",
            # Nothing listens at these: the mode must not need them.
            "TM_MONGODB_URI": "mongodb://127.0.0.1:1/",
            "TM_KAFKA_BOOTSTRAP": "127.0.0.1:1",
            "TM_REDIS_URL": "redis://127.0.0.1:1/0",
            **GENEROUS_LIMITS,
            "TM_JWT_SECRET": SECRET,
            "TM_DATA_DIR": str(self.data_dir),
            "TM_TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT_SID,
            "TM_TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
            "TM_TWILIO_FROM_NUMBER": "+15005550006",
            "TM_TWILIO_API_BASE": self.providers.url,
            "TM_SENDGRID_API_KEY": SENDGRID_API_KEY,
            "TM_SENDGRID_FROM_EMAIL": "reminders@time-manager.test",
            "TM_SENDGRID_API_HOST": self.providers.url,
            "TM_DELIVERY_BACKOFF_BASE_MS": "200",
            "TM_DELIVERY_SEND_TIMEOUT_MS": "3000",
            "TM_SWEEP_INTERVAL_MS": "2000",
        }
        self.service = self._process()
        self.worker: Process | None = None
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def _process(self) -> Process:
        return Process(
            "tmctl", self.env, self.log_dir, args=("dev", "--port", str(self.port))
        )

    def start_service(self) -> None:
        self.service.start()
        self.worker = self.service
        self.service.wait_for_line("tmctl dev: the API is on")
        self.start_service_answering()

    def start_worker(self) -> Process:
        """The process again, if it is not running: it is the worker too."""
        if not self.popen_running():
            self.service = self._process()
            self.start_service()
        assert self.worker is not None
        return self.worker

    def popen_running(self) -> bool:
        popen = self.service.popen
        return popen is not None and popen.poll() is None

    def close(self) -> None:
        self.service.kill(signal.SIGTERM)
        self.http.close()
        self.providers.stop()


def for_task(task: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """Matches the provider requests that carry this task's reminder."""
    return lambda message: task["title"] in (message.get("body") or "")


EDITABLE = {
    "title",
    "notes",
    "taskDate",
    "session",
    "timeOfDay",
    "durationMin",
    "priority",
    "scopeTag",
    "category",
    "tags",
    "timezone",
    "reminder",
}
REMINDER_EDITABLE = {"enabled", "channels", "sendAt", "offsetMin", "phone", "email"}
