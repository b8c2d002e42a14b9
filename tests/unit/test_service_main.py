"""The `tm-service` console script runs uvicorn with the configured address."""

from __future__ import annotations

import gc
import logging
from typing import Any

import pytest
import structlog
from fastapi import FastAPI

from tm_service import main as entry


def test_main_serves_the_app_on_the_configured_host_and_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setenv("TM_SERVICE_HOST", "127.0.0.2")
    monkeypatch.setenv("TM_SERVICE_PORT", "5599")
    monkeypatch.setattr(entry.uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)

    try:
        entry.main()
    finally:
        gc.unfreeze()
        root.handlers[:], level = saved
        root.setLevel(level)
        logging.getLogger("uvicorn.access").disabled = False
        structlog.reset_defaults()

    [(app, options)] = calls
    assert isinstance(app, FastAPI)
    assert (options["host"], options["port"]) == ("127.0.0.2", 5599)
    assert options["access_log"] is False
