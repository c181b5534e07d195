"""One chaos run: a stack of its own, load and faults together, heal, quiet, checks.

The stack owns its PostgreSQL and nats-server (so both can be crashed) in a temporary folder,
removed at the end, pass or fail, unless CASELOOP_KEEP=1 keeps it (tests/folders.py). Limits
are the defaults (100 requests/s per caller, 20 reports a day per phone): the simulated
dispatchers are 16 callers, reporters have varied phones, and every client waits out a 429's
Retry-After.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ops.devsetup import load_dev_backend
from ops.servers import free_port
from ops.stack import SERVICES, Stack, load_secrets
from shared.domain.rules import load_policy
from tests import folders
from tests.chaos import checks
from tests.chaos.actors import TERMINAL, Chaos, every_case, plans
from tests.chaos.faults import Fault, Nemesis, heal
from tests.chaos.verdicts import Verdict

CLOCK_JUMP = 40 * 24 * 3600  # past every task's deadlines, whatever the working calendar


@dataclass
class Config:
    cases: int = 500
    rate: float = 5.0  # new reports a second
    seed: int = 0
    poisons: int = 5
    late: int = 8  # cases whose tasks nobody takes until they are overdue
    concurrency: int = 64  # cases being driven at once
    soak: bool = False  # faults keep coming until the last report is in
    finish_timeout: float = 240.0


@dataclass
class Result:
    verdicts: list[Verdict]
    figures: dict[str, Any]
    faults: list[Fault] = field(default_factory=list)
    root: Path | None = None  # the stack's folder, when CASELOOP_KEEP=1 kept it

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)


def make_stack(root: Path) -> Stack:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "DATABASE_URL", "ADMIN_DATABASE"))}
    env.update(
        CLOCK_FILE=str(root / "clock"),
        DEADLINE_INTERVAL="0.2",
        ACK_WAIT="5",
        NAK_DELAY="0.2",
        REPORTER_CONFIRM_HOURS="1",
        CHECKPOINT_SECONDS="1",
        LOG_LEVEL=os.environ.get("CHAOS_LOG_LEVEL", "info"),
    )
    ports = {service: free_port() for service in SERVICES}
    return Stack(root, env=env, ports=ports, nats_port=free_port(), pg_port=free_port())


async def run(config: Config, say: Any = print) -> Result:
    root = folders.make("chaos")
    stack = make_stack(root)
    try:
        await asyncio.to_thread(stack.start_infrastructure)
        await asyncio.to_thread(stack.start_services)
        result = await _run(stack, config, say)
    finally:
        try:
            await asyncio.to_thread(stack.stop)
        finally:
            # As root, PostgreSQL's data is outside the stack's folder: removed (or kept) with it.
            folders.done(root, postgres=stack.postgres)
    if folders.keeping():
        result.root = root
    return result


async def _run(stack: Stack, config: Config, say: Any) -> Result:
    rng = random.Random(config.seed)
    policy = load_policy(stack.env.get("RULES_PATH") or None)
    categories = [c for c in policy.categories if c != "background_check"]
    planned = plans(config.cases, categories, list(policy.grids), rng, config.late)
    urls = {name: stack.process(name).url for name in SERVICES}
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        api = Chaos(
            urls=urls,
            secret=load_secrets(stack.root).jwt_secret,
            backend_key=load_dev_backend(stack.root),
            session=session,
            categories=categories,
            grids=list(policy.grids),
        )
        nemesis = Nemesis(stack, rng, started)
        load_done = asyncio.Event()
        faults = asyncio.create_task(nemesis.run(load_done, nemesis.first_round(config.poisons), config.soak))
        drivers = await _load(api, planned, config, rng, stack, started, say)
        load_done.set()
        load_seconds = time.monotonic() - started
        await faults
        faults_seconds = time.monotonic() - started
        say(f"load done in {load_seconds:.0f} s, faults in {faults_seconds:.0f} s; healing")
        healed = await asyncio.to_thread(heal, stack)
        watch = asyncio.create_task(_watch(api, drivers, say))
        outcomes = await asyncio.wait_for(asyncio.gather(*drivers, return_exceptions=True), config.finish_timeout)
        watch.cancel()
        swept = await _sweep(api, config.finish_timeout)
        end_seconds = time.monotonic() - started
        say(f"every case at rest after {end_seconds:.0f} s; waiting for quiet")
        filters = await checks.quiet(stack, 120)
        quiet_seconds = time.monotonic() - started
        found, figures = await checks.check(stack, planned, api.attempts, nemesis.poisons, filters)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    latencies = sorted(a.seconds for a in api.attempts if a.outcome == "ok")
    figures.update(
        {
            "load phase (s)": round(load_seconds),
            "all at rest (s)": round(end_seconds),
            "quiet (s)": round(quiet_seconds),
            "report p50 / p99 (ms)": f"{_pct(latencies, 50):.0f} / {_pct(latencies, 99):.0f}",
            "drivers that raised": len(failures),
            "cases swept up after the load": swept,
            "healed at the end": ", ".join(healed) or "nothing",
            "500 answers (request_failed)": _logged(stack, "request_failed"),
            "503 answers, database away (request_unavailable)": _logged(stack, "request_unavailable"),
        }
    )
    if failures:
        found.append(Verdict("every simulated actor finished", False, f"{len(failures)}: {failures[0]!r}"))
    return Result(found, figures, nemesis.faults)


async def _load(
    api: Chaos, planned: list[Any], config: Config, rng: random.Random, stack: Stack, started: float, say: Any
) -> list[asyncio.Task[str]]:
    gate = asyncio.Semaphore(config.concurrency)
    deadline = asyncio.get_running_loop().time() + config.cases / config.rate + config.finish_timeout
    drivers: list[asyncio.Task[str]] = []
    jump_at = int(len(planned) * 0.8)

    async def one(plan: Any) -> str:
        async with gate:
            case_id = await api.submit(plan, random.Random(rng.random()))
            if case_id is None:
                return "not acknowledged"
            if plan.queue_by_design:
                api.by_design.add(case_id)
            return await api.drive(case_id, plan, deadline)

    for n, plan in enumerate(planned):
        if n == jump_at:  # near the end: every open task's deadlines pass at once
            (stack.root / "clock").write_text(str(CLOCK_JUMP))
            say(f"clock moved {CLOCK_JUMP // 86400} days ahead after {time.monotonic() - started:.0f} s")
        if n and n % 500 == 0:
            say(f"{n} reports in {time.monotonic() - started:.0f} s, {len(api.played)} cases driven")
        drivers.append(asyncio.create_task(one(plan)))
        await asyncio.sleep(1 / config.rate)
    return drivers


async def _watch(api: Chaos, drivers: list[asyncio.Task[str]], say: Any) -> None:
    """While the drivers finish: how many are left, and what the slowest wait for."""
    while True:
        await asyncio.sleep(20)
        left = [case for case, state in api.progress.items() if state not in TERMINAL]
        say(f"{sum(not d.done() for d in drivers)} drivers left; cases seen as: {Counter(api.progress.values())}")
        say(f"e.g. {left[:3]}")
        for driver in [d for d in drivers if not d.done()][:2]:
            say(" -> ".join(_awaiting(driver.get_coro())))


def _awaiting(coro: Any) -> list[str]:
    """Where a coroutine waits: its chain of awaits, outermost first."""
    chain = []
    while coro is not None and hasattr(coro, "cr_frame"):
        frame = coro.cr_frame
        if frame is not None:
            chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = coro.cr_await
    chain.append(repr(coro)[:80])
    return chain


async def _sweep(api: Chaos, timeout: float) -> int:
    """Open cases after the drivers are done: a report given up after an unknown outcome that did
    happen, or a driver that gave up; each is driven to its end (queued-by-design ones stay)."""
    open_statuses = ("reported", "awaiting_dispatch", "dispatched", "in_progress", "handled", "verifying", "reopened")
    deadline = asyncio.get_running_loop().time() + timeout
    swept: set[str] = set()
    for _ in range(3):
        found = await every_case(api, open_statuses)
        todo = [c["id"] for c in found if c["id"] not in api.by_design]
        if not todo:
            break
        swept.update(todo)
        await asyncio.gather(*(api.drive(case_id, None, deadline) for case_id in todo))
    return len(swept)


def _logged(stack: Stack, event: str) -> str:
    """How often each process logged `event` (a 500 logs request_failed, a 503 request_unavailable)."""
    counts = {}
    for name in stack.names:
        path = stack.process(name).log_path
        text = path.read_text(errors="replace") if path.exists() else ""
        counts[name] = text.count(f'"{event}"')
    return ", ".join(f"{name} {n}" for name, n in counts.items() if n) or "none"


def _pct(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    return 1000 * values[min(len(values) - 1, int(len(values) * pct / 100))]
