"""handling's decisions: a department accepts, notes, completes or returns its task (pure)."""

from __future__ import annotations

from typing import assert_never
from uuid import UUID

import msgspec

from shared.domain.case import Case, Refused, Status, Task, TaskStatus, evolve
from shared.domain.events import (
    Attachment,
    CaseEvent,
    CaseHandled,
    TaskAccepted,
    TaskCompleted,
    TaskNoted,
    TaskReturned,
)

# A case can be handled only while its round is being worked: not once handled, queued or ended.
WORKING = frozenset({Status.DISPATCHED, Status.IN_PROGRESS})


class AcceptTask(msgspec.Struct, frozen=True, kw_only=True):
    case_id: UUID
    task_id: UUID
    by: str


class NoteTask(msgspec.Struct, frozen=True, kw_only=True):
    case_id: UUID
    task_id: UUID
    by: str
    note: str


class CompleteTask(msgspec.Struct, frozen=True, kw_only=True):
    case_id: UUID
    task_id: UUID
    by: str
    result: str
    evidence: tuple[Attachment, ...]


class ReturnTask(msgspec.Struct, frozen=True, kw_only=True):
    case_id: UUID
    task_id: UUID
    by: str
    reason: str


Command = AcceptTask | NoteTask | CompleteTask | ReturnTask


def decide(case: Case, command: Command) -> list[CaseEvent]:
    if case.is_terminal:
        raise Refused("the case has ended")
    task = case.task(command.task_id)
    if task is None:
        raise Refused("no such task")
    match command:
        case AcceptTask():
            return _accept(task, command)
        case NoteTask():
            if not task.is_open:
                raise Refused(f"a task that is {task.status} takes no more notes")
            return [
                TaskNoted(
                    case_id=command.case_id,
                    task_id=task.id,
                    department=task.department,
                    by=command.by,
                    note=command.note,
                )
            ]
        case CompleteTask():
            return _complete(case, task, command)
        case ReturnTask():
            if task.status is TaskStatus.RETURNED:
                return []  # a retried return
            if not task.is_open:
                raise Refused(f"a task that is {task.status} can no longer be returned")
            return [
                TaskReturned(
                    case_id=command.case_id,
                    task_id=task.id,
                    department=task.department,
                    by=command.by,
                    reason=command.reason,
                )
            ]
        case _:
            assert_never(command)


def _accept(task: Task, command: AcceptTask) -> list[CaseEvent]:
    if task.status is TaskStatus.ACCEPTED:
        return []  # a retried accept
    if task.status is not TaskStatus.DISPATCHED:
        raise Refused(f"a task that is {task.status} can no longer be accepted")
    return [TaskAccepted(case_id=command.case_id, task_id=task.id, department=task.department, by=command.by)]


def _complete(case: Case, task: Task, command: CompleteTask) -> list[CaseEvent]:
    if task.status is TaskStatus.COMPLETED:
        return []  # a retried completion
    if task.status is TaskStatus.DISPATCHED:
        raise Refused("accept the task first")
    if task.status is not TaskStatus.ACCEPTED:
        raise Refused(f"a task that is {task.status} can no longer be completed")
    if not command.evidence:
        raise Refused("a completion needs at least one piece of evidence")
    completed = TaskCompleted(
        case_id=command.case_id,
        task_id=task.id,
        department=task.department,
        by=command.by,
        result=command.result,
        evidence=command.evidence,
    )
    # "6+X": the case is handled only when every live task of the round is complete.
    # A returned task nobody has taken over yet keeps the round open (Case.round_complete).
    if case.status in WORKING and evolve(case, completed).round_complete():
        return [completed, CaseHandled(case_id=command.case_id, round=case.round)]
    return [completed]
