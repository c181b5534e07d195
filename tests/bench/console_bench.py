"""The console's live updates: from a report to its event on a connected page, p50 and p99, beside
the same run's report-to-dispatched (from the log: CaseDispatched's recorded_at less CaseReported's).

The page is the dispatcher's workbench in a real headless Chromium, signed in through the form.
Reports go to intake's API at RATE a second from this process; each one's time is taken just before
its POST, and the page notes (a MutationObserver on the live feed, Date.now()) when its
CaseReported notice arrives. Browser, services and this process share the machine's 2 cores and
one clock.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from typing import Any

import aiohttp
import msgspec

from ops.stack import Stack, load_secrets
from shared.store.db import SERVICE_ROLE, bootstrap, with_credentials, with_database
from shared.web.auth import Role, issue_token
from tests.bench.eventstore_bench import Figure
from tests.bench.figures import Bounded, percentile
from tests.bench.services_bench import running
from tests.browser import chromium
from tests.browser.pages import sign_in

DATABASE = f"caseloop_bench_console_{os.getpid()}"
CASES = 200
RATE = 10.0  # reports a second: a busy district's hotline, well under intake's peak
GRID = "wenfeng-tianehu-01"
# Notes each CaseReported notice's arrival on the page, by case id, in epoch milliseconds.
OBSERVE = """
window.arrivals = {};
new MutationObserver((changes) => {
  const now = Date.now();
  for (const change of changes) for (const node of change.addedNodes) {
    if (node.dataset && node.dataset.type === "CaseReported") window.arrivals[node.dataset.caseId] = now;
  }
}).observe(document.getElementById("feed"), {childList: true});
"""


async def group(admin_url: str, nats_url: str, password: str, status: Any) -> list[Figure]:
    """Every service and the console, in a database of their own on the bench's server."""
    await bootstrap(admin_url, DATABASE, {SERVICE_ROLE: password})
    admin = with_database(admin_url, DATABASE)
    async with running(
        admin, with_credentials(admin, SERVICE_ROLE, password), nats_url, f"benchconsole{os.getpid()}"
    ) as stack:
        with status(f"console: {CASES} reports at {RATE:.0f}/s to a page in Chromium"):
            return await run(stack)


async def run(stack: Stack) -> list[Figure]:
    secret = load_secrets(stack.root).jwt_secret
    dispatcher = issue_token(secret, sub="bench-dispatcher", role=Role.DISPATCHER)
    worker = issue_token(secret, sub="bench-gw", role=Role.GRID_WORKER, grids=(GRID,))
    console, intake = stack.process("console").url, stack.process("intake").url
    if lacking := chromium.missing():
        raise SystemExit(f"the console bench needs {', '.join(lacking)}: run {chromium.INSTALL}")
    with chromium.browser() as page:
        await asyncio.to_thread(sign_in, page, console, dispatcher)
        page.execute_script(OBSERVE)
        async with aiohttp.ClientSession() as http:
            posted = await _report(http, intake, worker)
            arrivals = await _arrivals(page, set(posted))
            dispatched = [await _to_dispatched(http, intake, dispatcher, case_id) for case_id in posted]
    live = [arrivals[case_id] - sent for case_id, sent in posted.items()]
    base = f"report→dispatched, same run (p50 {percentile(dispatched, 50):.0f} / p99 {percentile(dispatched, 99):.0f})"
    at = f"({CASES} reports at {RATE:.0f}/s)"
    return [
        Bounded(f"console: report→event on a connected page p50 {at}, ms", percentile(live, 50),
                percentile(dispatched, 50), base),
        Bounded(f"console: report→event on a connected page p99 {at}, ms", percentile(live, 99),
                percentile(dispatched, 99), base),
    ]  # fmt: skip


async def _report(http: aiohttp.ClientSession, intake: str, token: str) -> dict[str, float]:
    """CASES reports at RATE a second: case id -> when its POST began (epoch ms)."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    body = msgspec.json.encode(
        {"source": "grid_worker", "category": "blocked_drain", "location": {"grid": GRID}, "description": "积水"}
    )
    posted: dict[str, float] = {}
    start = time.monotonic()
    for n in range(CASES):
        await asyncio.sleep(max(0.0, start + n / RATE - time.monotonic()))  # pacing an open loop
        sent = time.time() * 1000
        async with http.post(f"{intake}/v1/reports", data=body, headers=headers) as response:
            answer = msgspec.json.decode(await response.read())
            if response.status != 201:
                raise RuntimeError(f"report refused: {response.status} {answer}")
        posted[answer["case_id"]] = sent
    return posted


async def _arrivals(page: Any, cases: set[str], timeout: float = 60.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        arrivals: dict[str, float] = await asyncio.to_thread(page.execute_script, "return window.arrivals")
        if cases <= set(arrivals) or time.monotonic() > deadline:
            missing = cases - set(arrivals)
            if missing:
                raise RuntimeError(f"{len(missing)} reports never reached the page")
            return arrivals
        await asyncio.sleep(0.2)


async def _to_dispatched(http: aiohttp.ClientSession, intake: str, token: str, case_id: str) -> float:
    """Milliseconds from CaseReported to CaseDispatched, by the log's recorded_at."""
    headers = {"Authorization": f"Bearer {token}"}
    while True:
        async with http.get(f"{intake}/v1/cases/{case_id}/history", headers=headers) as response:
            events = msgspec.json.decode(await response.read())["events"]
        at = {e["type"]: datetime.fromisoformat(e["recorded_at"]) for e in events}
        if "CaseDispatched" in at:
            return (at["CaseDispatched"] - at["CaseReported"]).total_seconds() * 1000
        await asyncio.sleep(0.1)
