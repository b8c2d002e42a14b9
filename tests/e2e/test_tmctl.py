"""tmctl against tm-service running as a process on the real servers."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from typer.testing import CliRunner

from tests.support.platform import BIN, SECRET, Platform
from tm_adapters.settings import ConnectionSettings
from tm_cli import errors
from tm_cli.main import app

pytestmark = pytest.mark.e2e


def token(role: str = "admin", user: str = "root") -> str:
    claims = {"sub": user, "tenant": "acme", "role": role, "exp": time.time() + 600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def service(
    servers: ConnectionSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """The service alone, with one task of `fay`; no worker is needed here."""
    running = Platform(servers, tmp_path_factory.mktemp("tmctl"))
    try:
        running.start_service()
        running.create(running.task(due_in=timedelta(hours=2)), user="fay")
        yield running
    finally:
        running.close()


def tmctl(
    service: Platform, *args: str, role: str = "admin", url: str | None = None
) -> Any:
    env = {"TM_API_URL": url or service.url, "TM_TOKEN": token(role)}
    return CliRunner().invoke(app, list(args), env=env)


def test_export_writes_the_file_and_reports_in_both_formats(
    service: Platform, tmp_path: Path
) -> None:
    out = tmp_path / "fay.json"

    as_table = tmctl(service, "gdpr", "export", "--user", "fay", "--out", str(out))
    as_json = tmctl(
        service, "gdpr", "export", "--user", "fay", "--out", str(out), "-o", "json"
    )

    assert as_table.exit_code == 0, as_table.output
    assert "export written" in as_table.stdout
    assert "fay" in as_table.stdout
    report = json.loads(as_json.stdout)
    assert report["tasks"] == 1
    assert report["formatVersion"] == 1
    document = json.loads(out.read_text())
    assert document["subject"] == {"tenantId": "acme", "userId": "fay"}


def test_reminders_list_prints_a_table_or_json(service: Platform) -> None:
    as_table = tmctl(service, "reminders", "list", "--user", "fay")
    as_json = tmctl(service, "reminders", "list", "--user", "fay", "-o", "json")

    assert as_table.exit_code == 0, as_table.output
    assert "1 reminders" in as_table.stdout
    assert "pending" in as_table.stdout
    [row] = json.loads(as_json.stdout)
    assert row["userId"] == "fay"
    assert row["status"] == "pending"


def test_tenants_show_and_a_dry_run_delete_change_nothing(service: Platform) -> None:
    shown = tmctl(service, "tenants", "show", "acme", "-o", "json")
    dry = tmctl(service, "gdpr", "delete", "--user", "fay", "--dry-run", "-o", "json")
    again = tmctl(service, "reminders", "list", "--user", "fay", "-o", "json")

    assert json.loads(shown.stdout)["users"] >= 1
    assert json.loads(dry.stdout)["dryRun"] is True
    assert json.loads(dry.stdout)["tasks"] == 1
    assert len(json.loads(again.stdout)) == 1


def test_declined_confirmation_aborts_with_its_own_code(service: Platform) -> None:
    result = CliRunner().invoke(
        app,
        ["gdpr", "delete", "--user", "fay"],
        env={"TM_API_URL": service.url, "TM_TOKEN": token()},
        input="n\n",
    )

    assert result.exit_code == errors.ABORTED
    assert "aborted" in result.stderr


def test_purge_dry_run_reports_json(service: Platform) -> None:
    result = tmctl(service, "gdpr", "purge", "--dry-run", "-o", "json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["retentionDays"] == 30


@pytest.mark.parametrize(
    ("args", "role", "code"),
    [
        (["gdpr", "export", "--user", "nobody"], "admin", errors.NOT_FOUND),
        (["reminders", "retry", "0" * 24], "admin", errors.NOT_FOUND),
        (["tenants", "show", "elsewhere"], "admin", errors.NOT_FOUND),
        (["reminders", "list"], "visitor", errors.UNAUTHORISED),
    ],
)
def test_failures_exit_with_their_documented_code_and_say_why_on_stderr(
    service: Platform, args: list[str], role: str, code: int
) -> None:
    result = tmctl(service, *args, role=role)

    assert result.exit_code == code, result.output
    assert result.stdout == ""
    assert "error:" in result.stderr


def test_an_unreachable_api_exits_with_its_code(service: Platform) -> None:
    result = tmctl(service, "status", url="http://127.0.0.1:1")

    assert result.exit_code == errors.UNREACHABLE
    assert "cannot reach the API" in result.stderr


def test_an_invalid_token_is_unauthorised(service: Platform) -> None:
    result = CliRunner().invoke(
        app,
        ["tenants", "list"],
        env={"TM_API_URL": service.url, "TM_TOKEN": "not-a-token"},
    )

    assert result.exit_code == errors.UNAUTHORISED


def test_contexts_supply_the_url_and_token(service: Platform, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    env = {"TMCTL_CONFIG": str(config)}
    runner = CliRunner()

    saved = runner.invoke(
        app,
        ["context", "set", "e2e", "--url", service.url, "--token", token(), "--use"],
        env=env,
    )
    listed = runner.invoke(app, ["context", "list", "-o", "json"], env=env)
    used = runner.invoke(app, ["tenants", "list", "-o", "json"], env=env)

    assert saved.exit_code == 0, saved.output
    assert config.stat().st_mode & 0o077 == 0
    assert json.loads(listed.stdout) == [
        {"name": "e2e", "apiUrl": service.url, "token": "set", "current": True}
    ]
    assert json.loads(used.stdout)[0]["tenantId"] == "acme"


def test_the_console_script_runs_status(service: Platform) -> None:
    done = subprocess.run(
        [str(BIN / "tmctl"), "--api-url", service.url, "status", "-o", "json"],
        env={"TM_TOKEN": token(), "PATH": str(BIN)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    status = json.loads(done.stdout)
    assert status["mongodb"] == {"state": "up"}
    assert status["api"] == {"state": "up"}
    assert done.returncode in (errors.OK, errors.SERVER_ERROR)
    assert (done.returncode == errors.OK) == status["ready"]


def test_every_command_has_an_example_in_its_help() -> None:
    runner = CliRunner()
    commands = [
        ["gdpr", "export"],
        ["gdpr", "delete"],
        ["gdpr", "purge"],
        ["reminders", "list"],
        ["reminders", "retry"],
        ["tenants", "list"],
        ["tenants", "show"],
        ["status"],
        ["context", "set"],
        ["context", "use"],
        ["context", "list"],
    ]

    for command in commands:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0
        assert "Example: tmctl" in result.stdout, command


def test_delete_then_purge_removes_a_users_tasks_with_a_progress_report(
    servers: ConnectionSettings, tmp_path: Path
) -> None:
    # A retention of zero days: what is deleted can be purged at once.
    running = Platform(servers, tmp_path, overrides={"TM_DATA_RETENTION_DAYS": "0"})
    try:
        running.start_service()
        running.create(running.task(due_in=timedelta(hours=2)), user="gus")
        running.create(running.task(due_in=timedelta(hours=3)), user="gus")

        deleted = tmctl(running, "gdpr", "delete", "--user", "gus", "--yes")
        purged = tmctl(running, "gdpr", "purge", "--yes")
        again = tmctl(running, "gdpr", "purge", "--yes", "-o", "json")
        export = tmctl(running, "gdpr", "export", "--user", "gus", "-o", "json")
    finally:
        running.close()

    assert deleted.exit_code == 0, deleted.output
    assert purged.exit_code == 0, purged.output
    rows = [line.split() for line in purged.stdout.splitlines()]
    assert ["│", "tasks", "│", "2", "│"] in rows
    assert ["│", "erasuresCompleted", "│", "1", "│"] in rows
    assert json.loads(again.stdout)["tasks"] == 0
    assert json.loads(export.stdout)["tasks"] == []
