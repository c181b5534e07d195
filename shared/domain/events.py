"""Every case event: msgspec Structs in one tagged union, and their codec.

Schema evolution rules (msgspec's): never rename an event class (the class name is the
stored tag), new fields get defaults, field types never change. A change that old payloads
cannot meet (a new field without a default, a new meaning) bumps that type's
`schema_version` and adds an upcaster to `UPCASTERS` (upcasters.py), which lifts the old
payloads as they are decoded (versioning.py). Each event is stored, and published as
`caseloop.<Type>.v<schema_version>`, with the schema version of its type.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar
from uuid import UUID

import msgspec

from shared.domain import upcasters
from shared.domain.versioning import Upcaster, VersionedDecoder


class Source(StrEnum):
    CITIZEN = "citizen"
    GRID_WORKER = "grid_worker"
    SENSOR = "sensor"
    HOTLINE = "hotline"


class Location(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    grid: str | None = None
    street: str | None = None
    lat: float | None = None
    lon: float | None = None
    address: str | None = None


class Attachment(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    url: str
    sha256: str
    media_type: str


class Device(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    id: str
    alarm: str


class SealedReporter(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A reporter's name and phone, encrypted with that reporter's own data key.

    Deleting the key (table `reporter_keys`) erases them without touching the log.
    """

    ref: UUID
    alg: str
    nonce: str
    ciphertext: str


class TaskAssignment(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    task_id: UUID
    department: str
    lead: bool
    accept_by: datetime
    complete_by: datetime
    accept_warn_at: datetime
    complete_warn_at: datetime


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=True, gc=False):
    # The version of this type's stored shape, stored beside `encode(event)`; bumped with an upcaster.
    schema_version: ClassVar[int] = 1
    case_id: UUID


# --- intake ---------------------------------------------------------------------------


class CaseReported(Event, frozen=True):
    source: Source
    category: str
    description: str
    location: Location
    reported_at: datetime
    occurred_at: datetime | None = None
    reporter: SealedReporter | None = None
    attachments: tuple[Attachment, ...] = ()
    device: Device | None = None
    created_by: str = ""


class AlarmRepeated(Event, frozen=True):
    """A sensor repeated an alarm that already has an open case: merged, not reopened."""

    repeat_count: int
    occurred_at: datetime


class CaseCancelled(Event, frozen=True):
    reason: str
    by: str


class CaseRated(Event, frozen=True):
    score: int
    comment: str = ""


class CaseRejected(Event, frozen=True):
    reason: str
    by: str


class CaseMerged(Event, frozen=True):
    into: UUID
    by: str


# --- routing --------------------------------------------------------------------------


class CaseQueued(Event, frozen=True):
    """No rule matched (or returns ran out): the case waits for a dispatcher."""

    reason: str


VERIFIERS = ("grid_worker", "reporter")  # whom a dispatch may name to verify its work


class CaseDispatched(Event, frozen=True):
    """A round begins: the departments named here each get a TaskDispatched beside it.

    v2 records who verifies the round's work, by the policy that made the dispatch; a v1
    payload gets it from the rules of the policy version it records (upcasters.py).
    """

    schema_version: ClassVar[int] = 2
    round: int
    departments: tuple[str, ...]
    priority: str
    policy_version: str
    verifier: str  # who verifies the round's work: one of VERIFIERS
    by: str


class TaskDispatched(Event, frozen=True):
    round: int
    task: TaskAssignment
    replaces: UUID | None = None


class DeadlineWarned(Event, frozen=True):
    task_id: UUID
    department: str
    kind: str  # "accept" | "complete"
    due_at: datetime


class TaskOverdue(Event, frozen=True):
    task_id: UUID
    department: str
    kind: str
    due_at: datetime


class CaseEscalated(Event, frozen=True):
    task_id: UUID
    department: str
    kind: str
    to: str = "supervisor"


# --- handling -------------------------------------------------------------------------


class TaskAccepted(Event, frozen=True):
    task_id: UUID
    department: str
    by: str


class TaskNoted(Event, frozen=True):
    task_id: UUID
    department: str
    by: str
    note: str


class TaskCompleted(Event, frozen=True):
    task_id: UUID
    department: str
    by: str
    result: str
    evidence: tuple[Attachment, ...]


class TaskReturned(Event, frozen=True):
    task_id: UUID
    department: str
    by: str
    reason: str


class TaskWithdrawn(Event, frozen=True):
    """An open task ends because its case ended before it did (merged, rejected): the department stops.

    Its own event, on the department's subject, so a department's system learns that the work
    it holds is off, and the case's history shows each task's end. Schema version 1.
    """

    task_id: UUID
    department: str
    by: str
    reason: str


class CaseHandled(Event, frozen=True):
    round: int


# --- verification ---------------------------------------------------------------------


class VerificationRequested(Event, frozen=True):
    verification_id: UUID
    round: int
    kind: str  # "grid_worker" | "reporter"
    grid: str | None
    respond_by: datetime | None = None


class VerificationPassed(Event, frozen=True):
    verification_id: UUID
    by: str
    evidence: tuple[Attachment, ...] = ()
    by_default: bool = False
    note: str = ""


class VerificationFailed(Event, frozen=True):
    verification_id: UUID
    by: str
    reason: str
    evidence: tuple[Attachment, ...] = ()


class CaseClosed(Event, frozen=True):
    by_default: bool = False


class CaseReopened(Event, frozen=True):
    round: int
    departments: tuple[str, ...]


class ReporterErased(Event, frozen=True):
    """The reporter `ref`'s data key was deleted: their sealed name and phone are gone for good.

    Appended to each case that reporter reported, so the case's own history says so and every
    consumer (read models, departments' systems) drops whatever it derived from them.
    """

    ref: UUID


CaseEvent = (
    CaseReported
    | AlarmRepeated
    | CaseCancelled
    | CaseRated
    | CaseRejected
    | CaseMerged
    | CaseQueued
    | CaseDispatched
    | TaskDispatched
    | DeadlineWarned
    | TaskOverdue
    | CaseEscalated
    | TaskAccepted
    | TaskNoted
    | TaskCompleted
    | TaskReturned
    | TaskWithdrawn
    | CaseHandled
    | VerificationRequested
    | VerificationPassed
    | VerificationFailed
    | CaseClosed
    | CaseReopened
    | ReporterErased
)

EVENT_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in CaseEvent.__args__}  # type: ignore[attr-defined]

# (type, schema version n) -> the function lifting a stored payload from n to n + 1.
UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("CaseDispatched", 1): upcasters.case_dispatched_v2,
}

_encoder = msgspec.json.Encoder()
_decoder: VersionedDecoder[CaseEvent] = VersionedDecoder(CaseEvent, UPCASTERS)
SCHEMA_VERSIONS: dict[str, int] = _decoder.versions  # type -> the schema version written today


def encode(event: Event) -> bytes:
    """The stored bytes of an event: compact JSON with its `type` tag."""
    return _encoder.encode(event)


def decode(data: bytes | str, schema_version: int | None = None) -> CaseEvent:
    """Decode bytes stored under `schema_version` (None: today's), upcasting older payloads first.

    Raises versioning.SchemaError for a type or version this code does not know, and
    msgspec's errors for bytes that are not a valid event.
    """
    return _decoder.decode(data, schema_version)


def type_name(event: Event) -> str:
    return type(event).__name__


def department_of(event: Event) -> str | None:
    """The one department a task-level event concerns (for subject filtering)."""
    match event:
        case TaskDispatched(task=task):
            return task.department
        case (
            TaskAccepted(department=d)
            | TaskNoted(department=d)
            | TaskCompleted(department=d)
            | TaskReturned(department=d)
            | TaskWithdrawn(department=d)
            | DeadlineWarned(department=d)
            | TaskOverdue(department=d)
            | CaseEscalated(department=d)
        ):
            return d
        case _:
            return None
