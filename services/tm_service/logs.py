"""Logging: key-value events to stdout, JSON unless stdout is a terminal.

Both structlog's loggers and the standard library's (uvicorn, aiokafka, the
domain) go through the same processors, so every line has the same shape and
the same masking: phone numbers, e-mail addresses and bearer tokens never
reach a log in clear, whoever logged them.

structlog's own events (the request line among them) are rendered by
structlog and written straight to the handler's stream under the handler's
lock; only the standard library's records take the way through `logging`.
The request line is written for every request, and the way through
`logging` (a record, its copy, a formatter) cost it three quarters of its
time.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import re
import sys
from typing import Any, ClassVar

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from tm_adapters.settings import ConnectionSettings

_SECRETS = [
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}"), "Bearer ***"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "***jwt***"),
    (re.compile(r"[^\s@<>,;:\"']{1,64}@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "***@***"),
    (re.compile(r"\+\d{7,15}\b"), "+***"),
]


# Text none of _SECRETS can match in: no "bearer" in any case, no "eyJ",
# no "@" and no "+" before a digit. One search instead of four substitutions
# for nearly every value logged.
_MAYBE_SECRET = re.compile(r"(?i)bearer|eyj|@|\+\d")


def mask(text: str) -> str:
    """The text with anything like a token, e-mail address or phone masked."""
    if _MAYBE_SECRET.search(text) is None:
        return text
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)

    return text


def _mask_values(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    texts = [value for value in event.values() if isinstance(value, str)]
    # One search over all of them first: a line feed between the values,
    # which no pattern spans, finds a candidate only where one value has it.
    if _MAYBE_SECRET.search("\n".join(texts)) is None:
        return event
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = mask(value)

    return event


def _json(event: EventDict, **_: Any) -> str:
    # Values orjson cannot encode (an exception object, a path) as their text;
    # what it refuses outright (an integer past 64 bits) the standard library
    # takes.
    try:
        return orjson.dumps(event, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(event, default=repr)


class _Lines:
    """Where structlog's events go: the stream of the handler `configure`
    installed, written under the handler's lock so that they never
    interleave with the standard library's records, and always after the
    lines `write_soon` keeps waiting."""

    handler: logging.StreamHandler[Any] | None = None
    info_as_json = False
    """Whether INFO events are written, and as JSON lines."""
    pending: ClassVar[list[str]] = []
    """`write_soon`'s lines, not written yet."""


class _Handler(logging.StreamHandler[Any]):
    """The standard library's records, after `write_soon`'s pending lines."""

    def emit(self, record: logging.LogRecord) -> None:
        # Called under the handler's lock.
        if _Lines.pending:
            self.stream.write(_drain())
        super().emit(record)


def _drain() -> str:
    lines, _Lines.pending = _Lines.pending, []
    return "".join(lines)


def _write_pending(text: str = "") -> None:
    """The waiting lines, then `text`, in one write."""
    handler = _Lines.handler
    if handler is None or not (_Lines.pending or text):
        return
    handler.acquire()
    try:
        handler.stream.write(_drain() + text)
        handler.stream.flush()
    finally:
        handler.release()


atexit.register(_write_pending)


_STAMP = structlog.processors.TimeStamper(fmt="iso", utc=True)


def writes_json_info() -> bool:
    """Whether INFO events are written, as JSON lines, by `configure`'s chain."""
    return _Lines.info_as_json and _Lines.handler is not None


# How long a line may wait for others to be written with, and how many may.
WRITE_AFTER_S = 0.02
_WAITING_MAX = 256


def write_soon(line: str) -> None:
    """Write a whole rendered line (with its line feed) to the log's stream.

    Within an event loop, lines wait up to `WRITE_AFTER_S` (or for 255 more)
    and go together, in one write: a write a line cost a request a system
    call and a turn of the loop. The standard library's records and
    structlog's events write them first, so lines stay in order, and so
    does the process's exit. Outside a loop, at once.
    """
    handler = _Lines.handler
    if handler is None or handler.lock is None:
        return
    # Under the handler's lock: a record of another thread drains the list.
    with handler.lock:
        pending = _Lines.pending
        pending.append(line)
        waiting = len(pending)
    if waiting >= _WAITING_MAX:
        _write_pending()
        return
    if waiting > 1:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        _write_pending()
        return
    loop.call_later(WRITE_AFTER_S, _write_pending)


class _LineLogger:
    """structlog's wrapped logger: the rendered line, written as it is."""

    def __init__(self, name: str) -> None:
        self.name = name

    def msg(self, message: str) -> None:
        _write_pending(message + "\n")

    debug = info = warning = warn = error = critical = exception = msg


def _line_logger(name: str = "", *_: Any) -> _LineLogger:
    return _LineLogger(name)


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
        structlog.processors.JSONRenderer(serializer=_json)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )

    # NB: loggers are not cached on first use: a cached one would keep the
    # processors of the configuration it was first used under.
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            _STAMP,
            structlog.processors.format_exc_info,
            _mask_values,
            renderer,
        ],
        logger_factory=_line_logger,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.log_level]
        ),
        cache_logger_on_first_use=False,
    )
    _write_pending()
    handler = _Handler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    _Lines.handler = handler
    _Lines.info_as_json = (
        as_json and logging.INFO >= logging.getLevelNamesMapping()[settings.log_level]
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # uvicorn's access log would repeat the request line written by the service.
    logging.getLogger("uvicorn.access").disabled = True
