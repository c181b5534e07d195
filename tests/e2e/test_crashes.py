"""Every service SIGKILLed and restarted while cases are in flight: every case still closes, once."""

from __future__ import annotations

import asyncio
import random

import pytest

from ops.stack import SERVICES, Stack
from tests.e2e.client import Api
from tests.e2e.scale import logged_event_count, past
from tests.eventually import eventually

pytestmark = pytest.mark.e2e
CASES = 24


async def chaos(stack: Stack) -> list[str]:
    """Kill each kind of process once in turn, then a few at random, restarting each; each kill once the
    log has grown since the last restart, so it finds cases in flight (a restart itself takes a while)."""
    killed: list[str] = []
    url = stack.env["ADMIN_DATABASE_URL"]
    for name in [*SERVICES, *random.sample(SERVICES, 3)]:
        logged = await logged_event_count(url)
        await eventually(lambda logged=logged: past(logged_event_count(url), logged), timeout=60)
        stack.process(name).kill()
        killed.append(name)
        await asyncio.to_thread(stack.restart, name)
    return killed


async def test_every_case_closes_once_though_each_service_is_killed_mid_flight(api: Api, stack: Stack) -> None:
    killing = asyncio.ensure_future(chaos(stack))
    closed = await api.feed(CASES, killing)  # new cases keep arriving, so every kill finds some in flight
    killed = killing.result()
    assert set(killed) >= set(SERVICES), "every kind of process was killed at least once"
    assert len(closed) >= CASES
    await api.assert_each_step_once(closed)

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
