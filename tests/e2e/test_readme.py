"""The README's commands work as written."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.platform import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def code_block_after(heading: str) -> str:
    """The first shell block of the README section called `heading`."""
    section = README.split(f"{heading}\n", 1)[1]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found, f"no shell block under {heading!r}"
    return found.group(1)


def test_readme_names_the_two_commands_and_ci_runs_the_test_command() -> None:
    commands = [
        line.split("#")[0].strip()
        for line in code_block_after("## Two commands").splitlines()
        if line.strip()
    ]

    assert commands == ["scripts/dev", "scripts/test"]
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_readme_quick_start_delivers_the_reminder_it_creates(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TM_")},
        "TM_SERVICE_PORT": str(port),
        "TM_DATA_DIR": str(data),
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
        while "tmctl dev: the API is on" not in log.read_text():
            assert dev.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        snippet = code_block_after("## Try it").replace(
            "127.0.0.1:5500", f"127.0.0.1:{port}"
        )
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", snippet],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        # The administrator's turn, on the task just stored.
        admin = (
            code_block_after("### tmctl")
            .replace("127.0.0.1:5500", f"127.0.0.1:{port}")
            .replace("--out alice.json", f"--out {tmp_path / 'alice.json'}")
        )
        administered = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", admin],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        dev.wait(timeout=30)

    assert ran.returncode == 0, ran.stderr + log.read_text()
    decoder = json.JSONDecoder()
    created, end = decoder.raw_decode(ran.stdout)
    rest = ran.stdout[end:].lstrip()
    day, end = decoder.raw_decode(rest)
    delivered = json.loads(rest[end:].strip())
    task = created["data"]
    assert created["success"] is True
    assert [t["_id"] for t in day["data"]] == [task["_id"]]
    assert delivered["taskId"] == task["_id"]
    assert (delivered["channel"], delivered["recipient"]) == (
        "email",
        "alice@example.com",
    )
    assert "Stretch" in delivered["text"]
    assert delivered["dueAt"] <= delivered["sentAt"]
    assert "reminder email to a***@example.com" in log.read_text()

    assert administered.returncode == 0, administered.stderr + log.read_text()
    exported = json.loads((tmp_path / "alice.json").read_text())
    assert [t["_id"] for t in exported["tasks"]] == [task["_id"]]
    purge = json.loads(administered.stdout[administered.stdout.rindex("{") :])
    assert purge["dryRun"] is True
