"""The README's first command on a fresh machine: a copy of the project with no
virtual environment, a data folder that does not exist, and no server.

`scripts/dev` must install the project and serve; a reminder created over
HTTP a few seconds ahead must reach the outbox file; a reminder that falls
due while the process is stopped must go out once when it starts again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.platform import TASKS, free_port, iso

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
READY = "tmctl dev: the API is on"


def fresh_copy(target: Path) -> Path:
    """The project's files as a clone would have them: no .venv, no caches."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)

    return target


class FirstCommand:
    """`scripts/dev` run in the copy, as a person would run it."""

    def __init__(self, tree: Path, data: Path, log_dir: Path) -> None:
        self.tree = tree
        self.port = free_port()
        self.args = ["scripts/dev", "--port", str(self.port), "--data-dir", str(data)]
        self.outbox = data / "outbox.jsonl"
        self.log_dir = log_dir
        self.runs = 0
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TM_")},
            # Nothing listens at these: the first command must not need them.
            "TM_MONGODB_URI": "mongodb://127.0.0.1:1/",
            "TM_KAFKA_BOOTSTRAP": "127.0.0.1:1",
            "TM_REDIS_URL": "redis://127.0.0.1:1/0",
        }
        self.popen: subprocess.Popen[bytes] | None = None
        self.log = log_dir / "dev-0.log"

    def start(self, *, within: float) -> float:
        """Run it; the seconds until it said where the API is."""
        self.runs += 1
        self.log = self.log_dir / f"dev-{self.runs}.log"
        began = time.monotonic()
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                self.args,
                cwd=self.tree,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while READY not in self.output():
            if self.popen.poll() is not None:
                pytest.fail(f"scripts/dev exited:\n{self.output()}")
            if time.monotonic() - began > within:
                pytest.fail(
                    f"scripts/dev not serving after {within}s:\n{self.output()}"
                )
            time.sleep(0.2)

        return time.monotonic() - began

    def stop(self) -> None:
        assert self.popen is not None
        os.killpg(self.popen.pid, signal.SIGTERM)
        self.popen.wait(timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def token(self) -> str:
        found = re.search(r"^TOKEN=(\S+)$", self.output(), re.MULTILINE)
        assert found, self.output()
        return found.group(1)

    def delivered(self, task: dict[str, Any]) -> list[dict[str, Any]]:
        if not self.outbox.exists():
            return []
        lines = self.outbox.read_text().splitlines()
        return [r for r in map(json.loads, lines) if r["taskId"] == task["_id"]]

    def wait_delivered(self, task: dict[str, Any], *, within: float) -> list[Any]:
        deadline = time.monotonic() + within
        while not self.delivered(task):
            if time.monotonic() > deadline:
                pytest.fail(f"no delivery within {within}s:\n{self.output()}")
            time.sleep(0.1)

        return self.delivered(task)


def create(http: httpx.Client, token: str, title: str, due: datetime) -> Any:
    response = http.post(
        TASKS,
        headers={"Authorization": f"Bearer {token}"},
        json={
            "title": title,
            "taskDate": due.date().isoformat(),
            "session": "evening",
            "reminder": {
                "enabled": True,
                "channels": ["email"],
                "email": "alice@example.com",
                "sendAt": iso(due),
            },
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


def test_first_command_serves_and_reminds_across_a_restart(tmp_path: Path) -> None:
    tree = fresh_copy(tmp_path / "time-manager")
    first = FirstCommand(tree, tmp_path / "fresh" / "data", tmp_path)
    assert not (tree / ".venv").exists()

    # Set up and serve; the reminder a few seconds ahead goes out on time.
    took = first.start(within=900)
    print(f"first command serving after {took:.1f}s")
    http = httpx.Client(base_url=f"http://127.0.0.1:{first.port}", timeout=10)
    token = first.token()
    soon = create(http, token, "Soon", datetime.now(UTC) + timedelta(seconds=3))
    [line] = first.wait_delivered(soon, within=30)
    sent_at = datetime.fromisoformat(line["sentAt"])
    due_at = datetime.fromisoformat(line["dueAt"])

    # Stopped before the next one is due, started again after it.
    later = create(http, token, "Later", datetime.now(UTC) + timedelta(seconds=6))
    first.stop()
    later_due = datetime.fromisoformat(later["reminder"]["sendAt"])
    stopped_in_time = datetime.now(UTC) < later_due
    time.sleep(max((later_due - datetime.now(UTC)).total_seconds(), 0) + 1)
    assert first.delivered(later) == []
    first.start(within=120)
    [again] = first.wait_delivered(later, within=30)
    time.sleep(2)
    stored = http.get(
        f"{TASKS}/{later['_id']}", headers={"Authorization": f"Bearer {token}"}
    ).json()["data"]
    first.stop()
    http.close()

    assert (line["channel"], line["recipient"]) == ("email", "alice@example.com")
    assert "Soon" in line["text"]
    assert due_at == datetime.fromisoformat(soon["reminder"]["sendAt"])
    assert sent_at >= due_at
    assert stopped_in_time
    assert datetime.fromisoformat(again["sentAt"]) > later_due
    assert len(first.delivered(later)) == 1 and len(first.delivered(soon)) == 1
    assert stored["reminder"]["status"] == "sent"
    assert stored["reminder"]["deliveries"]["email"]["latenessMs"] > 0
