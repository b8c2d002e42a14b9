"""The README's commands work as written."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.support.platform import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def code_block_after(heading: str) -> str:
    """The first shell block of the README section called `heading`."""
    section = README.split(f"## {heading}\n", 1)[1]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found, f"no shell block under {heading!r}"
    return found.group(1)


def test_readme_names_the_two_commands_and_ci_runs_the_test_command() -> None:
    commands = [
        line.split("#")[0].strip()
        for line in code_block_after("Two commands").splitlines()
        if line.strip()
    ]

    assert commands == ["scripts/dev", "scripts/test"]
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_readme_quick_start_creates_a_task_and_reads_it_back(tmp_path: Path) -> None:
    port, providers = free_port(), free_port()
    unique = uuid.uuid4().hex[:8]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TM_")},
        "TM_SERVICE_PORT": str(port),
        "TM_DEV_PROVIDERS_PORT": str(providers),
        "TM_MONGODB_DATABASE": f"tm_readme_{unique}",
        "TM_KAFKA_TASK_EVENTS_TOPIC": f"tm-readme-{unique}",
        "TM_STREAMS_APP_ID": f"tm-readme-{unique}",
        "TM_STREAMS_DATA_DIR": str(tmp_path / "streams"),
        "TM_STREAMS_WEB_PORT": str(free_port()),
    }
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        dev = subprocess.Popen(
            ["scripts/dev"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while "dev: API on" not in log.read_text() and time.monotonic() < deadline:
            assert dev.poll() is None, log.read_text()
            time.sleep(0.2)
        snippet = code_block_after("Try it").replace(
            "127.0.0.1:5500", f"127.0.0.1:{port}"
        )
        time.sleep(0.5)
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", snippet],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        dev.wait(timeout=30)

    assert ran.returncode == 0, ran.stderr + log.read_text()
    created, end = json.JSONDecoder().raw_decode(ran.stdout)
    day, _ = json.JSONDecoder().raw_decode(ran.stdout[end:].lstrip())
    assert created["success"] is True
    assert created["data"]["reminder"]["sendAt"] == "2030-01-15T07:30:00Z"
    assert [t["_id"] for t in day["data"]] == [created["data"]["_id"]]
