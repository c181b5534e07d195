"""Routing names who verifies on each dispatch it makes, from its policy's rule for the case."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest

from services.routing.handlers import react
from services.routing.planning import REPORTER_CONFIRMED, verifier_for
from shared.domain import events as ev
from shared.domain.case import replay
from shared.domain.rules import load_calendar, load_policy
from shared.messaging.bus import Delivered
from tests import examples

POLICY = load_policy()
CALENDAR = load_calendar()


def delivered(event: ev.CaseEvent, version: int) -> Delivered:
    return Delivered(
        event_id=UUID(int=version),
        stream_id=f"case-{event.case_id}",
        version=version,
        position=version,
        event=event,
        metadata=examples.METADATA,
        recorded_at=examples.NOW,
    )


@pytest.mark.parametrize(
    ("category", "verifier"), [("noise_complaint", "reporter"), ("food_safety", "reporter"), ("pothole", "grid_worker")]
)
def test_a_reported_case_is_dispatched_naming_its_rules_verifier(category: str, verifier: str) -> None:
    reported = examples.case_reported(category=category)
    events = react(replay([reported]), delivered(reported, 1), POLICY, CALENDAR, examples.NOW)
    dispatched = events[0]
    assert isinstance(dispatched, ev.CaseDispatched)
    assert (dispatched.verifier, dispatched.policy_version) == (verifier, POLICY.version)
    assert replay([reported, *events]).verifier == verifier


def test_a_reopened_round_names_the_verifier_again_by_the_policy_of_its_dispatch() -> None:
    history: list[ev.CaseEvent] = [
        examples.case_reported(category="noise_complaint"),
        examples.case_dispatched(verifier="grid_worker", policy_version="an-older-policy"),
        examples.task_dispatched(),
        examples.task_completed(),
        examples.case_handled(),
        examples.verification_requested(),
        ev.VerificationFailed(case_id=examples.CASE_ID, verification_id=examples.VERIFICATION_ID, by="gw", reason="吵"),
    ]
    reopened = ev.CaseReopened(case_id=examples.CASE_ID, round=2, departments=("sanitation",))
    case = replay([*history, reopened])
    events = react(case, delivered(reopened, 8), POLICY, CALENDAR, examples.NOW + timedelta(days=1))
    assert isinstance(events[0], ev.CaseDispatched)
    assert (events[0].round, events[0].verifier) == (2, "reporter")


def test_without_a_rule_the_grid_worker_verifies_except_the_complaints_only_a_reporter_can_settle() -> None:
    assert verifier_for(None, "a_category_no_policy_knows") == "grid_worker"
    assert {verifier_for(None, c) for c in REPORTER_CONFIRMED} == {"reporter"}


def test_with_a_rule_its_verifier_decides() -> None:
    rule = POLICY.route("neighbour_dispute", "wenfeng")
    assert rule is not None and verifier_for(rule, "neighbour_dispute") == rule.verify_by == "reporter"
    drain = POLICY.route("blocked_drain", None)
    assert verifier_for(drain, "noise_complaint") == "grid_worker"  # the rule, not the category's name
