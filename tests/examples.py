"""One builder per event, fields overridable (Eventide's "controls"), with fixed ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from msgspec.structs import replace

from shared.domain import events as ev
from shared.store.eventstore import Metadata

CASE_ID = UUID("00000000-0000-4000-8000-0000000000c1")
TASK_ID = UUID("00000000-0000-4000-8000-0000000000a1")
TASK_ID_2 = UUID("00000000-0000-4000-8000-0000000000a2")
VERIFICATION_ID = UUID("00000000-0000-4000-8000-0000000000f1")
CORRELATION_ID = UUID("00000000-0000-4000-8000-0000000000e1")
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
METADATA = Metadata(correlation_id=CORRELATION_ID, actor="test")


def case_reported(**overrides: Any) -> ev.CaseReported:
    event = ev.CaseReported(
        case_id=CASE_ID,
        source=ev.Source.CITIZEN,
        category="blocked_drain",
        description="雨水篦子堵塞，路面积水",
        location=ev.Location(grid="wenfeng-tianehu-01", street="wenfeng", address="文峰街道天鹅湖社区"),
        reported_at=NOW,
        created_by="backend:wechat",
    )
    return replace(event, **overrides)


def assignment(task_id: UUID = TASK_ID, department: str = "sanitation", **overrides: Any) -> ev.TaskAssignment:
    a = ev.TaskAssignment(
        task_id=task_id,
        department=department,
        lead=True,
        accept_by=NOW + timedelta(hours=2),
        complete_by=NOW + timedelta(days=1),
        accept_warn_at=NOW + timedelta(hours=1, minutes=36),
        complete_warn_at=NOW + timedelta(hours=19),
    )
    return replace(a, **overrides)


def case_dispatched(*departments: str, round: int = 1, **overrides: Any) -> ev.CaseDispatched:
    event = ev.CaseDispatched(
        case_id=CASE_ID,
        round=round,
        departments=departments or ("sanitation",),
        priority="normal",
        policy_version="test-1",
        verifier="grid_worker",
        by="rules",
    )
    return replace(event, **overrides)


def task_dispatched(task_id: UUID = TASK_ID, department: str = "sanitation", round: int = 1) -> ev.TaskDispatched:
    return ev.TaskDispatched(case_id=CASE_ID, round=round, task=assignment(task_id, department))


def task_accepted(task_id: UUID = TASK_ID, department: str = "sanitation") -> ev.TaskAccepted:
    return ev.TaskAccepted(case_id=CASE_ID, task_id=task_id, department=department, by="handler-1")


def task_completed(task_id: UUID = TASK_ID, department: str = "sanitation") -> ev.TaskCompleted:
    return ev.TaskCompleted(
        case_id=CASE_ID,
        task_id=task_id,
        department=department,
        by="handler-1",
        result="疏通完毕",
        evidence=(ev.Attachment(url="https://files.example/after.jpg", sha256="ab" * 32, media_type="image/jpeg"),),
    )


def task_returned(task_id: UUID = TASK_ID, department: str = "sanitation") -> ev.TaskReturned:
    return ev.TaskReturned(
        case_id=CASE_ID, task_id=task_id, department=department, by="handler-1", reason="不属于本部门"
    )


def case_handled(round: int = 1) -> ev.CaseHandled:
    return ev.CaseHandled(case_id=CASE_ID, round=round)


def verification_requested(round: int = 1, kind: str = "grid_worker") -> ev.VerificationRequested:
    return ev.VerificationRequested(
        case_id=CASE_ID, verification_id=VERIFICATION_ID, round=round, kind=kind, grid="wenfeng-tianehu-01"
    )


def until_verifying() -> list[ev.CaseEvent]:
    return [
        case_reported(),
        case_dispatched(),
        task_dispatched(),
        task_accepted(),
        task_completed(),
        case_handled(),
        verification_requested(),
    ]


def verification_passed() -> ev.VerificationPassed:
    return ev.VerificationPassed(case_id=CASE_ID, verification_id=VERIFICATION_ID, by="grid_worker:gw-1")


def until_closed() -> list[ev.CaseEvent]:
    return [*until_verifying(), verification_passed(), ev.CaseClosed(case_id=CASE_ID)]
