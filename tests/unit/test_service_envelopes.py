"""Every answer comes in the design document's envelopes, with a request id."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from test_service_fakes import MemoryTaskStore, bearer, body, serve, settings

from tm_domain import storage
from tm_service import responses, schemas
from tm_service.app import create_app

TASKS = "/api/v1/visitor/time/tasks"
ERROR_KEYS = {"code", "message", "details", "requestId", "timestamp"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")


def _is_failure(envelope: dict[str, Any], code: str) -> None:
    assert set(envelope) == {"success", "error"}
    assert envelope["success"] is False
    assert set(envelope["error"]) == ERROR_KEYS
    assert envelope["error"]["code"] == code
    assert TIMESTAMP.match(envelope["error"]["timestamp"])


async def test_success_comes_with_data_and_meta() -> None:
    async with serve() as http:
        answer = await http.post(TASKS, json=body(), headers=bearer())

    envelope = answer.json()
    assert answer.status_code == 201
    assert set(envelope) == {"success", "data", "meta"}
    assert envelope["success"] is True
    assert set(envelope["meta"]) == {"requestId", "timestamp", "version"}
    assert envelope["meta"]["version"] == "v1"
    assert TIMESTAMP.match(envelope["meta"]["timestamp"])
    assert envelope["meta"]["requestId"] == answer.headers["x-request-id"]
    assert re.match(r"^req_[0-9a-f]{16}$", envelope["meta"]["requestId"])
    assert envelope["data"]["title"] == "Morning standup meeting"


async def test_a_sent_request_id_is_echoed_once_sanitized_and_bounded() -> None:
    async with serve() as http:
        kept = await http.get("/healthz", headers={"X-Request-ID": "abc-123.x:y"})
        cleaned = await http.get(
            "/healthz", headers={"X-Request-ID": "a b<script>" + "z" * 100}
        )
        replaced = await http.get("/healthz", headers={"X-Request-ID": "<>!"})

    assert kept.headers["x-request-id"] == "abc-123.x:y"
    assert kept.json()["meta"]["requestId"] == "abc-123.x:y"
    assert cleaned.headers["x-request-id"] == ("abscript" + "z" * 100)[:64]
    assert replaced.headers["x-request-id"].startswith("req_")


async def test_unknown_route_and_unknown_method_answer_in_the_error_envelope() -> None:
    async with serve() as http:
        missing = await http.get("/api/v1/nothing", headers=bearer())
        wrong_method = await http.delete(TASKS, headers=bearer())

    assert missing.status_code == 404
    _is_failure(missing.json(), "NOT_FOUND")
    assert wrong_method.status_code == 405
    _is_failure(wrong_method.json(), "METHOD_NOT_ALLOWED")
    assert wrong_method.headers["allow"] == "POST"


async def test_an_unknown_or_malformed_task_id_is_not_found() -> None:
    async with serve() as http:
        unknown = await http.get(f"{TASKS}/{'a' * 24}", headers=bearer())
        malformed = await http.get(f"{TASKS}/not-an-id", headers=bearer())
        deleted = await http.delete(f"{TASKS}/%00", headers=bearer())

    for answer in (unknown, malformed):
        assert answer.status_code == 404
        _is_failure(answer.json(), "NOT_FOUND")
    assert deleted.status_code == 404


async def test_malformed_json_is_a_validation_error() -> None:
    async with serve() as http:
        answer = await http.post(
            TASKS,
            content=b'{"title": ',
            headers={**bearer(), "content-type": "application/json"},
        )
        not_utf8 = await http.post(
            TASKS,
            content=b'{"title": "\xff"}',
            headers={**bearer(), "content-type": "application/json"},
        )

    assert answer.status_code == 400
    _is_failure(answer.json(), "VALIDATION_ERROR")
    assert answer.json()["error"]["details"][0]["field"] == "body"
    assert not_utf8.status_code == 400
    _is_failure(not_utf8.json(), "VALIDATION_ERROR")


async def test_a_body_over_the_limit_is_refused_before_parsing() -> None:
    app = create_app(settings(max_body_bytes=2048), store=MemoryTaskStore())

    async with serve(app) as http:
        answer = await http.post(TASKS, json=body(notes="x" * 4000), headers=bearer())

    assert answer.status_code == 413
    _is_failure(answer.json(), "PAYLOAD_TOO_LARGE")
    assert answer.headers["x-request-id"] == answer.json()["error"]["requestId"]


async def test_an_unexpected_error_is_a_500_envelope_without_a_traceback() -> None:
    store = MemoryTaskStore()
    store.fail_with = None

    async with serve(store=store) as http:
        store.fail_with = RuntimeError("secret internals at line 42")
        answer = await http.get(f"{TASKS}/daily?date=2030-01-15", headers=bearer())

    assert answer.status_code == 500
    _is_failure(answer.json(), "INTERNAL_ERROR")
    assert "secret" not in answer.text
    assert "Traceback" not in answer.text
    assert answer.headers["x-request-id"] == answer.json()["error"]["requestId"]


async def test_a_store_outage_asks_the_client_to_retry() -> None:
    store = MemoryTaskStore()

    async with serve(store=store) as http:
        store.fail_with = storage.StoreUnavailable("MongoDB: AutoReconnect")
        answer = await http.post(TASKS, json=body(), headers=bearer())

    assert answer.status_code == 503
    _is_failure(answer.json(), "SERVICE_UNAVAILABLE")
    assert answer.headers["retry-after"] == "5"


async def test_healthz_is_alive_without_a_token() -> None:
    async with serve() as http:
        answer = await http.get("/healthz")

    assert answer.status_code == 200
    assert answer.json()["data"] == {"status": "alive"}


async def test_readyz_names_what_is_down_and_passes_when_all_answer() -> None:
    from test_service_fakes import RecordingPublisher

    publisher = RecordingPublisher()
    app = create_app(settings(), store=MemoryTaskStore(), publisher=publisher)

    async with serve(app) as http:
        publisher.down = True
        down = await http.get("/readyz")
        app.state.readiness["redis"] = _passes
        publisher.down = False
        up = await http.get("/readyz")
        app.state.readiness["kafka"] = _hangs
        slow = await http.get("/readyz")

    assert down.status_code == 503
    _is_failure(down.json(), "SERVICE_UNAVAILABLE")
    assert [d["field"] for d in down.json()["error"]["details"]] == [
        "redis",
        "kafka",
    ]
    assert up.status_code == 200
    assert up.json()["data"] == {"redis": "up", "kafka": "up"}
    assert [d["field"] for d in slow.json()["error"]["details"]] == ["kafka"]
    assert "no answer within" in slow.json()["error"]["details"][0]["message"]


async def _passes() -> None:
    return None


async def _hangs() -> None:
    import asyncio

    await asyncio.sleep(60)


async def test_the_api_document_lists_every_route() -> None:
    async with serve() as http:
        answer = await http.get("/openapi.json")

    paths = answer.json()["paths"]
    assert answer.status_code == 200
    assert set(paths) == {
        "/healthz",
        "/readyz",
        "/metrics",
        TASKS,
        f"{TASKS}/batch",
        f"{TASKS}/daily",
        f"{TASKS}/weekly",
        f"{TASKS}/monthly",
        f"{TASKS}/{{task_id}}",
        f"{TASKS}/{{task_id}}/complete",
        f"{TASKS}/search",
        "/api/v1/visitor/time/analytics",
        "/api/v1/owner/time/team",
        "/api/v1/owner/time/team/members/{member_id}",
        "/api/v1/owner/time/tasks",
        "/api/v1/owner/time/tasks/daily",
        "/api/v1/owner/time/tasks/weekly",
        "/api/v1/owner/time/tasks/monthly",
        "/api/v1/owner/time/tasks/{task_id}",
        "/api/v1/visitor/data",
        "/api/v1/visitor/data/export",
        "/api/v1/admin/users/{user_id}/export",
        "/api/v1/admin/users/{user_id}/data",
        "/api/v1/admin/data/purge",
        "/api/v1/admin/reminders",
        "/api/v1/admin/reminders/{task_id}/retry",
        "/api/v1/admin/tenants",
        "/api/v1/admin/tenants/{tenant_id}",
        "/api/v1/admin/status",
    }
    assert set(paths[f"{TASKS}/{{task_id}}"]) == {"get", "put", "delete"}


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2030, 1, 15, 8, 31, 2, 114000, tzinfo=UTC),
        datetime(2030, 1, 15, 8, 31, 2, tzinfo=UTC),
        datetime(2030, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_an_envelope_spliced_around_cached_data_is_the_one_the_models_render(
    moment: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = [{"title": "Plan", "notes": 'é " \\ </'}]
    scope = {"type": "http", "state": {"request_id": "req_0123456789abcdef"}}
    monkeypatch.setattr(responses, "now", lambda: moment)
    modelled = schemas.Success[Any](
        data=data,
        meta=schemas.Meta(request_id="req_0123456789abcdef", timestamp=moment),
    )

    spliced = responses.ok_rendered(scope, orjson.dumps(data))

    assert spliced.body == orjson.dumps(modelled.model_dump(mode="json"))
    assert spliced.headers["content-type"] == "application/json"
