"""The pipelined Redis connection: RESP both ways, replies matched in order."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import redis.asyncio as redis
from redis import exceptions

from tm_adapters import redis_pipelining


class Transport(asyncio.Transport):
    """A transport that keeps what is written and never sends it."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True


def connected(timeout_s: float = 5) -> tuple[Any, Transport]:
    protocol = redis_pipelining._Protocol(timeout_s=timeout_s)
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


def test_a_command_is_an_array_of_bulk_strings() -> None:
    encoded = redis_pipelining.encode(("EVALSHA", "ab", 2, b"k\r\n", 1.5))

    assert (
        encoded
        == b"*5\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n2\r\n$3\r\nk\r\n\r\n$3\r\n1.5\r\n"
    )


async def test_every_kind_of_reply_is_read_however_its_bytes_are_cut() -> None:
    replies = b"*4\r\n:1\r\n$-1\r\n$3\r\nabc\r\n*1\r\n+OK\r\n-ERR no\r\n$0\r\n\r\n"
    for cut in range(1, len(replies)):
        protocol, _ = connected()
        waiting = [protocol.send(redis_pipelining.encode(("GET", k))) for k in "abc"]

        protocol.data_received(replies[:cut])
        protocol.data_received(replies[cut:])

        assert await waiting[0] == [1, None, b"abc", [b"OK"]]
        with pytest.raises(exceptions.ResponseError, match=r"^ERR no$"):
            await waiting[1]
        assert await waiting[2] == b""


async def test_bytes_that_are_no_reply_fail_the_connection() -> None:
    protocol, transport = connected()
    waiting = protocol.send(redis_pipelining.encode(("GET", "a")))

    protocol.data_received(b"?what\r\n")

    with pytest.raises(exceptions.ConnectionError, match="unreadable"):
        await waiting
    assert transport.aborted


async def test_a_reply_nobody_asked_for_fails_the_connection() -> None:
    protocol, transport = connected()

    protocol.data_received(b"+OK\r\n")

    assert isinstance(protocol.lost, exceptions.ConnectionError)
    assert transport.aborted


async def test_an_idle_redis_gets_a_command_at_once_the_rest_of_a_turn_together() -> (
    None
):
    protocol, transport = connected()

    first = protocol.send(redis_pipelining.encode(("GET", "a")))
    written_at_once = list(transport.written)
    second = protocol.send(redis_pipelining.encode(("GET", "b")))
    third = protocol.send(redis_pipelining.encode(("NOPE",)))
    await asyncio.sleep(0)
    protocol.data_received(b"$1\r\nA\r\n$-")
    protocol.data_received(b"1\r\n-ERR unknown command\r\n")

    assert written_at_once == [b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n"]
    assert transport.written == [
        b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n",
        b"*2\r\n$3\r\nGET\r\n$1\r\nb\r\n*1\r\n$4\r\nNOPE\r\n",
    ]
    assert await first == b"A"
    assert await second is None
    with pytest.raises(exceptions.ResponseError, match="unknown command"):
        await third

    # Every reply in: the next command finds Redis idle again.
    protocol.send(redis_pipelining.encode(("GET", "c")))
    assert transport.written[-1] == b"*2\r\n$3\r\nGET\r\n$1\r\nc\r\n"


async def test_an_overdue_reply_fails_every_command_waiting_and_the_connection() -> (
    None
):
    protocol, transport = connected(timeout_s=0)
    waiting = [protocol.send(redis_pipelining.encode(("GET", k))) for k in "ab"]

    protocol._check()

    for future in waiting:
        with pytest.raises(exceptions.TimeoutError):
            await future
    assert transport.aborted
    with pytest.raises(exceptions.ConnectionError):
        protocol.send(redis_pipelining.encode(("GET", "c")))


async def test_a_lost_connection_fails_the_commands_waiting_on_it() -> None:
    protocol, _ = connected()
    waiting = protocol.send(redis_pipelining.encode(("GET", "a")))

    protocol.connection_lost(ConnectionResetError("reset by peer"))

    with pytest.raises(exceptions.ConnectionError, match="reset by peer"):
        await waiting


class FakeRedis:
    """A loopback server that records commands and answers a few of them."""

    def __init__(self, *, password: str | None = None) -> None:
        self.password = password
        self.commands: list[list[str]] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> FakeRedis:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await self.server.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.writers.append(writer)
        while line := await reader.readline():
            command = []
            for _ in range(int(line[1:])):
                size = int((await reader.readline())[1:])
                command.append((await reader.readexactly(size + 2))[:-2].decode())
            self.commands.append(command)
            if command[0] == "AUTH" and command[-1] != self.password:
                writer.write(b"-WRONGPASS invalid username-password pair\r\n")
            elif command[0] == "PING":
                writer.write(b"+PONG\r\n")
            else:
                writer.write(b"+OK\r\n")


async def test_a_connection_authenticates_and_chooses_its_database_as_told() -> None:
    async with FakeRedis(password="s3cret") as server:
        client = redis.Redis.from_url(f"redis://ada:s3cret@127.0.0.1:{server.port}/3")
        connection = redis_pipelining.PipelinedConnection(client, timeout_s=2)

        answer = await connection.execute("PING")
        await connection.close()
        await client.aclose()

    assert answer == b"PONG"
    assert server.commands == [["AUTH", "ada", "s3cret"], ["SELECT", "3"], ["PING"]]


async def test_a_password_refused_fails_the_command_that_opened_the_connection() -> (
    None
):
    async with FakeRedis(password="right") as server:
        client = redis.Redis.from_url(f"redis://:wrong@127.0.0.1:{server.port}/0")
        connection = redis_pipelining.PipelinedConnection(client, timeout_s=2)

        with pytest.raises(exceptions.ResponseError, match="WRONGPASS"):
            await connection.execute("PING")
        await connection.close()
        await client.aclose()

    assert server.commands == [["AUTH", "wrong"]]


async def test_commands_sent_together_get_their_replies_as_one_list() -> None:
    protocol, transport = connected()
    before = protocol.send(redis_pipelining.encode(("GET", "a")))
    together = [
        redis_pipelining.encode(("NOPE",)),
        redis_pipelining.encode(("GET", "b")),
    ]
    group = protocol.send(b"".join(together), replies=2)
    after = protocol.send(redis_pipelining.encode(("GET", "c")))
    await asyncio.sleep(0)

    replies = b"$1\r\nA\r\n-ERR unknown command\r\n$1\r\nB\r\n$1\r\nC\r\n"
    for byte in range(len(replies)):
        protocol.data_received(replies[byte : byte + 1])

    assert await before == b"A"
    error, second = await group
    assert isinstance(error, exceptions.ResponseError)
    assert second == b"B"
    assert await after == b"C"
    assert transport.written[1] == b"".join(together) + redis_pipelining.encode(
        ("GET", "c")
    )


async def test_a_connection_lost_halfway_through_a_group_fails_it() -> None:
    protocol, _ = connected()
    group = protocol.send(
        b"".join([redis_pipelining.encode(("GET", k)) for k in "ab"]), replies=2
    )

    protocol.data_received(b"$1\r\nA\r\n")
    protocol.connection_lost(None)

    with pytest.raises(exceptions.ConnectionError, match="lost"):
        await group


async def test_commands_sent_together_are_answered_by_a_list_however_many() -> None:
    async with FakeRedis() as server:
        client = redis.Redis.from_url(f"redis://127.0.0.1:{server.port}/0")
        connection = redis_pipelining.PipelinedConnection(client, timeout_s=2)

        one = await asyncio.wait_for(
            connection.send_all([redis_pipelining.encode(("PING",))]), 1
        )
        none = await asyncio.wait_for(connection.send_all([]), 1)
        after = await asyncio.wait_for(connection.execute("PING"), 1)
        await connection.close()
        await client.aclose()

    assert one == [b"PONG"]
    assert none == []
    assert after == b"PONG"
