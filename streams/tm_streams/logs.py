"""Logging for the worker: structlog key-value events, JSON off a terminal.

Our own events and those of the libraries (Faust, aiokafka, the provider SDKs)
go through one stdlib handler on stdout with one renderer, so every line of
the worker reads the same. Phone numbers and e-mail addresses are masked in
every string field, whoever logged them, and the SDK loggers that would print
request payloads are held at WARNING.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import Processor

from tm_adapters import providers
from tm_adapters.settings import ConnectionSettings

# Loggers that print request URLs, headers or bodies at INFO or DEBUG.
_QUIET = {"twilio": logging.WARNING, "python_http_client": logging.WARNING}
# Loggers whose INFO lines are chatter of every poll or heartbeat.
_TERSE = {"aiokafka": logging.WARNING}
_UNMASKED = {"timestamp", "level", "logger"}


def mask_recipients(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Blank out phone numbers and e-mail addresses in every text field."""
    for key, value in event.items():
        if isinstance(value, str) and key not in _UNMASKED:
            event[key] = providers.mask(value)

    return event


def configure(settings: ConnectionSettings) -> None:
    """Send every log line of the process to stdout, rendered as settings say."""
    as_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stdout.isatty()
    )
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]

    # Our events are structlog's; the libraries' are stdlib records whose
    # `extra` fields become keys of the same event.
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            mask_recipients,
            renderer,
        ],
    )

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(max(level, root.level))
    if root.level > logging.DEBUG:
        for name, level in _TERSE.items():
            logging.getLogger(name).setLevel(level)
