"""intake's decisions: report, merge a repeated alarm, cancel, rate (pure)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from shared.domain.area import street_of
from shared.domain.case import CANCELLABLE, Case, Refused, Status
from shared.domain.events import (
    AlarmRepeated,
    Attachment,
    CaseCancelled,
    CaseEvent,
    CaseRated,
    CaseReported,
    Device,
    Location,
    SealedReporter,
    Source,
)


class ReportCase(msgspec.Struct, frozen=True, kw_only=True):
    case_id: UUID
    source: Source
    category: str
    description: str
    location: Location
    reported_at: datetime
    created_by: str
    occurred_at: datetime | None = None
    reporter: SealedReporter | None = None
    attachments: tuple[Attachment, ...] = ()
    device: Device | None = None


class RepeatAlarm(msgspec.Struct, frozen=True, kw_only=True):
    case_id: UUID
    occurred_at: datetime


class CancelCase(msgspec.Struct, frozen=True, kw_only=True):
    case_id: UUID
    reason: str
    by: str


class RateCase(msgspec.Struct, frozen=True, kw_only=True):
    case_id: UUID
    score: int
    comment: str = ""


Command = ReportCase | RepeatAlarm | CancelCase | RateCase


def decide(case: Case, command: Command) -> list[CaseEvent]:
    match command:
        case ReportCase():
            if case.exists:
                return []  # the same report again: the case exists
            return [
                CaseReported(
                    case_id=command.case_id,
                    source=command.source,
                    category=command.category,
                    description=command.description,
                    location=_located(command.location),
                    reported_at=command.reported_at,
                    occurred_at=command.occurred_at,
                    reporter=command.reporter,
                    attachments=command.attachments,
                    device=command.device,
                    created_by=command.created_by,
                )
            ]
        case RepeatAlarm():
            if not case.exists or case.is_terminal:
                raise Refused("the alarm's case is no longer open")
            return [
                AlarmRepeated(
                    case_id=command.case_id, repeat_count=case.repeat_count + 1, occurred_at=command.occurred_at
                )
            ]
        case CancelCase():
            if case.status is Status.CANCELLED:
                return []
            if case.status not in CANCELLABLE:
                raise Refused(f"a case that is {case.status} can no longer be cancelled")
            return [CaseCancelled(case_id=command.case_id, reason=command.reason, by=command.by)]
        case RateCase():
            if case.status is not Status.CLOSED:
                raise Refused("only a closed case can be rated")
            if case.rating is not None:
                if case.rating == command.score:
                    return []  # a retried rating
                raise Refused("the case was rated already")
            return [CaseRated(case_id=command.case_id, score=command.score, comment=command.comment)]


def _located(location: Location) -> Location:
    """The report's location with the street its grid belongs to, unless it names one."""
    if location.street or not location.grid:
        return location
    return msgspec.structs.replace(location, street=street_of(location.grid))
