"""verification's decisions: request a verification, record its outcome, close by default (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID, uuid5

import msgspec

from shared.domain.case import Case, Refused, Status, TaskStatus
from shared.domain.events import (
    VERIFIERS,
    Attachment,
    CaseClosed,
    CaseEvent,
    CaseReopened,
    VerificationFailed,
    VerificationPassed,
    VerificationRequested,
)

BY_DEFAULT = "system:default"


def verification_id_for(case_id: UUID, round_: int) -> UUID:
    """One verification per case and round: a redelivered CaseHandled cannot make a second."""
    return uuid5(case_id, f"verification:{round_}")


class RequestVerification(msgspec.Struct, frozen=True, kw_only=True):
    """Ask whoever the case's dispatch named (its `verifier`) to verify the handled work."""

    case_id: UUID
    now: datetime
    respond_within: timedelta
    verification_id: UUID | None = None  # None: derived from the case and its round


class RecordVerification(msgspec.Struct, frozen=True, kw_only=True):
    case_id: UUID
    verification_id: UUID
    by: str
    passed: bool
    reason: str = ""  # why it failed, or the verifier's note on a pass
    evidence: tuple[Attachment, ...] = ()


class CloseByDefault(msgspec.Struct, frozen=True, kw_only=True):
    case_id: UUID
    now: datetime


Command = RequestVerification | RecordVerification | CloseByDefault


def decide(case: Case, command: Command) -> list[CaseEvent]:
    match command:
        case RequestVerification():
            return _request(case, command)
        case RecordVerification():
            return _record(case, command)
        case CloseByDefault():
            return _close_by_default(case, command)


def _request(case: Case, command: RequestVerification) -> list[CaseEvent]:
    if case.status is not Status.HANDLED:
        return []  # not handled yet, already verifying, or ended
    if case.verification is not None and case.verification.round == case.round:
        return []  # this round has its verification
    if case.verifier not in VERIFIERS:
        raise Refused(f"the case's dispatch names no verifier this service knows: {case.verifier!r}")
    return [
        VerificationRequested(
            case_id=command.case_id,
            verification_id=command.verification_id or verification_id_for(command.case_id, case.round),
            round=case.round,
            kind=case.verifier,
            grid=case.location.grid,
            respond_by=command.now + command.respond_within if case.verifier == "reporter" else None,
        )
    ]


def _record(case: Case, command: RecordVerification) -> list[CaseEvent]:
    verification = case.verification
    if verification is None or verification.id != command.verification_id:
        raise Refused("this is not the case's current verification")
    wanted = "passed" if command.passed else "failed"
    if verification.outcome == wanted:
        return []  # a retried verdict: it was recorded the first time
    if case.is_terminal:
        raise Refused(f"the case is {case.status}")
    if case.status is not Status.VERIFYING or verification.outcome != "pending":
        raise Refused(f"the verification was {verification.outcome} already")
    if command.passed:
        return [
            VerificationPassed(
                case_id=command.case_id,
                verification_id=command.verification_id,
                by=command.by,
                evidence=command.evidence,
                note=command.reason,
            ),
            CaseClosed(case_id=command.case_id),
        ]
    return [
        VerificationFailed(
            case_id=command.case_id,
            verification_id=command.verification_id,
            by=command.by,
            reason=command.reason,
            evidence=command.evidence,
        ),
        CaseReopened(case_id=command.case_id, round=case.round + 1, departments=_completed_departments(case)),
    ]


def _completed_departments(case: Case) -> tuple[str, ...]:
    """Who did this round's work, in dispatch order: they get the case back."""
    done = tuple(
        dict.fromkeys(t.department for t in case.tasks if t.round == case.round and t.status is TaskStatus.COMPLETED)
    )
    return done or case.departments


def _close_by_default(case: Case, command: CloseByDefault) -> list[CaseEvent]:
    verification = case.verification
    if (
        case.status is not Status.VERIFYING
        or verification is None
        or verification.kind != "reporter"
        or verification.outcome != "pending"
        or verification.respond_by is None
        or command.now < verification.respond_by
    ):
        return []
    return [
        VerificationPassed(case_id=command.case_id, verification_id=verification.id, by=BY_DEFAULT, by_default=True),
        CaseClosed(case_id=command.case_id, by_default=True),
    ]
