"""routing's react(): what routing does about one delivered event, given the case as the log has it.

Pure: the shipped policy and calendar are data, the moment and the triggering event come in.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid5

import pytest

from services.routing.handlers import react
from shared.domain.case import Case, Status, replay
from shared.domain.events import (
    CaseDispatched,
    CaseEvent,
    CaseQueued,
    CaseReopened,
    TaskDispatched,
    VerificationFailed,
)
from shared.domain.rules import Policy, WorkingCalendar
from shared.messaging.bus import Delivered
from tests import examples

EVENT_ID = UUID("00000000-0000-4000-8000-0000000000d1")
GAS_ALARM = "gas_alarm"


def delivered(event: CaseEvent, event_id: UUID = EVENT_ID) -> Delivered:
    return Delivered(
        event_id=event_id,
        stream_id=f"case-{event.case_id}",
        version=1,
        position=1,
        event=event,
        metadata=examples.METADATA,
        recorded_at=examples.NOW,
    )


def reacting(
    case: Case, event: CaseEvent, policy: Policy, calendar: WorkingCalendar, warn_share: float = 0.8
) -> list[CaseEvent]:
    """react() at examples.NOW to `event`, delivered with EVENT_ID."""
    return react(case, delivered(event), policy, calendar, examples.NOW, warn_share)


def task_id(department: str, event_id: UUID = EVENT_ID) -> UUID:
    return uuid5(event_id, f"task:{department}")


# --- a new case -------------------------------------------------------------------------


def test_a_reported_case_goes_to_its_rules_departments_at_once(policy: Policy, calendar: WorkingCalendar) -> None:
    reported = examples.case_reported(category=GAS_ALARM)
    events = reacting(replay([reported]), reported, policy, calendar)

    [started, *tasks] = events
    assert isinstance(started, CaseDispatched)
    assert (started.round, started.by, started.policy_version) == (1, "rules", policy.version)
    assert set(started.departments) == {"gas_utility", "emergency_management", "police"}
    assert [type(e) for e in tasks] == [TaskDispatched] * 3
    assignments = {e.task.department: e.task for e in tasks}  # type: ignore[attr-defined]
    assert {d: a.task_id for d, a in assignments.items()} == {d: task_id(d) for d in started.departments}
    assert [d for d, a in assignments.items() if a.lead] == ["gas_utility"]
    assert replay(events, replay([reported])).status is Status.DISPATCHED


def test_a_redelivered_report_gets_the_same_tasks_and_once_dispatched_nothing(
    policy: Policy, calendar: WorkingCalendar
) -> None:
    reported = examples.case_reported()
    case = replay([reported])
    first = reacting(case, reported, policy, calendar)
    assert reacting(case, reported, policy, calendar) == first  # the task ids come from the event's id
    assert reacting(replay(first, case), reported, policy, calendar) == []


def test_deadlines_count_from_the_moment_given_with_the_warning_at_its_share(
    policy: Policy, calendar: WorkingCalendar
) -> None:
    reported = examples.case_reported()
    [_, early] = reacting(replay([reported]), reported, policy, calendar, warn_share=0.5)
    [_, late] = reacting(replay([reported]), reported, policy, calendar, warn_share=0.9)
    a, b = early.task, late.task  # type: ignore[attr-defined]
    assert examples.NOW < a.accept_warn_at < b.accept_warn_at < a.accept_by == b.accept_by
    assert a.accept_by < a.complete_by
    day_later = react(replay([reported]), delivered(reported), policy, calendar, examples.NOW + timedelta(days=1))
    assert day_later[1].task.accept_by > a.accept_by  # type: ignore[attr-defined]


def test_a_category_no_rule_knows_waits_in_the_queue_saying_so(policy: Policy, calendar: WorkingCalendar) -> None:
    reported = examples.case_reported(category="bees_in_the_town_hall")
    assert reacting(replay([reported]), reported, policy, calendar) == [
        CaseQueued(case_id=examples.CASE_ID, reason="no rule for category 'bees_in_the_town_hall' here")
    ]


# --- a reopened case --------------------------------------------------------------------


def reopened(round_: int = 2) -> tuple[list[CaseEvent], CaseReopened]:
    event = CaseReopened(case_id=examples.CASE_ID, round=round_, departments=("sanitation",))
    failed = VerificationFailed(
        case_id=examples.CASE_ID, verification_id=examples.VERIFICATION_ID, by="grid_worker:gw-1", reason="积水仍在"
    )
    return [*examples.until_verifying(), failed, event], event


def test_a_reopened_case_goes_again_to_the_departments_of_its_round(policy: Policy, calendar: WorkingCalendar) -> None:
    history, event = reopened()
    [started, task] = reacting(replay(history), event, policy, calendar)
    assert isinstance(started, CaseDispatched) and isinstance(task, TaskDispatched)
    assert (started.round, started.departments, started.priority) == (2, ("sanitation",), "normal")
    assert (task.round, task.task.department, task.task.task_id) == (2, "sanitation", task_id("sanitation"))


def test_an_old_rounds_reopening_changes_nothing(policy: Policy, calendar: WorkingCalendar) -> None:
    history, _ = reopened()
    stale = CaseReopened(case_id=examples.CASE_ID, round=1, departments=("sanitation",))
    assert reacting(replay(history), stale, policy, calendar) == []


# --- a returned task --------------------------------------------------------------------


def dispatched_to_water(policy: Policy, calendar: WorkingCalendar) -> list[CaseEvent]:
    reported = examples.case_reported()  # a blocked drain: water leads, city management is the fallback
    return [reported, *reacting(replay([reported]), reported, policy, calendar)]


def test_a_returned_task_goes_to_the_next_department_of_the_rule(policy: Policy, calendar: WorkingCalendar) -> None:
    history = dispatched_to_water(policy, calendar)
    returned = examples.task_returned(task_id("water"), "water")
    later = UUID(int=EVENT_ID.int + 1)
    events = react(replay([*history, returned]), delivered(returned, later), policy, calendar, examples.NOW)
    [again] = events
    assert isinstance(again, TaskDispatched)
    assert (again.replaces, again.round, again.task.department) == (task_id("water"), 1, "city_management")
    assert again.task.task_id == task_id("city_management", later)


def test_with_every_department_tried_a_return_goes_to_the_queue(policy: Policy, calendar: WorkingCalendar) -> None:
    history = dispatched_to_water(policy, calendar)
    returned = examples.task_returned(task_id("water"), "water")
    later = UUID(int=EVENT_ID.int + 1)
    history += [
        returned,
        *react(replay([*history, returned]), delivered(returned, later), policy, calendar, examples.NOW),
    ]
    returned_again = examples.task_returned(task_id("city_management", later), "city_management")
    assert reacting(replay([*history, returned_again]), returned_again, policy, calendar) == [
        CaseQueued(case_id=examples.CASE_ID, reason="no other department to try")
    ]


# --- everything else --------------------------------------------------------------------


@pytest.mark.parametrize("index", range(1, 7))
def test_other_events_ask_nothing_of_routing(index: int, policy: Policy, calendar: WorkingCalendar) -> None:
    history = examples.until_verifying()
    assert reacting(replay(history[: index + 1]), history[index], policy, calendar) == []
