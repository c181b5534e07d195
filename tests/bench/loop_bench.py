"""The full loop with automated actors: cases closed per second, and how long a case takes from
report to dispatched and from report to closed (times from the log: each event's recorded_at).

Actors over HTTP: a grid worker reports, the department accepts and completes as soon as the
task shows, the grid worker passes the verification. First as many cases as CONCURRENCY
actors can close (the rate), then new cases at half that rate (the latencies). Baseline for the
rate: raw single-row INSERT commits a second at 64 connections divided by the events a case
writes; for the latencies, one raw INSERT commit at the same rate.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from time import perf_counter
from typing import Any

import aiohttp
import asyncpg
import msgspec

from shared.auth import Role, issue_token
from shared.stack import SERVICES, Stack, load_secrets
from tests.bench.eventstore_bench import Figure
from tests.bench.figures import Bounded, percentile
from tests.bench.intake_bench import GRID, Call, open_loop

CASES = 300
CONCURRENCY = 48
POLL = 0.1
EVIDENCE = [{"url": "https://files.example/after.jpg", "sha256": "ab" * 32, "media_type": "image/jpeg"}]


class Actors:
    def __init__(self, stack: Stack, session: aiohttp.ClientSession) -> None:
        self.urls = {name: stack.process(name).url for name in SERVICES}
        self.session = session
        secret = load_secrets(stack.root).jwt_secret
        self.worker = issue_token(secret, sub="bench-gw", role=Role.GRID_WORKER, grids=(GRID,))
        self.dispatcher = issue_token(secret, sub="bench-dispatcher", role=Role.DISPATCHER)
        self.handlers = {
            d: issue_token(secret, sub=f"bench-{d}", role=Role.HANDLER, department=d)
            for d in ("sanitation", "city_management", "water", "drainage", "housing", "traffic")
        }
        self.case_ids: list[str] = []

    async def call(self, method: str, service: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        data = msgspec.json.encode(body) if body is not None else None
        while True:
            async with self.session.request(method, self.urls[service] + path, data=data, headers=headers) as r:
                answer = msgspec.json.decode(await r.read() or b"null")
                if r.status in (404, 429, 503):  # a view not caught up yet
                    await asyncio.sleep(POLL)
                    continue
                return r.status, answer

    def handler(self, department: str) -> str:
        if department not in self.handlers:
            raise RuntimeError(f"no bench handler for {department}")
        return self.handlers[department]

    async def case(self) -> bool:
        report = {"source": "grid_worker", "category": "blocked_drain", "location": {"grid": GRID}}
        status, answer = await self.call("POST", "intake", "/v1/reports", self.worker, report)
        if status != 201:
            raise RuntimeError(f"report refused: {status} {answer}")
        case_id = answer["case_id"]
        self.case_ids.append(case_id)
        done: set[str] = set()
        while True:
            _, case = await self.call("GET", "intake", f"/v1/cases/{case_id}", self.dispatcher)
            if case["status"] == "closed":
                return True
            for task in case["tasks"]:
                if task["status"] in ("dispatched", "accepted") and task["id"] not in done:
                    base, token = f"/v1/tasks/{task['id']}", self.handler(task["department"])
                    await self.call("POST", "handling", f"{base}/accept", token, {})
                    await self.call(
                        "POST", "handling", f"{base}/complete", token, {"result": "ok", "evidence": EVIDENCE}
                    )
                    done.add(task["id"])
            verification = case.get("verification")
            if case["status"] == "verifying" and verification and verification["outcome"] == "pending":
                path = f"/v1/verifications/{verification['id']}/pass"
                status, answer = await self.call("POST", "verification", path, self.worker, {"evidence": EVIDENCE})
                if status == 200:
                    return True
            await asyncio.sleep(POLL)


async def closed_per_second(actors: Actors, cases: int) -> float:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one() -> bool:
        async with gate:
            return await actors.case()

    begin = perf_counter()
    await asyncio.gather(*(one() for _ in range(cases)))
    return cases / (perf_counter() - begin)


async def timings(service_url: str, case_ids: list[str]) -> tuple[list[float], list[float], float]:
    """(report→dispatched ms, report→closed ms, events per case) from the log."""
    conn = await asyncpg.connect(service_url)
    try:
        rows = await conn.fetch(
            """SELECT stream_id, type, recorded_at FROM events
               WHERE stream_id = ANY($1::text[]) AND type IN ('CaseReported', 'CaseDispatched', 'CaseClosed')""",
            [f"case-{c}" for c in case_ids],
        )
        events = await conn.fetchval(
            "SELECT count(*) FROM events WHERE stream_id = ANY($1::text[])", [f"case-{c}" for c in case_ids]
        )
    finally:
        await conn.close()
    at: dict[str, dict[str, datetime]] = {}
    for row in rows:
        at.setdefault(row["stream_id"], {})[row["type"]] = row["recorded_at"]

    def spans(to: str) -> list[float]:
        return [1000 * (t[to] - t["CaseReported"]).total_seconds() for t in at.values() if to in t]

    return spans("CaseDispatched"), spans("CaseClosed"), events / max(1, len(case_ids))


async def run(stack: Stack, service_url: str, raw: Call, raw_rate: float) -> list[Figure]:
    connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        actors = Actors(stack, session)
        await closed_per_second(actors, 20)  # warm up
        actors.case_ids.clear()
        rate = await closed_per_second(actors, CASES)
        _, _, per_case = await timings(service_url, actors.case_ids)
        actors.case_ids.clear()
        half = rate / 2
        seconds = max(10.0, 100 / half)
        await open_loop(actors.case, half, seconds)
        base = await open_loop(raw, half, 4.0)
    dispatched, closed, _ = await timings(service_url, actors.case_ids)
    at = f"at {half:,.1f} cases/s"
    raw_name = "raw INSERT commit at the same rate"
    return [
        Bounded(
            f"full loop, cases closed/s ({CONCURRENCY} actors)",
            rate,
            raw_rate / per_case,
            f"raw INSERT/s ÷ {per_case:.1f} events a case",
            unit="cases/s",
            limit=100,
            below=False,
        ),
        Bounded(f"report→dispatched p50 {at}, ms", percentile(dispatched, 50), percentile(base, 50), raw_name),
        Bounded(
            f"report→dispatched p99 {at}, ms", percentile(dispatched, 99), percentile(base, 99), raw_name, limit=250
        ),
        Bounded(f"report→closed p50 {at}, ms", percentile(closed, 50), percentile(base, 50), raw_name),
        Bounded(f"report→closed p99 {at}, ms", percentile(closed, 99), percentile(base, 99), raw_name),
    ]
