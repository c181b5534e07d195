"""A task or verification takes commands the moment the log holds it, whatever the read models know."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from ops.stack import Stack
from shared.store.eventstore import case_stream
from tests.e2e.client import EVIDENCE, Api
from tests.eventually import eventually

pytestmark = pytest.mark.e2e
GRID = "wenfeng-tianehu-01"


@pytest.fixture
async def log(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    """The log itself, read directly: no service's view of it."""
    conn = await asyncpg.connect(stack.env["ADMIN_DATABASE_URL"])
    yield conn
    await conn.close()


async def created(log: asyncpg.Connection, case_id: str, event_type: str, field: str) -> Any:
    """The id `event_type` created in the case, once the log holds it (a dotted `field` path)."""
    return await log.fetchval(
        "SELECT data #>> $3 FROM events WHERE stream_id = $1 AND type = $2 ORDER BY version DESC LIMIT 1",
        case_stream(UUID(case_id)),
        event_type,
        field.split("."),
    )


async def test_a_task_is_accepted_the_moment_the_log_holds_it_with_handling_not_yet_told(
    stack: Stack, api: Api, log: asyncpg.Connection
) -> None:
    case_id = await api.report("bees_in_the_town_hall")  # no rule: it waits for a dispatcher
    await api.wait_status(case_id, "awaiting_dispatch")
    # With the relay stopped, no event reaches a consumer: handling cannot know of the task.
    await asyncio.to_thread(stack.process("relay").stop)
    try:
        status, body = await api.call(
            "POST", "routing", f"/v1/cases/{case_id}/dispatch", token=api.dispatcher(), json={"departments": ["parks"]}
        )
        assert status == 200, body
        task_id = await created(log, case_id, "TaskDispatched", "task.task_id")
        assert task_id is not None  # the dispatch answered after its events committed
        assert await log.fetchval("SELECT count(*) FROM task_view WHERE task_id = $1::uuid", task_id) == 0

        task = {"id": task_id, "department": "parks"}
        accepted = await api.task_command(task, "accept")
        completed = await api.task_command(task, "complete", {"result": "蜂巢已移除", "evidence": EVIDENCE})

        assert accepted[0] == 200 and accepted[1]["status"] == "accepted", accepted
        assert completed[0] == 200 and completed[1]["status"] == "completed", completed
    finally:
        await asyncio.to_thread(stack.restart, "relay")


async def test_a_verification_is_passed_the_moment_the_log_holds_it(api: Api, log: asyncpg.Connection) -> None:
    case_id = await api.report("blocked_drain", grid=GRID)
    for task in await api.open_tasks(case_id):
        await api.work(task)

    verification_id = await eventually(lambda: created(log, case_id, "VerificationRequested", "verification_id"))
    status, body = await api.call(
        "POST",
        "verification",
        f"/v1/verifications/{verification_id}/pass",
        token=api.grid_worker(GRID),
        json={"evidence": EVIDENCE},
    )

    assert status == 200 and body["outcome"] == "passed", body
    assert (await api.case(case_id))["status"] == "closed"
