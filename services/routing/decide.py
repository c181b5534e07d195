"""routing's decisions: dispatch, re-dispatch after a return, reassign, deadlines, reject, merge (pure)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from shared.domain.case import Case, Refused, Status, Task, TaskStatus
from shared.domain.events import (
    CaseDispatched,
    CaseEscalated,
    CaseEvent,
    CaseMerged,
    CaseQueued,
    CaseRejected,
    DeadlineWarned,
    TaskAssignment,
    TaskDispatched,
    TaskOverdue,
    TaskWithdrawn,
)

MAX_RETURNS = 3  # after the third "not ours" the dispatcher decides
DISPATCHABLE = frozenset({Status.REPORTED, Status.REOPENED, Status.AWAITING_DISPATCH})
REJECTABLE = frozenset({Status.REPORTED, Status.AWAITING_DISPATCH, Status.DISPATCHED})


class Dispatch(msgspec.Struct, frozen=True, kw_only=True):
    """Send the case's round to these tasks; none means nobody matched: the queue."""

    case_id: UUID
    tasks: tuple[TaskAssignment, ...]
    priority: str
    policy_version: str
    verifier: str  # who verifies the round's work, by the policy: "grid_worker" | "reporter"
    by: str
    reason_if_none: str = "no routing rule matches"


class Redispatch(msgspec.Struct, frozen=True, kw_only=True):
    """A task came back "not ours": the next department, or the queue."""

    case_id: UUID
    returned_task: UUID
    assignment: TaskAssignment | None


class Reassign(msgspec.Struct, frozen=True, kw_only=True):
    case_id: UUID
    task_id: UUID
    assignment: TaskAssignment


class CheckDeadlines(msgspec.Struct, frozen=True, kw_only=True):
    case_id: UUID
    now: datetime


class RejectCase(msgspec.Struct, frozen=True, kw_only=True):
    case_id: UUID
    reason: str
    by: str


class MergeCase(msgspec.Struct, frozen=True, kw_only=True):
    """Merge the case into `into`, whose case (as the log has it, loaded by the shell) is `target`."""

    case_id: UUID
    into: UUID
    by: str
    target: Case


Command = Dispatch | Redispatch | Reassign | CheckDeadlines | RejectCase | MergeCase


def decide(case: Case, command: Command) -> list[CaseEvent]:
    match command:
        case Dispatch():
            return _dispatch(case, command)
        case Redispatch():
            return _redispatch(case, command)
        case Reassign():
            return _reassign(case, command)
        case CheckDeadlines(now=now):
            return [e for task in case.open_tasks() for e in _deadlines(case, task, now)]
        case RejectCase():
            if case.status is Status.REJECTED:
                return []
            if case.status not in REJECTABLE:
                raise Refused(f"a case that is {case.status} cannot be rejected")
            withdrawn = _withdraw_tasks(case, command.case_id, command.by, "the case was rejected")
            return [*withdrawn, CaseRejected(case_id=command.case_id, reason=command.reason, by=command.by)]
        case MergeCase():
            return _merge(case, command)


def _merge(case: Case, command: MergeCase) -> list[CaseEvent]:
    """Only into an open case, never into itself or into a case merged into it (a cycle)."""
    if case.status is Status.MERGED and case.merged_into == command.into:
        return []  # a retried merge, even if the target has ended since
    if command.into == command.case_id:
        raise Refused("a case cannot be merged into itself")
    if case.status not in REJECTABLE:
        raise Refused(f"a case that is {case.status} cannot be merged")
    target = command.target
    if not target.exists or target.id != command.into:
        raise Refused("no such case to merge into")
    # An open target was never merged anywhere, so requiring one also rules out every cycle,
    # direct or through other cases; the shell serialises merges that touch a common case.
    if target.merged_into == command.case_id:
        raise Refused("the target was merged into this case: merging back would make a cycle")
    if target.status is Status.MERGED:
        raise Refused(f"the target was merged into {target.merged_into}: merge into that case instead")
    if target.is_terminal:
        raise Refused(f"a case that is {target.status} cannot be merged into")
    withdrawn = _withdraw_tasks(case, command.case_id, command.by, f"the case was merged into {command.into}")
    return [*withdrawn, CaseMerged(case_id=command.case_id, into=command.into, by=command.by)]


def _withdraw_tasks(case: Case, case_id: UUID, by: str, reason: str) -> list[CaseEvent]:
    """Each open task ends with its own event, before the case does: its department is told."""
    return [
        TaskWithdrawn(case_id=case_id, task_id=t.id, department=t.department, by=by, reason=reason)
        for t in case.open_tasks()
    ]


def _dispatch(case: Case, command: Dispatch) -> list[CaseEvent]:
    if case.status not in DISPATCHABLE:
        return []  # dispatched already (a redelivery), or ended
    if not command.tasks:
        if case.status is Status.AWAITING_DISPATCH:
            return []
        return [CaseQueued(case_id=command.case_id, reason=command.reason_if_none)]
    round_ = max(case.round, 1)
    dispatched: list[CaseEvent] = [TaskDispatched(case_id=command.case_id, round=round_, task=t) for t in command.tasks]
    if case.status is Status.AWAITING_DISPATCH and case.round > 0:
        return dispatched  # the same round goes on with the departments the dispatcher chose
    departments = tuple(dict.fromkeys(t.department for t in command.tasks))
    started = CaseDispatched(
        case_id=command.case_id,
        round=round_,
        departments=departments,
        priority=command.priority,
        policy_version=command.policy_version,
        by=command.by,
        verifier=command.verifier,
    )
    return [started, *dispatched]


def _redispatch(case: Case, command: Redispatch) -> list[CaseEvent]:
    returned = case.task(command.returned_task)
    if returned is None or returned.status is not TaskStatus.RETURNED or returned.replaced_by is not None:
        return []
    if case.is_terminal or case.status is Status.AWAITING_DISPATCH:
        return []
    if command.assignment is None or case.returns >= MAX_RETURNS:
        reason = "returned too often" if case.returns >= MAX_RETURNS else "no other department to try"
        return [CaseQueued(case_id=command.case_id, reason=reason)]
    return [
        TaskDispatched(case_id=command.case_id, round=returned.round, task=command.assignment, replaces=returned.id)
    ]


def _reassign(case: Case, command: Reassign) -> list[CaseEvent]:
    task = case.task(command.task_id)
    if task is None:
        raise Refused("no such task")
    if task.replaced_by == command.assignment.task_id:
        return []
    if case.is_terminal or not task.is_open:
        raise Refused(f"a {task.status} task cannot be reassigned")
    return [TaskDispatched(case_id=command.case_id, round=task.round, task=command.assignment, replaces=task.id)]


def _deadlines(case: Case, task: Task, now: datetime) -> list[CaseEvent]:
    """Warn, then overdue and escalate, each once per task and kind; late ones still warn first."""
    kinds = [("accept", task.accept_warn_at, task.accept_by)] if task.status is TaskStatus.DISPATCHED else []
    kinds.append(("complete", task.complete_warn_at, task.complete_by))
    events: list[CaseEvent] = []
    common = {"case_id": case.id, "task_id": task.id, "department": task.department}
    for kind, warn_at, due in kinds:
        if now >= warn_at and kind not in task.warned:
            events.append(DeadlineWarned(**common, kind=kind, due_at=due))  # type: ignore[arg-type]
        if now >= due and kind not in task.overdue:
            events.append(TaskOverdue(**common, kind=kind, due_at=due))  # type: ignore[arg-type]
        if now >= due and kind not in task.escalated:
            events.append(CaseEscalated(**common, kind=kind))  # type: ignore[arg-type]
    return events


def next_check(case: Case) -> datetime | None:
    """The earliest moment a deadline of an open task will next need attention."""
    moments = []
    for task in case.open_tasks():
        if task.status is TaskStatus.DISPATCHED:
            if "accept" not in task.warned:
                moments.append(task.accept_warn_at)
            if "accept" not in task.escalated:
                moments.append(task.accept_by)
        if "complete" not in task.warned:
            moments.append(task.complete_warn_at)
        if "complete" not in task.escalated:
            moments.append(task.complete_by)
    return min(moments) if moments else None
