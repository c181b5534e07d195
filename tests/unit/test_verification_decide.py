"""verification's decide(): given events, when a command, then events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from msgspec.structs import replace

from services.verification.decide import (
    CloseByDefault,
    RecordVerification,
    RequestVerification,
    decide,
    verification_id_for,
)
from shared.domain import events as ev
from shared.domain.case import Refused, Status, replay
from tests import examples

CASE_ID = examples.CASE_ID
VERIFICATION_ID = examples.VERIFICATION_ID
NOW = examples.NOW
WINDOW = timedelta(hours=72)
TASK_ID_3 = UUID("00000000-0000-4000-8000-0000000000a3")


def request(**overrides: Any) -> RequestVerification:
    command = RequestVerification(case_id=CASE_ID, now=NOW, respond_within=WINDOW)
    return replace(command, **overrides)


def record(passed: bool = True, **overrides: Any) -> RecordVerification:
    command = RecordVerification(
        case_id=CASE_ID, verification_id=VERIFICATION_ID, by="grid_worker:gw-1", passed=passed, reason=""
    )
    return replace(command, **overrides)


def until_handled(verifier: str = "grid_worker") -> list[ev.CaseEvent]:
    """A case handled after a dispatch that named `verifier` to verify its work."""
    events = examples.until_verifying()[:-1]
    return [replace(e, verifier=verifier) if isinstance(e, ev.CaseDispatched) else e for e in events]


def co_handled_until_verifying() -> list[ev.CaseEvent]:
    """Three departments dispatched; one returned "not ours", the other two completed."""
    return [
        examples.case_reported(),
        examples.case_dispatched("sanitation", "water", "housing"),
        examples.task_dispatched(examples.TASK_ID, "water"),
        examples.task_dispatched(examples.TASK_ID_2, "sanitation"),
        examples.task_dispatched(TASK_ID_3, "housing"),
        examples.task_returned(TASK_ID_3, "housing"),
        examples.task_completed(examples.TASK_ID, "water"),
        examples.task_completed(examples.TASK_ID_2, "sanitation"),
        examples.case_handled(),
        examples.verification_requested(),
    ]


def reporter_verifying(respond_by: Any = NOW + WINDOW) -> list[ev.CaseEvent]:
    requested = replace(examples.verification_requested(kind="reporter"), respond_by=respond_by)
    return [*until_handled("reporter"), requested]


# --- RequestVerification ------------------------------------------------------------------


def test_a_handled_case_gets_a_grid_worker_verification_for_its_round_and_grid() -> None:
    case = replay(until_handled())
    assert decide(case, request()) == [
        ev.VerificationRequested(
            case_id=CASE_ID,
            verification_id=verification_id_for(CASE_ID, 1),
            round=1,
            kind="grid_worker",
            grid="wenfeng-tianehu-01",
            respond_by=None,
        )
    ]


def test_a_reporter_confirmation_must_be_answered_within_the_window() -> None:
    [requested] = decide(replay(until_handled("reporter")), request())
    assert isinstance(requested, ev.VerificationRequested)
    assert requested.kind == "reporter"
    assert requested.respond_by == NOW + WINDOW


def test_the_verification_id_is_the_same_for_the_same_case_and_round_only() -> None:
    assert verification_id_for(CASE_ID, 1) == verification_id_for(CASE_ID, 1)
    assert verification_id_for(CASE_ID, 1) != verification_id_for(CASE_ID, 2)


def test_a_case_located_by_coordinates_only_gets_a_verification_without_a_grid() -> None:
    events = until_handled()
    events[0] = examples.case_reported(location=ev.Location(lat=31.16, lon=108.39))
    [requested] = decide(replay(events), request())
    assert isinstance(requested, ev.VerificationRequested)
    assert requested.grid is None


@pytest.mark.parametrize("upto", [1, 2, 4])
def test_a_case_not_yet_handled_gets_no_verification(upto: int) -> None:
    assert decide(replay(until_handled()[:upto]), request()) == []


def test_requesting_a_verification_twice_changes_nothing() -> None:
    assert decide(replay(examples.until_verifying()), request()) == []


def test_a_closed_case_gets_no_verification() -> None:
    case = replay([*examples.until_verifying(), *decide(replay(examples.until_verifying()), record())])
    assert case.status is Status.CLOSED
    assert decide(case, request()) == []


# --- RecordVerification -------------------------------------------------------------------


def test_a_passed_verification_closes_the_case() -> None:
    evidence = examples.task_completed().evidence
    events = decide(replay(examples.until_verifying()), record(evidence=evidence))
    assert events == [
        ev.VerificationPassed(
            case_id=CASE_ID, verification_id=VERIFICATION_ID, by="grid_worker:gw-1", evidence=evidence
        ),
        ev.CaseClosed(case_id=CASE_ID),
    ]


def test_a_failed_verification_reopens_the_case_for_the_departments_that_completed_their_tasks() -> None:
    events = decide(replay(co_handled_until_verifying()), record(passed=False, reason="仍有积水"))
    assert events == [
        ev.VerificationFailed(
            case_id=CASE_ID, verification_id=VERIFICATION_ID, by="grid_worker:gw-1", reason="仍有积水"
        ),
        ev.CaseReopened(case_id=CASE_ID, round=2, departments=("water", "sanitation")),
    ]


def test_passing_a_verification_again_changes_nothing() -> None:
    case = replay([*examples.until_verifying(), *decide(replay(examples.until_verifying()), record())])
    assert decide(case, record()) == []


def test_failing_a_verification_again_changes_nothing() -> None:
    failed = decide(replay(examples.until_verifying()), record(passed=False, reason="no"))
    assert decide(replay([*examples.until_verifying(), *failed]), record(passed=False, reason="no")) == []


def test_a_passed_verification_cannot_be_failed() -> None:
    case = replay([*examples.until_verifying(), *decide(replay(examples.until_verifying()), record())])
    with pytest.raises(Refused):
        decide(case, record(passed=False, reason="changed my mind"))


def test_a_failed_verification_cannot_be_passed() -> None:
    failed = decide(replay(examples.until_verifying()), record(passed=False, reason="no"))
    with pytest.raises(Refused):
        decide(replay([*examples.until_verifying(), *failed]), record())


def test_recording_an_unknown_verification_is_refused() -> None:
    with pytest.raises(Refused):
        decide(replay(examples.until_verifying()), record(verification_id=CASE_ID))


def test_recording_before_any_verification_is_refused() -> None:
    with pytest.raises(Refused):
        decide(replay(until_handled()), record())


def test_recording_on_a_rejected_case_is_refused() -> None:
    rejected = ev.CaseRejected(case_id=CASE_ID, reason="duplicate", by="dispatcher:d-1")
    with pytest.raises(Refused):
        decide(replay([*examples.until_verifying(), rejected]), record())


# --- CloseByDefault -----------------------------------------------------------------------


def test_an_unanswered_reporter_confirmation_stays_open_before_its_deadline() -> None:
    case = replay(reporter_verifying())
    assert decide(case, CloseByDefault(case_id=CASE_ID, now=NOW + WINDOW - timedelta(seconds=1))) == []


def test_an_unanswered_reporter_confirmation_closes_by_default_at_its_deadline() -> None:
    events = decide(replay(reporter_verifying()), CloseByDefault(case_id=CASE_ID, now=NOW + WINDOW))
    assert events == [
        ev.VerificationPassed(case_id=CASE_ID, verification_id=VERIFICATION_ID, by="system:default", by_default=True),
        ev.CaseClosed(case_id=CASE_ID, by_default=True),
    ]
    assert replay([*reporter_verifying(), *events]).closed_by_default


def test_a_grid_worker_verification_never_closes_by_default() -> None:
    case = replay(examples.until_verifying())
    assert decide(case, CloseByDefault(case_id=CASE_ID, now=NOW + timedelta(days=365))) == []


def test_an_answered_reporter_confirmation_does_not_close_by_default() -> None:
    failed = decide(replay(reporter_verifying()), record(passed=False, reason="still noisy", by="reporter_backend:b"))
    case = replay([*reporter_verifying(), *failed])
    assert decide(case, CloseByDefault(case_id=CASE_ID, now=NOW + 2 * WINDOW)) == []


def test_a_case_closed_by_default_is_not_closed_again() -> None:
    closing = decide(replay(reporter_verifying()), CloseByDefault(case_id=CASE_ID, now=NOW + WINDOW))
    case = replay([*reporter_verifying(), *closing])
    assert decide(case, CloseByDefault(case_id=CASE_ID, now=NOW + 2 * WINDOW)) == []


# --- who verifies -------------------------------------------------------------------------


def test_the_verifier_is_the_one_the_latest_dispatch_named() -> None:
    first_round = until_handled("reporter")
    failed = [
        examples.verification_requested(kind="reporter"),
        ev.VerificationFailed(case_id=CASE_ID, verification_id=VERIFICATION_ID, by="reporter_backend:b", reason="吵"),
        ev.CaseReopened(case_id=CASE_ID, round=2, departments=("sanitation",)),
    ]
    second_round = [
        examples.case_dispatched(round=2, verifier="grid_worker"),
        examples.task_dispatched(TASK_ID_3, round=2),
        examples.task_completed(TASK_ID_3),
        ev.CaseHandled(case_id=CASE_ID, round=2),
    ]
    [requested] = decide(replay([*first_round, *failed, *second_round]), request())
    assert isinstance(requested, ev.VerificationRequested)
    assert (requested.round, requested.kind, requested.respond_by) == (2, "grid_worker", None)


def test_a_dispatch_naming_no_known_verifier_is_refused_not_guessed() -> None:
    with pytest.raises(Refused, match="names no verifier"):
        decide(replay(until_handled("")), request())
