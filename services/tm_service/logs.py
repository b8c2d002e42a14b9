"""Logging: key-value events to stdout, JSON unless stdout is a terminal.

Both structlog's loggers and the standard library's (uvicorn, aiokafka, the
domain) go through the same processors, so every line has the same shape and
the same masking: phone numbers, e-mail addresses and bearer tokens never
reach a log in clear, whoever logged them.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from tm_adapters.settings import ConnectionSettings

_SECRETS = [
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}"), "Bearer ***"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "***jwt***"),
    (re.compile(r"[^\s@<>,;:\"']{1,64}@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "***@***"),
    (re.compile(r"\+\d{7,15}\b"), "+***"),
]


def mask(text: str) -> str:
    """The text with anything like a token, e-mail address or phone masked."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)

    return text


def _mask_values(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = mask(value)

    return event


def configure(settings: ConnectionSettings, *, stream: Any = None) -> None:
    """Set up structlog and the standard library's root logger once per process."""
    stream = stream or sys.stdout
    as_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not stream.isatty()
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _mask_values,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # uvicorn's access log would repeat the request line written by the service.
    logging.getLogger("uvicorn.access").disabled = True
