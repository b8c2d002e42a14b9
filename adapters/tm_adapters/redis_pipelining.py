"""One Redis connection shared by every request: commands pipelined, replies in order.

redis-py takes a connection from its pool for each command, writes it,
reads the reply and gives the connection back: a system call or two and
some forty microseconds of Python a command. For the few commands every
request sends, `PipelinedConnection` shares one connection, and hands the
replies out in the order the commands went, as Redis answers them (RESP2,
read by hiredis's parser, in C). A command that finds Redis with nothing of
ours to do is written at once, so that Redis works while the loop goes on;
the commands that come while it is busy go together, in one write at the
end of the loop's turn. (All of a turn in one write left Redis idle while
the loop parsed requests, then the loop idle while Redis ran their scripts:
a tenth less throughput.)

It connects the way the redis-py client given to it would (address, Unix
socket, TLS context, user, password, database), lazily, on the first
command. A command not answered within `timeout_s` fails, and with it the
connection: everything waiting on it fails too, and the next command opens
a new one. Failures are redis-py's exceptions (`ConnectionError`,
`TimeoutError`, `ResponseError` for an error reply), so a caller handles
both clients alike.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import hiredis
import redis.asyncio as redis
from redis import exceptions
from redis.asyncio.connection import (
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

Reply = bytes | int | list[Any] | None | exceptions.ResponseError


class Encoded(NamedTuple):
    """Arguments already encoded as RESP bulk strings, and how many."""

    data: bytes
    items: int


Arg = bytes | str | int | float | Encoded


def encode(args: tuple[Arg, ...]) -> bytes:
    """A command as RESP: an array of bulk strings."""
    parts = [b""]
    items = len(args)
    for arg in args:
        if isinstance(arg, str):
            # Names, keys and script hashes come back request after request.
            bulk = _bulk_texts.get(arg)
            if bulk is None:
                bulk = _bulk(arg.encode())
                if len(_bulk_texts) < _BULK_TEXTS_KEPT:
                    _bulk_texts[arg] = bulk
            parts.append(bulk)
        elif isinstance(arg, bytes):
            parts.append(_bulk(arg))
        elif isinstance(arg, float):
            # repr is the shortest text that reads back as the same float.
            parts.append(_bulk(repr(arg).encode()))
        elif isinstance(arg, Encoded):
            parts.append(arg.data)
            items += arg.items - 1
        else:
            parts.append(_bulk(b"%d" % arg))
    parts[0] = b"*%d\r\n" % items

    return b"".join(parts)


def encoded(args: tuple[Arg, ...]) -> Encoded:
    """Arguments encoded once, for commands that send them again and again."""
    command = encode(args)
    start = command.index(b"\n") + 1

    return Encoded(command[start:], int(command[1 : start - 2]))


class Template:
    """A command sent again and again, alike but for one float argument
    (a time): everything else is encoded once."""

    def __init__(self, before: tuple[Arg, ...], after: tuple[Arg, ...]) -> None:
        head, tail = encoded(before), encoded(after)
        self._head = b"*%d\r\n%s" % (head.items + 1 + tail.items, head.data)
        self._tail = tail.data

    def command(self, value: float) -> bytes:
        """The command, `value` between the arguments before and after it."""
        # %r: repr, the shortest text that reads back as the same float.
        text = b"%r" % value
        return b"%b$%d\r\n%b\r\n%b" % (self._head, len(text), text, self._tail)


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


# Texts encoded before, as bulk strings; past this many, new ones are not kept.
_BULK_TEXTS_KEPT = 10_000
_bulk_texts: dict[str, bytes] = {}


class _Protocol(asyncio.Protocol):
    """The connection's bytes: commands out in batches, replies in order."""

    def __init__(self, *, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self._loop = asyncio.get_running_loop()
        # What waits for replies: a future, its deadline, and None for one
        # command's reply, or how many replies of commands sent together
        # it takes (which come as a list).
        self._waiting: collections.deque[
            tuple[asyncio.Future[Reply], float, int | None]
        ] = collections.deque()
        self._gathered: list[Reply] = []
        self._outgoing: list[bytes] = []
        # hiredis reads the replies (in C): error replies come as
        # ResponseError instances, an unfinished reply as False.
        self._reader = hiredis.Reader(replyError=exceptions.ResponseError)
        self._watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # NB: uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        raw = transport.get_extra_info("socket")
        if raw is not None and raw.family in (socket.AF_INET, socket.AF_INET6):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(
        self, command: bytes, *, replies: int | None = None
    ) -> asyncio.Future[Reply]:
        """The reply to `command`; to `replies` commands encoded one after
        the other (at least one), the list of their replies, error replies
        among them."""
        if self.lost is not None or self.transport is None:
            raise exceptions.ConnectionError("Redis connection closed")
        future: asyncio.Future[Reply] = self._loop.create_future()
        self._waiting.append((future, self._loop.time() + self.timeout_s, replies))

        if len(self._waiting) == 1:
            # Redis has nothing of ours to do: it starts on this one now,
            # while the loop goes on with the other requests of its turn.
            self.transport.write(command)
        else:
            # Redis is busy with ours: the commands of this turn of the loop
            # go together, in one write, at its end.
            if not self._outgoing:
                self._loop.call_soon(self._flush)
            self._outgoing.append(command)
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(self.timeout_s, self._check)

        return future

    def _flush(self) -> None:
        batch, self._outgoing = self._outgoing, []
        if self.transport is not None and self.lost is None and batch:
            self.transport.write(b"".join(batch))

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                if not self._waiting:
                    raise exceptions.ConnectionError("Redis sent a reply unasked")
                future, _, replies = self._waiting[0]
                if replies is not None:
                    self._gathered.append(reply)
                    if len(self._gathered) < replies:
                        continue
                    reply, self._gathered = self._gathered, []
                self._waiting.popleft()
                if future.done():
                    continue
                if replies is not None:
                    future.set_result(reply)
                    continue
                if isinstance(reply, exceptions.ResponseError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except (exceptions.ConnectionError, hiredis.HiredisError) as exc:
            # Bytes we cannot read: nothing after them can be trusted.
            self._fail(exceptions.ConnectionError(f"Redis reply unreadable: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(
            exceptions.ConnectionError(f"Redis connection lost: {exc or 'closed'}")
        )

    def _check(self) -> None:
        """Fail the connection when its oldest command is overdue."""
        self._watchdog = None
        if not self._waiting or self.lost is not None:
            return
        overdue = self._waiting[0][1] - self._loop.time()
        if overdue <= 0:
            self._fail(
                exceptions.TimeoutError(f"Redis did not answer in {self.timeout_s} s")
            )
            return
        self._watchdog = self._loop.call_later(overdue, self._check)

    def _fail(self, error: Exception) -> None:
        if self.lost is None:
            self.lost = error
        waiting, self._waiting = self._waiting, collections.deque()
        self._gathered = []
        for future, _, _ in waiting:
            if not future.done():
                future.set_exception(error)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._outgoing = []
        if self.transport is not None:
            self.transport.abort()


class PipelinedConnection:
    """Commands of concurrent coroutines over one connection, replies in order."""

    def __init__(self, client: redis.Redis, *, timeout_s: float) -> None:
        """Connects as `client` would, with its pool's connection options."""
        self.client = client
        self.timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    async def execute(self, *args: Arg) -> Reply:
        """One command's reply; raises ResponseError for an error reply."""
        return await self.send(encode(args))

    async def send(self, command: bytes) -> Reply:
        """`execute` for a command already encoded (`encode`, `Template`)."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            protocol = await self._connected()

        return await protocol.send(command)

    async def send_all(self, commands: Sequence[bytes]) -> list[Reply]:
        """The replies to commands sent together, in one write, in order;
        an error reply is in the list as its ResponseError, not raised."""
        if not commands:
            return []
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            protocol = await self._connected()

        replies = await protocol.send(b"".join(commands), replies=len(commands))
        return cast(list[Reply], replies)

    async def _connected(self) -> _Protocol:
        # Every command that finds no connection waits for the same attempt,
        # which a caller giving up does not cancel for the others.
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._connect())
        self._protocol = await asyncio.shield(self._connecting)

        return self._protocol

    async def _connect(self) -> _Protocol:
        pool = self.client.connection_pool
        options = pool.connection_class(**pool.connection_kwargs)
        loop = asyncio.get_running_loop()

        def made() -> _Protocol:
            return _Protocol(timeout_s=self.timeout_s)

        try:
            async with asyncio.timeout(self.timeout_s):
                if isinstance(options, UnixDomainSocketConnection):
                    _, protocol = await loop.create_unix_connection(made, options.path)
                elif isinstance(options, Connection):
                    context: ssl.SSLContext | None = None
                    if isinstance(options, SSLConnection):
                        context = options.ssl_context.get()
                    _, protocol = await loop.create_connection(
                        made, options.host, options.port, ssl=context
                    )
                else:
                    raise exceptions.ConnectionError(
                        f"Redis: no pipelining over {type(options).__name__}"
                    )
                await self._hello(protocol, options)
        except TimeoutError as exc:
            raise exceptions.TimeoutError(
                f"Redis: no connection in {self.timeout_s} s"
            ) from exc
        except OSError as exc:
            raise exceptions.ConnectionError(f"Redis: {exc}") from exc

        return protocol

    async def _hello(self, protocol: _Protocol, options: Any) -> None:
        """Authenticate and choose the database, as redis-py would."""
        username, password = options.username, options.password
        provider = getattr(options, "credential_provider", None)
        if provider is not None:
            found = provider.get_credentials()
            username, password = (None, found[0]) if len(found) == 1 else found
        try:
            if password:
                auth = (username, password) if username else (password,)
                await protocol.send(encode(("AUTH", *auth)))
            if options.db:
                await protocol.send(encode(("SELECT", options.db)))
        except BaseException:
            if protocol.transport is not None:
                protocol.transport.abort()
            raise

    async def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
