"""Deadlines with a moved clock: warning, overdue, escalation, each exactly once, across restarts.

This module has its own stack, so moving its clock disturbs no other test.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from ops.stack import Stack
from tests.e2e.client import Api
from tests.e2e.watcher import whole_round
from tests.eventually import eventually

pytestmark = pytest.mark.e2e


def seconds_until(moment: str) -> float:
    return (datetime.fromisoformat(moment) - datetime.now(UTC)).total_seconds()


async def test_warning_then_overdue_then_escalation_each_once_across_routing_restarts(api: Api, stack: Stack) -> None:
    case_id = await api.report("pothole")
    [task] = await api.open_tasks(case_id, 1)
    admin_url = stack.env["ADMIN_DATABASE_URL"]

    async def steps() -> Counter[str]:
        return Counter(t for t in await api.types(case_id) if t in ("DeadlineWarned", "TaskOverdue", "CaseEscalated"))

    # Between the warning moment and the deadline: a warning, nothing more.
    api.move_clock(seconds_until(task["accept_warn_at"]) + 60)
    await eventually(lambda: _has(steps, "DeadlineWarned"))
    canary = await api.report("pothole")  # reported now, no deadline of its own comes due in this test
    await api.open_tasks(canary, 1)
    stack.process("routing").kill()
    stack.restart("routing")
    await whole_round(admin_url, canary)  # the restarted watcher has checked every due case
    assert await steps() == Counter({"DeadlineWarned": 1})

    # Past the deadline, with routing down at that moment: overdue and escalation once it is back.
    stack.process("routing").kill()
    api.move_clock(seconds_until(task["accept_by"]) + 60)
    stack.restart("routing")
    await eventually(lambda: _has(steps, "CaseEscalated"))
    stack.process("routing").kill()
    stack.restart("routing")
    await whole_round(admin_url, canary)
    assert await steps() == Counter({"DeadlineWarned": 1, "TaskOverdue": 1, "CaseEscalated": 1})
    types = await api.types(case_id)
    assert types.index("DeadlineWarned") < types.index("TaskOverdue") < types.index("CaseEscalated")
    case = await api.case(case_id)
    assert case["escalations"] == 1 and case["tasks"][0]["overdue"] == ["accept"]


async def _has(steps: object, name: str) -> bool:
    return (await steps())[name] >= 1  # type: ignore[operator]
