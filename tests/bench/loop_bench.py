"""The full loop with automated actors: cases closed per second, and how long a case takes from
report to dispatched and from report to closed (times from the log: each event's recorded_at).

Actors over HTTP, as a command centre's would run: grid workers report; each department works
its queue (lists its dispatched tasks, accepts and completes each); a grid worker works the
verification queue (lists pending ones, passes each). First CASES cases reported by REPORTERS
concurrent reporters (the rate: cases over the time from the first report to the last close),
then new cases at half that rate (the latencies). Baseline for the rate: raw single-row INSERT
commits a second at 64 connections divided by the events a case writes; for the latencies,
one raw INSERT commit at the same rate.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from time import perf_counter
from typing import Any

import asyncpg

from ops.stack import SERVICES, Stack
from shared.web.auth import Role
from tests.bench.eventstore_bench import Figure
from tests.bench.figures import Bounded, percentile
from tests.bench.intake_bench import GRID, open_loop
from tests.e2e.client import EVIDENCE, Api

CASES = 1000
REPORTERS = 32
POLL = 0.05  # an empty queue is asked again after this long
PAGE = 100
SETTLE = 180.0  # seconds every reported case has to close in
QUIET = 5.0  # after the burst, before the latency run: autovacuum and the like catch up (steady state)
DEPARTMENTS = ("sanitation", "city_management", "water", "drainage", "housing", "traffic")


class Actors:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.worker = api.token(Role.GRID_WORKER, "bench-gw", grids=(GRID,))
        self.handlers = {d: api.token(Role.HANDLER, f"bench-{d}", department=d) for d in DEPARTMENTS}
        self.case_ids: list[str] = []
        self.unknown_departments: set[str] = set()

    async def call(self, method: str, service: str, path: str, token: str, body: Any = None) -> Any:
        """The answer, asked again after POLL while a view has not caught up yet."""
        return await self.api.persist(method, service, path, token, body, pause=POLL)

    async def report(self) -> bool:
        body = {"source": "grid_worker", "category": "blocked_drain", "location": {"grid": GRID}}
        answer = await self.call("POST", "intake", "/v1/reports", self.worker, body)
        self.case_ids.append(answer["case_id"])
        return True

    async def department(self, department: str, stop: asyncio.Event) -> None:
        """Work one department's queue: every dispatched task accepted, then completed."""
        token, done = self.handlers[department], set[str]()
        query = f"/v1/tasks?department={department}&status=dispatched&page_size={PAGE}"

        async def work(task_id: str) -> None:
            await self.call("POST", "handling", f"/v1/tasks/{task_id}/accept", token, {})
            body = {"result": "ok", "evidence": EVIDENCE}
            await self.call("POST", "handling", f"/v1/tasks/{task_id}/complete", token, body)

        while not stop.is_set():
            page = await self.call("GET", "handling", query, token)
            fresh = [t["id"] for t in page["items"] if t["id"] not in done]
            done.update(fresh)
            await asyncio.gather(*(work(t) for t in fresh))
            if not fresh:
                await _sleep(stop, POLL)

    async def verifier(self, stop: asyncio.Event) -> None:
        """Work the grid's verification queue: every pending verification passed."""
        done: set[str] = set()
        query = f"/v1/verifications?grid={GRID}&status=pending&page_size={PAGE}"

        async def work(verification_id: str) -> None:
            path = f"/v1/verifications/{verification_id}/pass"
            await self.call("POST", "verification", path, self.worker, {"evidence": EVIDENCE})

        while not stop.is_set():
            page = await self.call("GET", "verification", query, self.worker)
            fresh = [v["verification_id"] for v in page["items"] if v["verification_id"] not in done]
            done.update(fresh)
            await asyncio.gather(*(work(v) for v in fresh))
            if not fresh:
                await _sleep(stop, POLL)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def all_closed(service_url: str, case_ids: list[str]) -> None:
    """Wait until every case has its CaseClosed in the log (SETTLE seconds at most)."""
    streams = [f"case-{c}" for c in case_ids]
    conn = await asyncpg.connect(service_url)
    try:
        deadline = perf_counter() + SETTLE
        while (
            closed := await conn.fetchval(
                "SELECT count(*) FROM events WHERE type = 'CaseClosed' AND stream_id = ANY($1::text[])", streams
            )
        ) < len(streams):
            if perf_counter() > deadline:
                raise RuntimeError(f"only {closed} of {len(streams)} cases closed in {SETTLE:.0f} s")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def reported(actors: Actors, cases: int) -> None:
    """`cases` reports by REPORTERS concurrent reporters."""
    gate = asyncio.Semaphore(REPORTERS)

    async def one() -> bool:
        async with gate:
            return await actors.report()

    await asyncio.gather(*(one() for _ in range(cases)))


async def timings(service_url: str, case_ids: list[str]) -> tuple[list[float], list[float], float, float]:
    """(report→dispatched ms, report→closed ms, events per case, first report→last close s) from the log."""
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

    first = min(t["CaseReported"] for t in at.values())
    last = max(t["CaseClosed"] for t in at.values() if "CaseClosed" in t)
    span = (last - first).total_seconds()
    return spans("CaseDispatched"), spans("CaseClosed"), events / max(1, len(case_ids)), span


async def run(stack: Stack, service_url: str, raw: Any, raw_rate: float) -> list[Figure]:
    async with Api.at(stack.root, {name: stack.process(name).url for name in SERVICES}, REPORTERS * 4) as api:
        actors = Actors(api)
        stop = asyncio.Event()
        workers = [asyncio.create_task(actors.department(d, stop)) for d in DEPARTMENTS]
        workers.append(asyncio.create_task(actors.verifier(stop)))
        try:
            await reported(actors, 20)  # warm up
            await all_closed(service_url, actors.case_ids)
            actors.case_ids.clear()
            await reported(actors, CASES)
            await all_closed(service_url, actors.case_ids)
            _, _, per_case, span = await timings(service_url, actors.case_ids)
            rate = len(actors.case_ids) / span
            actors.case_ids.clear()
            half = rate / 2
            await asyncio.sleep(QUIET)
            seconds = max(20.0, 400 / half)
            await open_loop(actors.report, half, seconds)
            await all_closed(service_url, actors.case_ids)
            base = await open_loop(raw, half, 4.0)
        finally:
            stop.set()
            await asyncio.gather(*workers, return_exceptions=True)
    dispatched, closed, _, _ = await timings(service_url, actors.case_ids)
    at = f"at {half:,.1f} cases/s"
    raw_name = "raw INSERT commit at the same rate"
    return [
        Bounded(
            f"full loop, cases closed/s ({CASES:,} cases, queue-working actors)",
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
