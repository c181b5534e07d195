"""intake's HTTP contract: request bodies (bounded, unknown fields refused) and responses."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import Meta

from shared.domain.case import Case, Task, Verification
from shared.domain.events import Attachment, Device, Location, Source
from shared.personal.pii import Reporter
from shared.web.http import INT4_MAX

Code = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
Text = Annotated[str, Meta(max_length=2000)]
Short = Annotated[str, Meta(min_length=1, max_length=200)]


class LocationIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    grid: Code | None = None
    lat: Annotated[float, Meta(ge=-90, le=90)] | None = None
    lon: Annotated[float, Meta(ge=-180, le=180)] | None = None
    address: Annotated[str, Meta(max_length=200)] | None = None


class ReporterIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=50)] | None = None
    phone: Annotated[str, Meta(pattern=r"^\+?[0-9][0-9 -]{4,19}$")] | None = None


class AttachmentIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: Annotated[str, Meta(max_length=1000, pattern=r"^https?://")]
    sha256: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]
    media_type: Annotated[str, Meta(max_length=100, pattern=r"^[\w.+-]+/[\w.+-]+$")]


class DeviceIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: Annotated[str, Meta(min_length=1, max_length=64)]
    alarm: Annotated[str, Meta(min_length=1, max_length=64)]


# Checked in the view as well; said here so that clients (and schemathesis) know it.
GRID_OR_COORDINATES = {
    "anyOf": [
        {"required": ["grid"], "properties": {"grid": {"type": "string"}}},
        {"required": ["lat", "lon"], "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}}},
    ]
}


class ReportIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    source: Source
    category: Code
    location: Annotated[LocationIn, Meta(extra_json_schema=GRID_OR_COORDINATES)]
    description: Text = ""
    reporter: ReporterIn | None = None
    attachments: Annotated[tuple[AttachmentIn, ...], Meta(max_length=10)] = ()
    device: DeviceIn | None = None
    occurred_at: Annotated[datetime, Meta(tz=True)] | None = None


class CancelIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Short


class RatingIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    score: Annotated[int, Meta(ge=1, le=5)]
    comment: Annotated[str, Meta(max_length=500)] = ""


class CasesQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    status: Annotated[str, Meta(max_length=32)] | None = None
    grid: Code | None = None
    street: Code | None = None
    category: Code | None = None
    # Days of the command centre's calendar (Asia/Shanghai), both included.
    reported_from: date | None = None
    reported_to: date | None = None
    page_size: Annotated[int, Meta(ge=1, le=100)] = 20
    cursor: Annotated[str, Meta(max_length=200)] | None = None


class CaseQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    version: Annotated[int, Meta(ge=1, le=INT4_MAX)] | None = None  # events.version is an integer
    as_of: Annotated[datetime, Meta(tz=True)] | None = None


class ReportAccepted(msgspec.Struct, frozen=True, kw_only=True):
    case_id: UUID
    status: str
    version: int
    merged: bool = False
    repeat_count: int = 1


class CaseOut(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    version: int
    status: str
    source: str
    category: str
    description: str
    location: Location
    reporter: Reporter | None
    reporter_erased: bool
    attachments: tuple[Attachment, ...]
    device: Device | None
    repeat_count: int
    round: int
    priority: str
    policy_version: str
    departments: tuple[str, ...]
    tasks: tuple[Task, ...]
    verification: Verification | None
    queued_reason: str
    end_reason: str
    closed_by_default: bool
    rating: int | None
    escalations: int
    created_by: str
    reported_at: datetime | None


class CaseSummary(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    version: int
    status: str
    source: str
    category: str
    grid: str | None
    street: str | None
    departments: list[str]
    round: int
    repeat_count: int
    reported_at: datetime
    updated_at: datetime


class CasePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[CaseSummary]
    next_cursor: str | None = None


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    version: int
    type: str
    event_id: UUID
    happened_at: datetime | None = None  # the event data's own time (a report's occurrence), if it has one
    recorded_at: datetime
    actor: str
    correlation_id: UUID
    causation_id: UUID | None
    data: dict[str, object]
    hash: str


class History(msgspec.Struct, frozen=True, kw_only=True):
    case_id: UUID
    version: int
    events: list[HistoryEntry]


def case_out(case: Case, version: int, reporter: Reporter | None, erased: bool) -> CaseOut:
    assert case.id is not None
    return CaseOut(
        id=case.id,
        version=version,
        status=str(case.status),
        source=str(case.source),
        category=case.category,
        description=case.description,
        location=case.location,
        reporter=reporter,
        reporter_erased=erased,
        attachments=case.attachments,
        device=case.device,
        repeat_count=case.repeat_count,
        round=case.round,
        priority=case.priority,
        policy_version=case.policy_version,
        departments=case.departments,
        tasks=case.tasks,
        verification=case.verification,
        queued_reason=case.queued_reason,
        end_reason=case.end_reason,
        closed_by_default=case.closed_by_default,
        rating=case.rating,
        escalations=case.escalations,
        created_by=case.created_by,
        reported_at=case.reported_at,
    )


class CommandDone(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to cancel and rating: the case's version after it, and whether it changed."""

    case_id: UUID
    version: int
    changed: bool
