"""Intake against the running services: reports accepted (and committed) per second by 64
concurrent clients, and p50/p99 latency at half that rate, beside raw single-row INSERT commits
at the same concurrency and the same rate on the same server.

Two callers: a mini-program backend (RFC 9421-signed, with the reporter's name and phone, which
intake seals with the reporter's own key and counts against the daily limit) and a grid worker
with a bearer token (no reporter). The clients run in this process, on the same 2 cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Awaitable, Callable, Iterator
from time import perf_counter
from typing import Any

import asyncpg
import msgspec

from ops.servers import free_port
from ops.stack import SERVICES, Stack
from shared.store.db import create_pool
from shared.web.auth import Role
from shared.web.signing import sign_request
from tests import folders
from tests.bench.eventstore_bench import Appenders, Figure, create_raw_table
from tests.bench.figures import Bounded, percentile
from tests.e2e.client import Api

CLIENTS = 64
SECONDS = 4.0
GRID = "wenfeng-tianehu-01"
Call = Callable[[], Awaitable[bool]]  # one request; True when it was accepted


@contextlib.contextmanager
def running_stack(
    admin_url: str, service_url: str, nats_url: str, name: str, services: tuple[str, ...] | None = None
) -> Iterator[Stack]:
    """The services (default: every one) as processes against the bench's servers; limits out of the way."""
    root = folders.make("bench-stack")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "DATABASE_URL", "ADMIN_DATABASE"))}
    env.update(
        DATABASE_URL=service_url,
        ADMIN_DATABASE_URL=admin_url,
        NATS_URL=nats_url,
        NATS_STREAM=name.upper(),
        SUBJECT_PREFIX=name,
        RATE_PER_SECOND="1000000",
        RATE_BURST="1000000",
        REPORTER_DAILY_LIMIT="1000000",
        LOG_LEVEL="warning",
        CLOCK_FILE=str(root / "clock"),
    )
    stack = Stack(root, env=env, ports={s: free_port() for s in SERVICES})
    try:
        stack.start_infrastructure()
        stack.start_services(services)
        yield stack
    finally:
        stack.stop()
        folders.done(root)


class Reporters:
    """The two kinds of caller, posting reports over one HTTP session."""

    def __init__(self, api: Api) -> None:
        self.url = api.info.urls["intake"] + "/v1/reports"
        self.session = api.session
        self.key = api.backend()
        self.private = self.key.private_key()
        self.token = api.token(Role.GRID_WORKER, "bench-gw", grids=(GRID,))
        self.failures = 0

    def body(self, reporter: bool) -> bytes:
        report: dict[str, Any] = {
            "source": "citizen" if reporter else "grid_worker",
            "category": "blocked_drain",
            "description": "雨水篦子堵塞，路面积水",
            "location": {"grid": GRID, "address": "开州区文峰街道天鹅湖社区"},
        }
        if reporter:
            report["reporter"] = {"name": "张伟", "phone": f"138{random.randrange(10**8):08d}"}
        return msgspec.json.encode(report)

    async def signed(self) -> bool:
        data = self.body(reporter=True)
        headers = sign_request(
            "POST", self.url, {"Content-Type": "application/json"}, data, self.key.key_id, self.private
        )
        return await self._post(data, headers)

    async def bearer(self) -> bool:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        return await self._post(self.body(reporter=False), headers)

    async def _post(self, data: bytes, headers: dict[str, str]) -> bool:
        async with self.session.post(self.url, data=data, headers=headers) as response:
            await response.read()
            if response.status != 201:
                self.failures += 1
            return response.status == 201


async def closed_loop(call: Call, clients: int, seconds: float) -> float:
    """Accepted calls a second with `clients` callers, each sending its next call on an answer."""
    deadline = perf_counter() + seconds

    async def client() -> int:
        done = 0
        while perf_counter() < deadline:
            done += await call()
        return done

    start = perf_counter()
    counts = await asyncio.gather(*(client() for _ in range(clients)))
    return sum(counts) / (perf_counter() - start)


async def open_loop(call: Call, rate: float, seconds: float) -> list[float]:
    """Latencies (ms) of calls started at a fixed `rate` whatever the answers (no coordinated omission)."""
    latencies: list[float] = []

    async def one() -> None:
        start = perf_counter()
        await call()
        latencies.append(1000 * (perf_counter() - start))

    tasks = []
    begin = perf_counter()
    for n in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, begin + n / rate - perf_counter()))
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return latencies


async def raw_insert(admin_url: str, service_url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    await create_raw_table(admin_url)
    pool = await create_pool(service_url, size=CLIENTS)
    appenders = Appenders(pool, None)  # type: ignore[arg-type]

    async def call() -> bool:
        return bool(await appenders.raw(0))

    return call, pool.close


async def run(stack: Stack, admin_url: str, service_url: str) -> tuple[list[Figure], float]:
    """The figures, and raw INSERT commits/s at CLIENTS connections (the full loop's baseline)."""
    raw, close = await raw_insert(admin_url, service_url)
    async with Api.at(stack.root, {name: stack.process(name).url for name in SERVICES}, CLIENTS * 2) as api:
        reporters = Reporters(api)
        try:
            for call in (raw, reporters.signed, reporters.bearer):
                await closed_loop(call, CLIENTS, 0.5)  # warm up
            rates = {"raw": 0.0, "signed": 0.0, "bearer": 0.0}
            for _ in range(2):
                for name, call in (("raw", raw), ("signed", reporters.signed), ("bearer", reporters.bearer)):
                    rates[name] = max(rates[name], await closed_loop(call, CLIENTS, SECONDS))
            half = rates["signed"] / 2
            ours = await open_loop(reporters.signed, half, SECONDS)
            base = await open_loop(raw, half, SECONDS)
            half_bearer = rates["bearer"] / 2
            ours_bearer = await open_loop(reporters.bearer, half_bearer, SECONDS)
            base_bearer = await open_loop(raw, half_bearer, SECONDS)
        finally:
            await close()
    stored = await _count(service_url)
    base_name = f"raw single-row INSERT, {CLIENTS} conn"
    note = f"{reporters.failures} non-201 answers; {stored:,} reports stored"
    figures: list[Figure] = [
        Figure(
            f"intake (alone), signed backend + reporter, {CLIENTS} clients",
            rates["signed"],
            rates["raw"],
            base_name,
            0.4,
            note=note,
        ),
        Figure(f"intake (alone), grid worker bearer, {CLIENTS} clients", rates["bearer"], rates["raw"], base_name, 0.4),
    ]
    for label, rate, mine, theirs in (("signed", half, ours, base), ("bearer", half_bearer, ours_bearer, base_bearer)):
        at = f"at {rate:,.0f}/s (half the peak)"
        figures += [
            Bounded(
                f"intake {label} p50 {at}, ms",
                percentile(mine, 50),
                percentile(theirs, 50),
                "raw INSERT p50 at the same rate",
            ),
            Bounded(
                f"intake {label} p99 {at}, ms",
                percentile(mine, 99),
                percentile(theirs, 99),
                "raw INSERT p99 at the same rate",
                limit=50,
            ),
        ]
    return figures, rates["raw"]


async def _count(service_url: str) -> int:
    conn = await asyncpg.connect(service_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events WHERE type = 'CaseReported'"))
    finally:
        await conn.close()
