"""handling's HTTP contract: request bodies (bounded, unknown fields refused) and responses."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import Meta

from shared.domain.case import Case, Task, TaskStatus
from shared.domain.events import Attachment, Location

Code = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
Text = Annotated[str, Meta(min_length=1, max_length=2000)]
Short = Annotated[str, Meta(min_length=1, max_length=200)]


class AttachmentIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: Annotated[str, Meta(max_length=1000, pattern=r"^https?://")]
    sha256: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]
    media_type: Annotated[str, Meta(max_length=100, pattern=r"^[\w.+-]+/[\w.+-]+$")]


class AcceptIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class NoteIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    note: Text


class CompleteIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    result: Text
    evidence: Annotated[tuple[AttachmentIn, ...], Meta(min_length=1, max_length=10)]

    def attachments(self) -> tuple[Attachment, ...]:
        return tuple(Attachment(url=a.url, sha256=a.sha256, media_type=a.media_type) for a in self.evidence)


class ReturnIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Short


class TasksQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    department: Code | None = None
    status: TaskStatus | None = None
    page_size: Annotated[int, Meta(ge=1, le=100)] = 20
    cursor: Annotated[str, Meta(max_length=200)] | None = None


class CommandResult(msgspec.Struct, frozen=True, kw_only=True):
    task_id: UUID
    case_id: UUID
    version: int
    status: str  # the task's status after the command
    changed: bool


class TaskSummary(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    case_id: UUID
    department: str
    round: int
    lead: bool
    status: str
    accept_by: datetime
    complete_by: datetime
    category: str
    grid: str | None
    case_version: int
    updated_at: datetime


class TaskPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[TaskSummary]
    next_cursor: str | None = None


class CaseBrief(msgspec.Struct, frozen=True, kw_only=True):
    """What a department needs to do the work: no reporter, no other departments' results."""

    id: UUID
    status: str
    category: str
    description: str
    location: Location
    priority: str
    round: int
    departments: tuple[str, ...]
    reported_at: datetime | None


class TaskOut(msgspec.Struct, frozen=True, kw_only=True):
    task: Task
    case: CaseBrief
    version: int


def task_out(case: Case, task: Task, version: int) -> TaskOut:
    assert case.id is not None
    brief = CaseBrief(
        id=case.id,
        status=str(case.status),
        category=case.category,
        description=case.description,
        location=case.location,
        priority=case.priority,
        round=case.round,
        departments=case.departments,
        reported_at=case.reported_at,
    )
    return TaskOut(task=task, case=brief, version=version)
