"""How fast the API answers: cached and uncached daily views, the limiter, creation.

Every target runs as its own process on this machine, on the real servers of
`scripts/infra up`, and is measured by the same load generator, a plain
asyncio HTTP/1.1 client over keep-alive connections (cheaper than httpx, so
the client takes less of the CPU the server needs):

- `bare`: a Starlette app under the same uvicorn, answering the same bytes
  the service answers for the daily view: the ceiling of this stack;
- `cached`: `tm-service` as shipped, the daily view from Redis;
- `uncached`: the same with `TM_VIEW_CACHE_ENABLED=false`, from MongoDB;
- `no limits`: cached, with `TM_RATE_LIMITS_ENABLED=false`, so its gap to
  `cached` is what the rate limiter costs.

Each target is driven flat out to find its most requests a second: first
briefly at each of `--connections` (so many requests at once), to find the
concurrency it does best at (a target that waits on Redis needs more
requests in flight to keep busy than one that does not), then at that
concurrency in `--rounds` rounds that take the targets in turn (the median
counts, so a burst of other work on the machine hits all targets alike),
then at 70% of that rate, open loop, for its latency, again in
rounds: the median p99 is reported, and the worst beside it. Task creation
is driven at `--create-rate` a second. Ratios are printed against `bare`
and `uncached`.

NB: the load generator shares the machine. Flat out, the bare app answers
as fast as one Python client can ask, so its rate is a floor and its
latency at 70% mostly the client's own queueing. The client reads each
answer's head in one read and does not collect garbage while it measures
(`_collector_off`), so that its own pauses are not counted as a target's
latency; each target's uvicorn is checked to run the same event loop and
HTTP parser.

Run with the servers up: `.venv/bin/python bench/service.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.platform import TASKS, Platform, free_port
from tm_adapters.settings import ConnectionSettings

DAY = "2030-01-15"
DAILY = f"{TASKS}/daily?date={DAY}"
BARE_PATH = "/daily"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
NO_LIMITS = {
    "TM_RATE_LIMIT_USER_PER_MINUTE": "1000000",
    "TM_RATE_LIMIT_IP_PER_MINUTE": "1000000",
    "TM_RATE_LIMIT_IP_BURST": "1000000",
}


# ---------------------------------------------------------------------------
# The load generator
# ---------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection; requests one at a time."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.header_block = "".join(f"{k}: {v}\r\n" for k, v in headers.items())

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def request(self, method: str, path: str, body: bytes = b"") -> int:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: bench\r\n{self.header_block}"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        # The whole head in one read: a line at a time cost the client as
        # much as some servers spend on the request.
        head_in = await self.reader.readuntil(b"\r\n\r\n")
        found = _CONTENT_LENGTH.search(head_in)
        await self.reader.readexactly(int(found.group(1)) if found else 0)

        return int(head_in.split(maxsplit=2)[1])

    def close(self) -> None:
        self.writer.close()


@dataclass
class Run:
    requests: int
    seconds: float
    latencies_ms: list[float]
    failures: int
    cpu_s: float = 0.0
    """CPU time the target's process spent meanwhile (Linux), 0 if unknown."""

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_s / self.requests * 1e6 if self.requests else 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def flat_out(
    port: int, path: str, headers: dict[str, str], *, connections: int, seconds: float
) -> Run:
    """As many requests as `connections` clients can make back to back."""
    pool = [Connection(port, headers) for _ in range(connections)]
    for connection in pool:
        await connection.open()
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def client(connection: Connection) -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status = await connection.request("GET", path)
            latencies.append((time.perf_counter() - started) * 1000)
            failures += status != 200

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in pool))
    elapsed = time.perf_counter() - started
    for connection in pool:
        connection.close()

    return Run(len(latencies), elapsed, latencies, failures)


async def at_rate(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str],
    *,
    rate: float,
    seconds: float,
    body: Any = None,
    connections: int = 64,
) -> Run:
    """Requests started at a fixed rate whatever the answers do (open loop);
    latency counts from the planned start, so queueing is not hidden."""
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        connection = Connection(port, headers)
        await connection.open()
        idle.put_nowait(connection)
    latencies: list[float] = []
    failures = 0

    async def one(planned: float) -> None:
        nonlocal failures
        connection = await idle.get()
        payload = body() if callable(body) else b""
        status = await connection.request(method, path, payload)
        latencies.append((time.perf_counter() - planned) * 1000)
        failures += status >= 300
        idle.put_nowait(connection)

    count = int(rate * seconds)
    # Only the requests under way are held, so that the loop never stops
    # to gather tens of thousands of finished ones while some are in flight.
    under_way: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    for index in range(count):
        planned = started + index / rate
        delay = planned - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(planned))
        under_way.add(task)
        task.add_done_callback(under_way.discard)
    await asyncio.gather(*under_way)
    elapsed = time.perf_counter() - started
    while not idle.empty():
        idle.get_nowait().close()

    return Run(count, elapsed, latencies, failures)


# ---------------------------------------------------------------------------
# The targets
# ---------------------------------------------------------------------------


def serve_bare(port: int, body_file: str) -> None:
    """The bare app: one route answering fixed bytes, as the cache does."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    body = Path(body_file).read_bytes()

    async def daily(request: Request) -> Response:
        return Response(body, media_type="application/json")

    app = Starlette(routes=[Route(BARE_PATH, daily)])
    # The options `tm-service` runs with (`tm_service.main`), so the two
    # differ only in the application.
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
    )


def start_bare(body: bytes, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    body_file = work / "daily.json"
    body_file.write_bytes(body)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--bare", str(port), str(body_file)]
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            asyncio.run(_probe(port))
            return process, port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the bare app did not start")


def server_stack(pid: int) -> str:
    """Which event loop and HTTP parser a target's uvicorn loaded: its
    native modules, as the process's memory map names them (Linux)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return "unknown"
    loop = "uvloop" if "/uvloop/" in maps else "asyncio"
    parser = "httptools" if "/httptools/" in maps else "h11"

    return f"{loop} + {parser}"


async def _probe(port: int) -> None:
    connection = Connection(port, {})
    await connection.open()
    await connection.request("GET", BARE_PATH)
    connection.close()


def platform(work: Path, **overrides: str) -> Platform:
    running = Platform(ConnectionSettings(), work, overrides={**NO_LIMITS, **overrides})
    running.start_service()
    return running


def seed(target: Platform, count: int) -> bytes:
    """`count` tasks on the benchmark's day; the daily view's answer."""
    from tests.support import documents

    for index in range(count):
        body = documents.design_example(taskDate=DAY, title=f"Bench {index}")
        target.http.post(TASKS, json=body, headers=target.headers())
    answer = target.http.get(DAILY, headers=target.headers())
    assert answer.status_code == 200, answer.text
    return answer.content


@dataclass
class Measured:
    name: str
    peak: Run
    paced: Run
    """The paced round of median p99."""
    worst: Run
    """The paced round of highest p99."""
    failures: int
    """Answers that were not a success, in every round."""
    concurrency: int
    """Requests at once of its flat-out runs."""


def peak_of(
    port: int,
    path: str,
    headers: dict[str, str],
    pid: int,
    *,
    connections: int,
    seconds: float,
) -> Run:
    with _collector_off():
        before = cpu_seconds(pid)
        run = asyncio.run(
            flat_out(port, path, headers, connections=connections, seconds=seconds)
        )
        run.cpu_s = cpu_seconds(pid) - before

    return run


def best_concurrency(
    port: int,
    path: str,
    headers: dict[str, str],
    pid: int,
    args: argparse.Namespace,
) -> int:
    """The number of requests at once, of `--connections`, at which the
    target answers the most a second in a short run."""
    rates = {
        count: peak_of(
            port, path, headers, pid, connections=count, seconds=args.probe_seconds
        ).rate
        for count in args.connections
    }
    return max(rates, key=lambda count: rates[count])


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far, from /proc (Linux);
    0 where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def paced_at(
    port: int,
    path: str,
    headers: dict[str, str],
    pid: int,
    rate: float,
    seconds: float,
) -> Run:
    with _collector_off():
        before = cpu_seconds(pid)
        run = asyncio.run(
            at_rate(port, "GET", path, headers, rate=rate, seconds=seconds)
        )
        run.cpu_s = cpu_seconds(pid) - before

    return run


@contextlib.contextmanager
def _collector_off() -> Iterator[None]:
    """No garbage collection in the load generator while it measures.

    Its own full collections, over every request object it made, stopped
    it for tens of milliseconds at a time: answers that had arrived waited
    to be read and were counted as the server's latency. What a measurement
    leaves is freed by reference counting, and collected after it.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10, help="tasks in the day")
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument(
        "--connections",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[16, 32, 64],
        help="requests at once to try, comma-separated",
    )
    parser.add_argument(
        "--probe-seconds", type=float, default=2.0, help="per concurrency tried"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--create-rate", type=float, default=20.0)
    parser.add_argument("--bare", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        serve_bare(int(args.bare[0]), args.bare[1])
        return

    import tempfile

    with tempfile.TemporaryDirectory(prefix="tm-bench-") as folder:
        work = Path(folder)
        targets = {
            "cached": platform(work),
            "uncached": platform(work, TM_VIEW_CACHE_ENABLED="false"),
            "no limits": platform(work, TM_RATE_LIMITS_ENABLED="false"),
        }
        bare: subprocess.Popen[bytes] | None = None
        try:
            body = b""
            for target in targets.values():
                body = seed(target, args.tasks)
            bare, bare_port = start_bare(body, work)
            print(f"daily view of {args.tasks} tasks, {len(body)} bytes", flush=True)

            # The comparison is fair only on the same server stack.
            stacks = {"bare": server_stack(bare.pid)}
            for name, target in targets.items():
                assert target.service.popen is not None
                stacks[name] = server_stack(target.service.popen.pid)
            print("server stacks:", stacks, flush=True)
            if len(set(stacks.values())) != 1:
                raise SystemExit("the targets run different server stacks")

            aims = {"bare": (bare_port, BARE_PATH, {})}
            pids = {"bare": bare.pid}
            for name, target in targets.items():
                aims[name] = (target.port, DAILY, target.headers())
                assert target.service.popen is not None
                pids[name] = target.service.popen.pid
            for port, path, headers in aims.values():
                # A short warm-up fills caches and pools before measuring.
                asyncio.run(flat_out(port, path, headers, connections=4, seconds=1))

            concurrency = {
                name: best_concurrency(*aim, pids[name], args)
                for name, aim in aims.items()
            }
            print("requests at once, the best of those tried:", concurrency)
            peaks: dict[str, list[Run]] = {name: [] for name in aims}
            for round_number in range(args.rounds):
                for name, aim in aims.items():
                    run = peak_of(
                        *aim,
                        pids[name],
                        connections=concurrency[name],
                        seconds=args.seconds,
                    )
                    peaks[name].append(run)
                    rate = peaks[name][-1].rate
                    print(f"  round {round_number + 1} {name}: {rate:.0f} req/s")
            chosen = {
                name: sorted(runs, key=lambda r: r.rate)[len(runs) // 2]
                for name, runs in peaks.items()
            }
            paced_runs: dict[str, list[Run]] = {name: [] for name in aims}
            for round_number in range(args.rounds):
                for name, (port, path, headers) in aims.items():
                    rate = chosen[name].rate * 0.7
                    run = paced_at(port, path, headers, pids[name], rate, args.seconds)
                    paced_runs[name].append(run)
                    print(
                        f"  round {round_number + 1} {name} at {rate:.0f}/s: "
                        f"p99 {run.percentile(0.99):.1f} ms, "
                        f"{run.cpu_us_per_request:.0f} us of its CPU a request"
                    )
            results = []
            for name, runs in paced_runs.items():
                by_p99 = sorted(runs, key=lambda r: r.percentile(0.99))
                failures = sum(r.failures for r in [*peaks[name], *runs])
                median = by_p99[len(by_p99) // 2]
                results.append(
                    Measured(
                        name,
                        chosen[name],
                        median,
                        by_p99[-1],
                        failures,
                        concurrency[name],
                    )
                )

            cached = targets["cached"]
            counter = iter(range(10**9))
            with _collector_off():
                creation = asyncio.run(
                    at_rate(
                        cached.port,
                        "POST",
                        TASKS,
                        {**cached.headers(), "Content-Type": "application/json"},
                        rate=args.create_rate,
                        seconds=args.seconds,
                        body=lambda: _create_body(next(counter)),
                    )
                )
        finally:
            if bare is not None:
                bare.terminate()
                bare.wait(timeout=10)
            for target in targets.values():
                target.close()

    report(results, creation, args)


def _create_body(index: int) -> bytes:
    import orjson

    from tests.support import documents

    return orjson.dumps(documents.design_example(title=f"Created {index}"))


def report(results: list[Measured], creation: Run, args: argparse.Namespace) -> None:
    by_name = {m.name: m for m in results}
    bare = by_name["bare"].peak.rate
    uncached = by_name["uncached"].peak.rate
    print()
    print(
        f"{'target':<10} {'at once':>7} {'req/s':>7} {'vs bare':>8} "
        f"{'vs uncached':>12} {'CPU/req':>8} {'p50 @70%':>9} {'p99 @70%':>9} "
        f"{'worst p99':>10} {'errors':>7}"
    )
    for m in results:
        print(
            f"{m.name:<10} {m.concurrency:>7} {m.peak.rate:>7.0f} "
            f"{m.peak.rate / bare:>8.2f} {m.peak.rate / uncached:>12.2f} "
            f"{m.peak.cpu_us_per_request:>6.0f}us "
            f"{m.paced.percentile(0.5):>7.1f}ms {m.paced.percentile(0.99):>7.1f}ms "
            f"{m.worst.percentile(0.99):>8.1f}ms {m.failures:>7}"
        )
    limited = by_name["cached"].peak.rate
    unlimited = by_name["no limits"].peak.rate
    print()
    print(
        f"rate limiter: {limited / unlimited:.2f} of the throughput without it "
        f"(p50 {by_name['cached'].paced.percentile(0.5):.1f} vs "
        f"{by_name['no limits'].paced.percentile(0.5):.1f} ms)"
    )
    print(
        f"task creation at {args.create_rate:g}/s: p50 "
        f"{creation.percentile(0.5):.1f} ms, p99 {creation.percentile(0.99):.1f} ms, "
        f"{creation.failures} failed of {creation.requests}"
    )
    cached_p50 = statistics.median(by_name["cached"].paced.latencies_ms)
    uncached_p50 = statistics.median(by_name["uncached"].paced.latencies_ms)
    print(
        f"daily view p50 at 70%: {cached_p50:.1f} ms cached, "
        f"{uncached_p50:.1f} ms uncached"
    )


if __name__ == "__main__":
    main()
