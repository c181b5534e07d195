"""The case as folded from its events: Case, Task, Status, evolve() and replay() (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from functools import reduce
from typing import assert_never
from uuid import UUID

import msgspec
from msgspec.structs import replace

from shared.domain.events import (
    AlarmRepeated,
    Attachment,
    CaseCancelled,
    CaseClosed,
    CaseDispatched,
    CaseEscalated,
    CaseEvent,
    CaseHandled,
    CaseMerged,
    CaseQueued,
    CaseRated,
    CaseRejected,
    CaseReopened,
    CaseReported,
    DeadlineWarned,
    Device,
    Location,
    ReporterErased,
    SealedReporter,
    Source,
    TaskAccepted,
    TaskAssignment,
    TaskCompleted,
    TaskDispatched,
    TaskNoted,
    TaskOverdue,
    TaskReturned,
    TaskWithdrawn,
    VerificationFailed,
    VerificationPassed,
    VerificationRequested,
)


class Status(StrEnum):
    NONE = "none"
    REPORTED = "reported"
    AWAITING_DISPATCH = "awaiting_dispatch"
    DISPATCHED = "dispatched"
    IN_PROGRESS = "in_progress"
    HANDLED = "handled"
    VERIFYING = "verifying"
    REOPENED = "reopened"
    CLOSED = "closed"
    REJECTED = "rejected"
    MERGED = "merged"
    CANCELLED = "cancelled"


TERMINAL = frozenset({Status.CLOSED, Status.REJECTED, Status.MERGED, Status.CANCELLED})
# Before handling finished the reporter may still withdraw.
CANCELLABLE = frozenset(
    {Status.REPORTED, Status.AWAITING_DISPATCH, Status.DISPATCHED, Status.IN_PROGRESS, Status.REOPENED}
)


class TaskStatus(StrEnum):
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    RETURNED = "returned"
    REPLACED = "replaced"  # reassigned by a dispatcher, or returned and taken over
    WITHDRAWN = "withdrawn"  # its case ended (merged, rejected, cancelled) before it did


OPEN_TASK = frozenset({TaskStatus.DISPATCHED, TaskStatus.ACCEPTED})


class Task(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    id: UUID
    department: str
    round: int
    lead: bool
    status: TaskStatus
    accept_by: datetime
    complete_by: datetime
    accept_warn_at: datetime
    complete_warn_at: datetime
    warned: frozenset[str] = frozenset()  # deadline kinds warned ("accept", "complete")
    overdue: frozenset[str] = frozenset()
    escalated: frozenset[str] = frozenset()
    notes: int = 0
    result: str = ""
    evidence: tuple[Attachment, ...] = ()
    return_reason: str = ""
    replaced_by: UUID | None = None  # the task that took over after a return or a reassignment

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_TASK


class Verification(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    id: UUID
    round: int
    kind: str
    grid: str | None
    respond_by: datetime | None
    outcome: str = "pending"  # "pending" | "passed" | "failed"
    by: str = ""
    reason: str = ""


class Case(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    id: UUID | None = None
    status: Status = Status.NONE
    source: Source = Source.CITIZEN
    category: str = ""
    description: str = ""
    location: Location = Location()
    reported_at: datetime | None = None
    reporter: SealedReporter | None = None
    reporter_erased: bool = False  # ReporterErased: the sealed reporter is dropped from the fold
    attachments: tuple[Attachment, ...] = ()
    device: Device | None = None
    created_by: str = ""
    repeat_count: int = 0
    round: int = 0
    priority: str = ""
    policy_version: str = ""
    verifier: str = ""  # who verifies the work, named by the latest dispatch: "grid_worker" | "reporter"
    departments: tuple[str, ...] = ()  # the departments of the current round
    tasks: tuple[Task, ...] = ()  # every task ever dispatched, in dispatch order
    returns: int = 0  # tasks returned "not ours", all rounds
    queued_reason: str = ""
    verification: Verification | None = None
    closed_by_default: bool = False
    rating: int | None = None
    end_reason: str = ""
    merged_into: UUID | None = None
    escalations: int = 0

    @property
    def exists(self) -> bool:
        return self.status is not Status.NONE

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def task(self, task_id: UUID) -> Task | None:
        return next((t for t in self.tasks if t.id == task_id), None)

    def round_tasks(self) -> tuple[Task, ...]:
        """The live tasks of the current round: replaced and returned ones left out."""
        return tuple(
            t
            for t in self.tasks
            if t.round == self.round
            and t.status not in (TaskStatus.REPLACED, TaskStatus.RETURNED, TaskStatus.WITHDRAWN)
        )

    def open_tasks(self) -> tuple[Task, ...]:
        return tuple(t for t in self.tasks if t.is_open)

    def unresolved_returns(self) -> tuple[Task, ...]:
        """Tasks returned "not ours" that nobody has taken over yet: the round is not done."""
        return tuple(
            t for t in self.tasks if t.status is TaskStatus.RETURNED and t.replaced_by is None and not self.is_terminal
        )

    def round_complete(self) -> bool:
        """Every department of the current round has completed and no return awaits re-dispatch ("6+X")."""
        live = self.round_tasks()
        return bool(live) and all(t.status is TaskStatus.COMPLETED for t in live) and not self.unresolved_returns()


NO_CASE = Case()


def _with_task(case: Case, task_id: UUID, **changes: object) -> Case:
    tasks = tuple(replace(t, **changes) if t.id == task_id else t for t in case.tasks)
    return replace(case, tasks=tasks)


def _from_assignment(assignment: TaskAssignment, round_: int) -> Task:
    return Task(
        id=assignment.task_id,
        department=assignment.department,
        round=round_,
        lead=assignment.lead,
        status=TaskStatus.DISPATCHED,
        accept_by=assignment.accept_by,
        complete_by=assignment.complete_by,
        accept_warn_at=assignment.accept_warn_at,
        complete_warn_at=assignment.complete_warn_at,
    )


def _after_task_change(case: Case) -> Status:
    if case.status not in (Status.DISPATCHED, Status.IN_PROGRESS):
        return case.status
    accepted = any(t.status in (TaskStatus.ACCEPTED, TaskStatus.COMPLETED) for t in case.round_tasks())
    return Status.IN_PROGRESS if accepted else Status.DISPATCHED


def evolve(case: Case, event: CaseEvent) -> Case:
    """Fold one event into the case. Total: every event type is handled."""
    match event:
        case CaseReported():
            return Case(
                id=event.case_id,
                status=Status.REPORTED,
                source=event.source,
                category=event.category,
                description=event.description,
                location=event.location,
                reported_at=event.reported_at,
                reporter=event.reporter,
                attachments=event.attachments,
                device=event.device,
                created_by=event.created_by,
                repeat_count=1,
            )
        case AlarmRepeated(repeat_count=count):
            return replace(case, repeat_count=count)
        case CaseCancelled(reason=reason):
            return replace(case, status=Status.CANCELLED, end_reason=reason, tasks=_withdraw(case.tasks))
        case CaseRejected(reason=reason):
            return replace(case, status=Status.REJECTED, end_reason=reason, tasks=_withdraw(case.tasks))
        case CaseMerged(into=into):
            return replace(case, status=Status.MERGED, merged_into=into, tasks=_withdraw(case.tasks))
        case CaseRated(score=score):
            return replace(case, rating=score)
        case ReporterErased():
            return replace(case, reporter=None, reporter_erased=True)
        case CaseQueued(reason=reason):
            return replace(case, status=Status.AWAITING_DISPATCH, queued_reason=reason)
        case CaseDispatched():
            return replace(
                case,
                status=Status.DISPATCHED,
                round=event.round,
                departments=event.departments,
                priority=event.priority,
                policy_version=event.policy_version,
                verifier=event.verifier,
                queued_reason="",
            )
        case TaskDispatched(task=assignment, replaces=replaced):
            tasks = _take_over(case, replaced, assignment.task_id)
            tasks = (*tasks, _from_assignment(assignment, event.round))
            departments = case.departments
            if assignment.department not in departments:
                departments = (*departments, assignment.department)
            status = Status.DISPATCHED if case.status is Status.AWAITING_DISPATCH else case.status
            dispatched = replace(case, tasks=tasks, departments=departments, status=status, queued_reason="")
            # A reassigned accepted task takes "in progress" with it when it was the only one started.
            return replace(dispatched, status=_after_task_change(dispatched))
        case TaskAccepted(task_id=task_id):
            accepted = _with_task(case, task_id, status=TaskStatus.ACCEPTED)
            return replace(accepted, status=_after_task_change(accepted))
        case TaskNoted(task_id=task_id):
            task = case.task(task_id)
            return _with_task(case, task_id, notes=(task.notes + 1) if task else 1)
        case TaskCompleted(task_id=task_id, result=result, evidence=evidence):
            done = _with_task(case, task_id, status=TaskStatus.COMPLETED, result=result, evidence=evidence)
            return replace(done, status=_after_task_change(done))
        case TaskReturned(task_id=task_id, reason=reason):
            returned = _with_task(case, task_id, status=TaskStatus.RETURNED, return_reason=reason)
            return replace(returned, returns=case.returns + 1, status=_after_task_change(returned))
        case TaskWithdrawn(task_id=task_id):
            task = case.task(task_id)
            if task is None or not task.is_open:
                return case
            withdrawn = _with_task(case, task_id, status=TaskStatus.WITHDRAWN)
            return replace(withdrawn, status=_after_task_change(withdrawn))
        case DeadlineWarned(task_id=task_id, kind=kind):
            task = case.task(task_id)
            warned = (task.warned if task else frozenset()) | {kind}
            return _with_task(case, task_id, warned=warned)
        case TaskOverdue(task_id=task_id, kind=kind):
            task = case.task(task_id)
            overdue = (task.overdue if task else frozenset()) | {kind}
            return _with_task(case, task_id, overdue=overdue)
        case CaseEscalated(task_id=task_id, kind=kind):
            task = case.task(task_id)
            escalated = (task.escalated if task else frozenset()) | {kind}
            return replace(_with_task(case, task_id, escalated=escalated), escalations=case.escalations + 1)
        case CaseHandled():
            return replace(case, status=Status.HANDLED)
        case VerificationRequested():
            verification = Verification(
                id=event.verification_id,
                round=event.round,
                kind=event.kind,
                grid=event.grid,
                respond_by=event.respond_by,
            )
            return replace(case, status=Status.VERIFYING, verification=verification)
        case VerificationPassed(by=by):
            if case.verification is None:
                return case
            return replace(case, verification=replace(case.verification, outcome="passed", by=by))
        case VerificationFailed(by=by, reason=reason):
            if case.verification is None:
                return case
            failed = replace(case.verification, outcome="failed", by=by, reason=reason)
            return replace(case, verification=failed)
        case CaseClosed(by_default=by_default):
            return replace(case, status=Status.CLOSED, closed_by_default=by_default)
        case CaseReopened(round=round_, departments=departments):
            return replace(case, status=Status.REOPENED, round=round_, departments=departments)
        case _:
            assert_never(event)


def _take_over(case: Case, replaced: UUID | None, new_id: UUID) -> tuple[Task, ...]:
    """A new task takes over from the one it replaces; a hand dispatch from the queue settles open returns."""
    if replaced is not None:
        return tuple(
            replace(t, status=TaskStatus.REPLACED if t.is_open else t.status, replaced_by=new_id)
            if t.id == replaced
            else t
            for t in case.tasks
        )
    if case.status is Status.AWAITING_DISPATCH:
        return tuple(
            replace(t, replaced_by=new_id) if t.status is TaskStatus.RETURNED and t.replaced_by is None else t
            for t in case.tasks
        )
    return case.tasks


def _withdraw(tasks: tuple[Task, ...]) -> tuple[Task, ...]:
    # Merges and rejections end their open tasks with TaskWithdrawn first; this catches what a
    # cancellation, or a log written before TaskWithdrawn existed, leaves open.
    return tuple(replace(t, status=TaskStatus.WITHDRAWN) if t.is_open else t for t in tasks)


def replay(events: Iterable[CaseEvent], case: Case = NO_CASE) -> Case:
    """The case after every event, in order."""
    return reduce(evolve, events, case)


class Refused(Exception):
    """A command the case's state does not allow (HTTP 409). Retries of what already
    happened are not refused: decide() returns no events for them."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
