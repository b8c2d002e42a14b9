"""How late reminders go out: 2,000 reminders due over 20 seconds, end to end.

Each reminder is created through the HTTP API of a running `tm-service`, goes
through the outbox to Kafka and a `tm-streams` worker, and is received by
local servers that speak the Twilio and SendGrid APIs. Lateness is the time
from a reminder's `sendAt` to its arrival at the provider.

Two rounds run on the same servers, one after the other:

- `engine`: the worker as shipped, holding what is due soon in memory;
- `poll 1s`: the same worker made into a poller that reads the database for
  due reminders once a second and holds nothing ahead (`TM_SCHEDULE_HORIZON_S=0`,
  `TM_SWEEP_INTERVAL_MS=1000`), sixty times more often than the once-a-minute
  job of the original design.

Run with the servers up: `scripts/infra up && .venv/bin/python bench/reminders.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.platform import TASKS, Platform, iso
from tm_adapters.settings import ConnectionSettings, DeliverySettings

BENCH_TITLE = re.compile(r"bench \d{5}")


def shipped(*names: str) -> dict[str, str]:
    """The worker's own defaults for `names`, in place of the test platform's.

    The platform the end-to-end tests share sweeps every 2 s and backs off in
    200 ms steps, to keep the tests short; the benchmark measures the worker
    as it ships.
    """
    fields = DeliverySettings.model_fields
    return {f"TM_{name.upper()}": str(fields[name].default) for name in names}


AS_SHIPPED = shipped(
    "sweep_interval_ms", "delivery_backoff_base_ms", "delivery_send_timeout_ms"
)


@dataclass
class Round:
    name: str
    sent: int
    missing: int
    """Reminders not received by 30 s after the last one was due."""
    doubled: int
    lateness_ms: list[float]
    sends_per_s: float
    by_second: dict[int, list[float]]
    """Lateness by the second of the spread the reminders were due in."""

    def percentile(self, share: float) -> float:
        ordered = sorted(self.lateness_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def create_all(
    platform: Platform, bodies: list[dict[str, Any]], *, concurrency: int
) -> list[str]:
    """Create the tasks through the API, `concurrency` requests at a time."""
    titles: list[str] = []
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            response = await client.post(TASKS, json=body, headers=platform.headers())
            response.raise_for_status()
            titles.append(response.json()["data"]["title"])

    async with httpx.AsyncClient(base_url=platform.url, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))

    return titles


def run_round(
    name: str,
    servers: ConnectionSettings,
    *,
    count: int,
    spread: float,
    lead: float,
    overrides: dict[str, str],
) -> Round:
    with tempfile.TemporaryDirectory(prefix="tm-bench-") as scratch:
        platform = Platform(servers, Path(scratch), overrides=overrides)
        try:
            platform.start_service()
            platform.start_worker()
            platform.warm_up()

            # Reminders due one after the other over `spread` seconds, the
            # first `lead` seconds from now, half by SMS and half by e-mail.
            first = datetime.now(UTC) + timedelta(seconds=lead)
            due: dict[str, float] = {}
            bodies = []
            for i in range(count):
                send_at = first + timedelta(seconds=spread * i / count)
                body = platform.task(
                    due_in=timedelta(0), channels=["sms" if i % 2 else "email"]
                )
                body["title"] = f"bench {i:05d}"
                body["reminder"]["sendAt"] = iso(send_at)
                due[body["title"]] = send_at.timestamp()
                bodies.append(body)
            started = time.monotonic()
            asyncio.run(create_all(platform, bodies, concurrency=16))
            created_in = time.monotonic() - started
            if time.time() > first.timestamp():
                print(f"  warning: creating took {created_in:.1f}s, past the lead")

            # Wait for the last reminder and a little more for doubles.
            deadline = first.timestamp() + spread + 30
            while time.time() < deadline:
                received = platform.providers.messages(accepted_only=True)
                if len(received) >= count:
                    break
                time.sleep(0.2)
            time.sleep(3)
            received = platform.providers.messages(accepted_only=True)
        finally:
            platform.close()

    counts = Counter(title_of(m, due) for m in received)
    lateness = []
    by_second: dict[int, list[float]] = {}
    for message in received:
        title = title_of(message, due)
        if title is not None:
            late = (message["receivedAt"] - due[title]) * 1000
            lateness.append(late)
            second = int(due[title] - first.timestamp())
            by_second.setdefault(second, []).append(late)
    arrivals = sorted(m["receivedAt"] for m in received)
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
    print(f"  {name}: created {count} tasks in {created_in:.1f}s")

    return Round(
        name=name,
        sent=sum(1 for t in due if counts[t] >= 1),
        missing=sum(1 for t in due if counts[t] == 0),
        doubled=sum(1 for t in due if counts[t] > 1),
        lateness_ms=lateness,
        sends_per_s=len(received) / span if span else float("nan"),
        by_second=by_second,
    )


def title_of(message: dict[str, Any], due: dict[str, float]) -> str | None:
    """The benchmark task a provider request was for, if any."""
    found = BENCH_TITLE.search(message.get("body") or "")
    return found.group(0) if found and found.group(0) in due else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--spread", type=float, default=20.0, help="seconds")
    parser.add_argument("--lead", type=float, default=45.0, help="seconds")
    parser.add_argument(
        "--engine-only", action="store_true", help="skip the poller round"
    )
    parser.add_argument(
        "--by-second",
        action="store_true",
        help="also print lateness for each second of the spread",
    )
    args = parser.parse_args()
    servers = ConnectionSettings()

    rounds = [
        run_round(
            "engine",
            servers,
            count=args.count,
            spread=args.spread,
            lead=args.lead,
            overrides=AS_SHIPPED,
        ),
        *(
            []
            if args.engine_only
            else [
                run_round(
                    "poll 1s",
                    servers,
                    count=args.count,
                    spread=args.spread,
                    lead=args.lead,
                    overrides={
                        **AS_SHIPPED,
                        "TM_SCHEDULE_HORIZON_S": "0",
                        "TM_SWEEP_INTERVAL_MS": "1000",
                    },
                )
            ]
        ),
    ]

    print()
    print(
        f"{'round':<10}{'sent':>7}{'missing':>9}{'doubled':>9}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'mean ms':>9}{'sends/s':>9}"
    )
    for r in rounds:
        mean = statistics.fmean(r.lateness_ms) if r.lateness_ms else float("nan")
        print(
            f"{r.name:<10}{r.sent:>7}{r.missing:>9}{r.doubled:>9}"
            f"{r.percentile(0.5):>9.0f}{r.percentile(0.99):>9.0f}"
            f"{max(r.lateness_ms, default=float('nan')):>9.0f}"
            f"{mean:>9.0f}"
            f"{r.sends_per_s:>9.1f}"
        )
    if args.by_second:
        for r in rounds:
            print()
            print(f"{r.name}: second  sends  p50 ms  max ms")
            for second, values in sorted(r.by_second.items()):
                values.sort()
                print(
                    f"{second:>14}{len(values):>7}"
                    f"{values[len(values) // 2]:>8.0f}{values[-1]:>8.0f}"
                )
    engine = rounds[0]
    for poll in rounds[1:]:
        print()
        print(
            "poll / engine lateness: "
            f"p50 {poll.percentile(0.5) / max(engine.percentile(0.5), 1e-3):.1f}x, "
            f"p99 {poll.percentile(0.99) / max(engine.percentile(0.99), 1e-3):.1f}x"
        )
    met = engine.percentile(0.99) <= 500 and not engine.missing and not engine.doubled
    verdict = "met" if met else "MISSED"
    print(f"target (p99 <= 500 ms, none missing or doubled): {verdict}")


if __name__ == "__main__":
    main()
