"""Merging a case into another, over HTTP: only into an open case, and the merged case's tasks end visibly."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from ops.stack import Stack
from tests.e2e.client import Api
from tests.eventually import eventually

pytestmark = pytest.mark.e2e


async def merge(api: Api, case_id: str, into: str) -> tuple[int, Any]:
    return await api.call("POST", "routing", f"/v1/cases/{case_id}/merge", token=api.dispatcher(), json={"into": into})


async def stream_version(stack: Stack, case_id: str) -> int:
    """The case's version as the log has it (not a read model that may lag)."""
    conn = await asyncpg.connect(stack.env["ADMIN_DATABASE_URL"])
    try:
        return int(
            await conn.fetchval("SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1", f"case-{case_id}")
        )
    finally:
        await conn.close()


async def ended_cases(api: Api) -> dict[str, str]:
    """One case in each ended state: status -> case id."""
    cancelled, rejected, merged, into, closed = [await api.report("pothole") for _ in range(5)]
    status, body = await api.call(
        "POST", "intake", f"/v1/cases/{cancelled}/cancel", token=api.dispatcher(), json={"reason": "不需要了"}
    )
    assert status == 200, body
    status, body = await api.call(
        "POST", "routing", f"/v1/cases/{rejected}/reject", token=api.dispatcher(), json={"reason": "不属实"}
    )
    assert status == 200, body
    status, body = await merge(api, merged, into)
    assert status == 200, body
    [task] = await api.open_tasks(closed, 1)
    await api.work(task)
    status, body = await api.verify(closed, passed=True)
    assert status == 200, body
    found = {"cancelled": cancelled, "rejected": rejected, "merged": merged, "closed": closed}
    for status_, case_id in found.items():
        await api.wait_status(case_id, status_)
    return found


async def test_a_case_cannot_be_merged_into_an_ended_case_or_itself_and_nothing_is_written(
    api: Api, stack: Stack
) -> None:
    source = await api.report("blocked_drain")
    await api.open_tasks(source, 1)  # dispatched: nothing more happens to it on its own
    targets = await ended_cases(api)
    before = await stream_version(stack, source)
    types = await api.types(source)
    for status_, target in {**targets, "itself": source}.items():
        target_version = await stream_version(stack, target)
        status, body = await merge(api, source, target)
        assert status == 409, (status_, body)
        assert body["type"].endswith("/conflict") and body["status"] == 409 and body["detail"], body
        assert await stream_version(stack, source) == before, status_
        assert await stream_version(stack, target) == target_version, status_
    assert await api.types(source) == types
    case = await api.case(source)
    assert case["status"] == "dispatched" and [t["status"] for t in case["tasks"]] == ["dispatched"]


async def test_merging_back_into_a_case_merged_into_this_one_is_refused(api: Api, stack: Stack) -> None:
    first, second = await api.report("pothole"), await api.report("pothole")
    status, body = await merge(api, first, second)
    assert status == 200, body
    await api.open_tasks(second, 1)  # dispatched: routing's reaction is in, nothing more happens on its own
    version = await stream_version(stack, second)
    status, body = await merge(api, second, first)
    assert status == 409, body
    assert await stream_version(stack, second) == version


async def test_two_cases_merged_into_each_other_at_once_make_no_cycle(api: Api) -> None:
    for _ in range(3):
        one, two = await api.report("pothole"), await api.report("pothole")
        answers = await asyncio.gather(merge(api, one, two), merge(api, two, one))
        assert sorted(status for status, _ in answers) == [200, 409], answers
        statuses = sorted([(await api.case(one))["status"], (await api.case(two))["status"]])
        assert statuses != ["merged", "merged"]


async def test_a_merge_ends_the_merged_cases_open_tasks_with_events_and_leaves_the_target_alone(
    api: Api, stack: Stack
) -> None:
    source = await api.report("gas_alarm")  # three departments at once
    tasks = await api.open_tasks(source, 3)
    target = await api.report("pothole")
    await api.open_tasks(target, 1)
    target_before, target_version = await api.case(target), await stream_version(stack, target)

    status, body = await merge(api, source, target)
    assert status == 200, body
    assert body["status"] == "merged" and body["changed"] is True

    history = (await api.history(source))[-4:]
    assert [e["type"] for e in history] == ["TaskWithdrawn"] * 3 + ["CaseMerged"]
    assert {e["data"]["task_id"] for e in history[:3]} == {t["id"] for t in tasks}
    assert all(e["actor"] == "dispatcher:dispatcher-1" and target in e["data"]["reason"] for e in history[:3])
    assert history[-1]["data"]["into"] == target
    case = await api.case(source)
    assert case["status"] == "merged" and {t["status"] for t in case["tasks"]} == {"withdrawn"}

    assert await stream_version(stack, target) == target_version
    assert await api.case(target) == target_before

    # Each department's task list shows its task ended, and it can no longer act on it.
    for task in tasks:
        token = api.handler(task["department"])

        async def withdrawn(task: dict[str, Any] = task, token: str = token) -> bool:
            _, page = await api.call("GET", "handling", "/v1/tasks?status=withdrawn&page_size=100", token=token)
            return task["id"] in {t["id"] for t in page["items"]}

        await eventually(withdrawn, timeout=30, interval=0.1)
        status, body = await api.task_command(task, "accept")
        assert status == 409, body

    status, body = await merge(api, source, target)  # a retry: nothing new
    assert status == 200 and body["changed"] is False, body
