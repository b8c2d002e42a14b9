"""Serving the single-process mode: the API and the reminder engine on one event loop.

Start-up, in order: the data folder and the SQLite file (a folder that cannot
be written fails here, before anything listens), the listening socket (a
port in use fails here too), then the API's own start-up, which prepares the
stores and starts the outbox relay, and then the engine. The engine's first
sweep reads the store, so the reminders that fell due while the process was
stopped go out now, under the same lateness limit as in production.

Stopping (Ctrl-C or SIGTERM) runs the same steps backwards: the engine lets
the sends under way finish and settles them, the relay and the API stop,
and the file is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import uvicorn
from fastapi import FastAPI

from tm_adapters import memory_state, providers, sqlite
from tm_adapters.sqlite_privacy_store import SqlitePrivacyStore
from tm_adapters.sqlite_reminder_store import SqliteReminderStore
from tm_adapters.sqlite_task_store import SqliteTaskStore
from tm_adapters.sqlite_team_store import SqliteTeamStore
from tm_domain.delivery import ReminderEngine, Sender
from tm_local import delivery
from tm_local.settings import LocalSettings
from tm_service import devtoken, logs
from tm_service.app import SharedState, create_app

TRY_AS = "alice"
"""The user of the token printed at start."""


class StartupFailed(Exception):
    """The mode could not start; the message says why and what to change."""


@dataclass(frozen=True)
class Started:
    """What a person needs to know once the API answers."""

    url: str
    data_dir: Path
    outbox: Path
    local_channels: list[str]
    """Channels without provider credentials, delivered to the outbox."""


def welcome(settings: LocalSettings, started: Started) -> str:
    """What to print once the API answers: where it is, where reminders go,
    and, in development, a token to try it with and how to make more."""
    lines = [
        f"tmctl dev: the API is on {started.url}",
        f"tmctl dev: data in {started.data_dir}",
    ]
    if started.local_channels:
        channels = " and ".join(started.local_channels)
        lines.append(
            f"tmctl dev: {channels} reminders go to this console and to "
            f"{started.outbox} (set TM_TWILIO_* or TM_SENDGRID_* to send for real)"
        )
    if settings.environment == "development":
        token = devtoken.mint(settings, TRY_AS)
        lines += [
            f"tmctl dev: a bearer token for user '{TRY_AS}', valid 12 hours:",
            f"TOKEN={token}",
            "tmctl dev: more with scripts/token USER [--tenant T] "
            "[--role visitor|owner|admin]",
        ]

    return "\n".join(lines)


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on `host:port`, or StartupFailed saying why not."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )[0]
        listener = socket.socket(family, kind, protocol)
    except OSError as exc:
        raise StartupFailed(f"cannot listen on {host}:{port}: {exc}") from exc
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise StartupFailed(
            f"cannot listen on {host}:{port} ({exc.strerror}); "
            "choose another port with --port"
        ) from exc

    return listener


async def _open_database(settings: LocalSettings) -> sqlite.Database:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StartupFailed(
            f"cannot create the data folder {settings.data_dir}: {exc.strerror}"
        ) from exc
    db = sqlite.Database(settings.database_path)
    try:
        await db.prepare()
    except Exception as exc:
        await db.close()
        raise StartupFailed(
            f"cannot open the database {settings.database_path}: {exc}"
        ) from exc

    return db


def _with_engine(
    app: FastAPI, engine: ReminderEngine, *, started: Callable[[], None]
) -> None:
    """Run `engine` inside the API's lifespan: after the stores are prepared
    and the relay started, and stopped before they are. `started` is called
    once all of it runs; the socket already listens, so the API answers."""
    service_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with service_lifespan(app) as state:
            # NB: cancelling the engine's run lets it drain: the sends under
            # way finish and are settled before the stores close.
            running = asyncio.create_task(engine.run(), name="reminder-engine")
            started()
            try:
                yield state
            finally:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)

    app.router.lifespan_context = lifespan


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Let uvicorn stop on SIGINT and SIGTERM, and this function clean up.

    NB: uvicorn raises the signal that stopped it again once it has stopped,
    so that the handler in place before it runs; in place is a handler that
    does nothing, and the clean-up after the server runs instead of the
    process ending on the spot.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


async def serve(
    settings: LocalSettings,
    *,
    console: TextIO | None = None,
    on_started: Callable[[Started], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; StartupFailed when it cannot start."""
    console = console or sys.stdout
    logs.configure(settings)
    db = await _open_database(settings)
    senders: dict[str, Sender] = {}
    try:
        listener = listen(settings.service_host, settings.service_port)

        outbox = delivery.LocalOutbox(settings.outbox_path, console=console)
        senders, local_channels = delivery.senders(settings, outbox)
        engine = ReminderEngine(
            SqliteReminderStore(db),
            senders,
            owner=settings.worker_id,
            settings=settings.engine(),
            report=delivery.report,
        )
        app = create_app(
            settings,
            store=SqliteTaskStore(db),
            privacy_store=SqlitePrivacyStore(db),
            team_store=SqliteTeamStore(db),
            publisher=delivery.EngineFeed(engine),
            # Limits, cached views and idempotency keys in this process: no Redis.
            shared=SharedState(
                limiter=memory_state.MemoryRateLimiter(),
                view_cache=memory_state.MemoryViewCache(),
                idempotency=memory_state.MemoryIdempotencyStore(),
            ),
            readiness={"sqlite": db.ping},
        )
        host, port = listener.getsockname()[:2]
        started = Started(
            url=f"http://{host}:{port}"
            if ":" not in host
            else f"http://[{host}]:{port}",
            data_dir=settings.data_dir,
            outbox=settings.outbox_path,
            local_channels=local_channels,
        )
        announce = on_started or (lambda _: None)
        _with_engine(app, engine, started=lambda: announce(started))

        server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                server_header=False,
                lifespan="on",
            )
        )
        try:
            with _stop_on_signals():
                await server.serve(sockets=[listener])
        except SystemExit as exc:
            # uvicorn exits when the API's start-up fails; its log says why.
            raise StartupFailed("the API did not start; see the log above") from exc
        finally:
            listener.close()
    finally:
        providers.close_senders(senders)
        await db.close()
