"""intake's decide(): given events, when a command, then events."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.intake.decide import CancelCase, RateCase, RepeatAlarm, ReportCase, decide
from shared.domain.case import NO_CASE, Refused, replay
from shared.domain.events import AlarmRepeated, CaseCancelled, CaseEvent, CaseRated, Device, Source
from tests import examples

LATER = examples.NOW + timedelta(minutes=5)


def report(**overrides: object) -> ReportCase:
    """The command that reports `examples.case_reported()`, fields overridable."""
    reported = examples.case_reported()
    fields: dict[str, object] = {
        "case_id": reported.case_id,
        "source": reported.source,
        "category": reported.category,
        "description": reported.description,
        "location": reported.location,
        "reported_at": reported.reported_at,
        "created_by": reported.created_by,
        **overrides,
    }
    return ReportCase(**fields)  # type: ignore[arg-type]


def alarm() -> list[CaseEvent]:
    return [examples.case_reported(source=Source.SENSOR, device=Device(id="WL-0042", alarm="water_level_high"))]


def cancel() -> CancelCase:
    return CancelCase(case_id=examples.CASE_ID, reason="已自行解决", by="backend:wechat")


# --- reporting --------------------------------------------------------------------------


def test_a_report_makes_a_new_case_with_everything_it_was_told() -> None:
    assert decide(NO_CASE, report()) == [examples.case_reported()]


def test_a_sensors_report_keeps_its_device() -> None:
    device = Device(id="WL-0042", alarm="water_level_high")
    [reported] = decide(NO_CASE, report(source=Source.SENSOR, device=device, occurred_at=examples.NOW))
    assert reported == examples.case_reported(source=Source.SENSOR, device=device, occurred_at=examples.NOW)


def test_reporting_a_case_that_exists_again_changes_nothing() -> None:
    assert decide(replay([examples.case_reported()]), report(description="again")) == []


# --- repeated alarms --------------------------------------------------------------------


def test_a_repeated_alarm_counts_one_more_on_its_open_case() -> None:
    first = decide(replay(alarm()), RepeatAlarm(case_id=examples.CASE_ID, occurred_at=LATER))
    assert first == [AlarmRepeated(case_id=examples.CASE_ID, repeat_count=2, occurred_at=LATER)]
    second = decide(replay([*alarm(), *first]), RepeatAlarm(case_id=examples.CASE_ID, occurred_at=LATER))
    assert second == [AlarmRepeated(case_id=examples.CASE_ID, repeat_count=3, occurred_at=LATER)]


@pytest.mark.parametrize("history", [[], examples.until_closed()], ids=["no-case", "closed"])
def test_a_repeated_alarm_is_refused_when_its_case_is_not_open(history: list[CaseEvent]) -> None:
    with pytest.raises(Refused, match="no longer open"):
        decide(replay(history), RepeatAlarm(case_id=examples.CASE_ID, occurred_at=LATER))


# --- cancelling -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "history",
    [examples.until_verifying()[:1], examples.until_verifying()[:3], examples.until_verifying()[:4]],
    ids=["reported", "dispatched", "in-progress"],
)
def test_the_reporter_may_cancel_a_case_until_it_is_handled(history: list[CaseEvent]) -> None:
    assert decide(replay(history), cancel()) == [
        CaseCancelled(case_id=examples.CASE_ID, reason="已自行解决", by="backend:wechat")
    ]


def test_cancelling_a_cancelled_case_again_changes_nothing() -> None:
    cancelled = replay([examples.case_reported(), *decide(replay([examples.case_reported()]), cancel())])
    assert decide(cancelled, cancel()) == []


@pytest.mark.parametrize("history", [examples.until_verifying(), examples.until_closed()], ids=["handled", "closed"])
def test_a_case_past_handling_can_no_longer_be_cancelled(history: list[CaseEvent]) -> None:
    with pytest.raises(Refused, match="can no longer be cancelled"):
        decide(replay(history), cancel())


# --- rating -----------------------------------------------------------------------------


def test_a_closed_case_is_rated_once() -> None:
    rated = decide(replay(examples.until_closed()), RateCase(case_id=examples.CASE_ID, score=4, comment="很快"))
    assert rated == [CaseRated(case_id=examples.CASE_ID, score=4, comment="很快")]


def test_the_same_rating_again_changes_nothing_and_another_is_refused() -> None:
    rated = replay([*examples.until_closed(), CaseRated(case_id=examples.CASE_ID, score=4)])
    assert decide(rated, RateCase(case_id=examples.CASE_ID, score=4)) == []
    with pytest.raises(Refused, match="rated already"):
        decide(rated, RateCase(case_id=examples.CASE_ID, score=2))


def test_only_a_closed_case_can_be_rated() -> None:
    with pytest.raises(Refused, match="only a closed case"):
        decide(replay(examples.until_verifying()), RateCase(case_id=examples.CASE_ID, score=5))
