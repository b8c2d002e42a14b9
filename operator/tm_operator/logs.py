"""Logging for the operator: one JSON object per line on stdout.

kopf and our handlers log through the standard library; one structlog
renderer turns every record, with its `extra` fields, into a key-value
event. Off a terminal it is JSON, on one it is readable text.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import Processor

from tm_adapters.settings import ConnectionSettings

# Loggers that print request bodies at DEBUG: a Secret's data among them.
_QUIET = {"kubernetes_asyncio": logging.WARNING, "aiohttp": logging.WARNING}


# Fields kopf attaches to its records for its own use: the whole of its
# settings, and flags for posting Kubernetes events.
_DROPPED = ("settings", "k8s_skip")


def drop_kopf_internals(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for name in _DROPPED:
        event.pop(name, None)

    return event


class QuietWatches(logging.Filter):
    """Drop kopf's success line for each watch event: one per Secret change
    in the whole cluster would drown the lines that matter."""

    _HANDLERS = ("channel_changed", "secret_changed", "tenant_seen")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.endswith("succeeded.")
            and any(f"'{name}'" in message for name in self._HANDLERS)
        )


def configure(settings: ConnectionSettings) -> None:
    as_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stdout.isatty()
    )
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.ExtraAdder(),
            drop_kopf_internals,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(QuietWatches())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(max(level, root.level))
