"""Every service SIGKILLed and restarted while cases are in flight: every case still closes, once."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import aiohttp
import pytest

from ops.stack import SERVICES, Stack
from tests.e2e.client import EVIDENCE, Api
from tests.eventually import eventually

pytestmark = pytest.mark.e2e
CASES = 24
ONCE = [
    "CaseReported",
    "CaseDispatched",
    "TaskDispatched",
    "TaskAccepted",
    "TaskCompleted",
    "CaseHandled",
    "VerificationRequested",
    "VerificationPassed",
    "CaseClosed",
]


async def persist(api: Api, method: str, service: str, path: str, token: str, body: Any = None) -> Any:
    """Retry through a dead service, a view not yet caught up, or a timeout: the way real clients behave."""
    for _ in range(600):
        try:
            status, answer = await api.call(method, service, path, token=token, json=body)
        except (aiohttp.ClientError, TimeoutError):
            await asyncio.sleep(0.1)
            continue
        if status in (200, 201, 202):
            return answer
        if status in (404, 409, 500, 502, 503):
            await asyncio.sleep(0.1)
            continue
        raise AssertionError(f"{method} {path}: {status} {answer}")
    raise AssertionError(f"{method} {path} never succeeded")


async def drive(api: Api, n: int) -> str:
    body = {"source": "citizen", "category": "blocked_drain", "location": {"grid": "wenfeng-nanjiao-01"}}
    created = await persist(api, "POST", "intake", "/v1/reports", api.backend(), body)
    case_id = created["case_id"]
    while True:
        case = await persist(api, "GET", "intake", f"/v1/cases/{case_id}", api.dispatcher())
        if case["status"] == "closed":
            return str(case_id)
        for task in case["tasks"]:
            token = api.handler(task["department"])
            if task["status"] == "dispatched":
                await persist(api, "POST", "handling", f"/v1/tasks/{task['id']}/accept", token, {})
            elif task["status"] == "accepted":
                await persist(
                    api,
                    "POST",
                    "handling",
                    f"/v1/tasks/{task['id']}/complete",
                    token,
                    {"result": "疏通", "evidence": EVIDENCE},
                )
        if case["status"] == "verifying":
            path = f"/v1/verifications/{case['verification']['id']}/pass"
            await persist(
                api, "POST", "verification", path, api.grid_worker("wenfeng-nanjiao-01"), {"evidence": EVIDENCE}
            )
        await asyncio.sleep(0.05 + random.random() * 0.1)


async def chaos(stack: Stack) -> list[str]:
    """Kill each kind of process once in turn, then a few at random, restarting each."""
    killed: list[str] = []
    for name in [*SERVICES, *random.sample(SERVICES, 3)]:
        await asyncio.sleep(0.5)
        stack.process(name).kill()
        killed.append(name)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(stack.restart, name)
    return killed


async def test_every_case_closes_once_though_each_service_is_killed_mid_flight(api: Api, stack: Stack) -> None:
    drivers: list[asyncio.Task[str]] = []
    stop = asyncio.Event()

    async def feed() -> None:  # new cases keep arriving, so every kill finds some in flight
        while not stop.is_set():
            drivers.append(asyncio.create_task(drive(api, len(drivers))))
            await asyncio.sleep(0.25)

    feeder = asyncio.create_task(feed())
    killed = await chaos(stack)
    stop.set()
    await feeder
    closed = await asyncio.wait_for(asyncio.gather(*drivers), timeout=300)
    assert set(killed) >= set(SERVICES), "every kind of process was killed at least once"
    assert len(closed) >= CASES

    for case_id in closed:
        history = await api.history(case_id)
        counts = Counter(e["type"] for e in history)
        assert {t: counts[t] for t in ONCE} == dict.fromkeys(ONCE, 1), (case_id, counts)
        assert [e["version"] for e in history] == list(range(1, len(history) + 1))

    async def all_listed_closed() -> bool:
        closed_ids: set[str] = set()
        cursor = ""
        while True:
            query = "/v1/cases?status=closed&page_size=100" + (f"&cursor={cursor}" if cursor else "")
            status, page = await api.call("GET", "intake", query, token=api.dispatcher())
            if status != 200:
                return False
            closed_ids |= {i["id"] for i in page["items"]}
            cursor = page.get("next_cursor") or ""
            if not cursor:
                return set(closed) <= closed_ids

    await eventually(all_listed_closed, timeout=30)
