"""handling's decide(): given events, when a command, then events."""

from __future__ import annotations

from uuid import UUID

import pytest

from services.handling.decide import AcceptTask, CompleteTask, NoteTask, ReturnTask, decide
from shared.domain.case import Refused, replay
from shared.domain.events import (
    CaseCancelled,
    CaseEvent,
    CaseHandled,
    TaskAccepted,
    TaskCompleted,
    TaskNoted,
    TaskReturned,
)
from tests import examples

TASK_ID_3 = UUID("00000000-0000-4000-8000-0000000000a3")
UNKNOWN_TASK = UUID("00000000-0000-4000-8000-0000000000ff")
BY = "handler:zhang"


def dispatched() -> list[CaseEvent]:
    return [examples.case_reported(), examples.case_dispatched(), examples.task_dispatched()]


def co_handled() -> list[CaseEvent]:
    """One case, three departments at once ("6+X")."""
    return [
        examples.case_reported(),
        examples.case_dispatched("sanitation", "city_management", "water"),
        examples.task_dispatched(examples.TASK_ID, "sanitation"),
        examples.task_dispatched(examples.TASK_ID_2, "city_management"),
        examples.task_dispatched(TASK_ID_3, "water"),
        examples.task_accepted(examples.TASK_ID, "sanitation"),
        examples.task_accepted(examples.TASK_ID_2, "city_management"),
        examples.task_accepted(TASK_ID_3, "water"),
    ]


def accept(task_id: UUID = examples.TASK_ID) -> AcceptTask:
    return AcceptTask(case_id=examples.CASE_ID, task_id=task_id, by=BY)


def complete(task_id: UUID = examples.TASK_ID) -> CompleteTask:
    return CompleteTask(
        case_id=examples.CASE_ID,
        task_id=task_id,
        by=BY,
        result="疏通完毕",
        evidence=examples.task_completed().evidence,
    )


def return_(task_id: UUID = examples.TASK_ID) -> ReturnTask:
    return ReturnTask(case_id=examples.CASE_ID, task_id=task_id, by=BY, reason="不属于本部门")


def test_a_dispatched_task_is_accepted() -> None:
    case = replay(dispatched())
    assert decide(case, accept()) == [
        TaskAccepted(case_id=examples.CASE_ID, task_id=examples.TASK_ID, department="sanitation", by=BY)
    ]


def test_accepting_twice_changes_nothing() -> None:
    case = replay([*dispatched(), examples.task_accepted()])
    assert decide(case, accept()) == []


def test_a_completed_task_cannot_be_accepted() -> None:
    case = replay([*dispatched(), examples.task_accepted(), examples.task_completed()])
    with pytest.raises(Refused):
        decide(case, accept())


def test_an_open_task_takes_notes() -> None:
    case = replay(dispatched())
    events = decide(case, NoteTask(case_id=examples.CASE_ID, task_id=examples.TASK_ID, by=BY, note="已到现场"))
    assert events == [
        TaskNoted(case_id=examples.CASE_ID, task_id=examples.TASK_ID, department="sanitation", by=BY, note="已到现场")
    ]


def test_a_dispatched_task_must_be_accepted_before_it_is_completed() -> None:
    case = replay(dispatched())
    with pytest.raises(Refused, match="accept the task first"):
        decide(case, complete())


def test_completing_the_only_task_handles_the_case() -> None:
    case = replay([*dispatched(), examples.task_accepted()])
    events = decide(case, complete())
    assert [type(e) for e in events] == [TaskCompleted, CaseHandled]
    assert events[1] == CaseHandled(case_id=examples.CASE_ID, round=1)


def test_completing_twice_changes_nothing() -> None:
    case = replay([*dispatched(), examples.task_accepted(), examples.task_completed(), examples.case_handled()])
    assert decide(case, complete()) == []


def test_a_completion_without_evidence_is_refused() -> None:
    case = replay([*dispatched(), examples.task_accepted()])
    with pytest.raises(Refused):
        decide(case, CompleteTask(case_id=examples.CASE_ID, task_id=examples.TASK_ID, by=BY, result="ok", evidence=()))


def test_the_case_is_handled_only_when_the_last_of_three_departments_completes() -> None:
    case = replay(co_handled())
    first = decide(case, complete(examples.TASK_ID))
    assert [type(e) for e in first] == [TaskCompleted]
    case = replay(first, case)
    second = decide(case, complete(examples.TASK_ID_2))
    assert [type(e) for e in second] == [TaskCompleted]
    case = replay(second, case)
    last = decide(case, complete(TASK_ID_3))
    assert [type(e) for e in last] == [TaskCompleted, CaseHandled]


def test_a_returned_task_holds_the_round_open_until_its_replacement_completes() -> None:
    from uuid import UUID

    from shared.domain.events import TaskDispatched

    case = replay([*co_handled(), examples.task_returned(TASK_ID_3, "water")])
    case = replay(decide(case, complete(examples.TASK_ID)), case)
    second = decide(case, complete(examples.TASK_ID_2))
    assert [type(e) for e in second] == [TaskCompleted]  # the return still awaits re-dispatch
    replacement = UUID(int=4)
    case = replay(
        [
            *second,
            TaskDispatched(
                case_id=examples.CASE_ID,
                round=1,
                task=examples.assignment(replacement, "city_management"),
                replaces=TASK_ID_3,
            ),
            examples.task_accepted(replacement, "city_management"),
        ],
        case,
    )
    last = decide(case, complete(replacement))
    assert [type(e) for e in last] == [TaskCompleted, CaseHandled]


def test_an_open_task_is_returned() -> None:
    case = replay(dispatched())
    assert decide(case, return_()) == [
        TaskReturned(
            case_id=examples.CASE_ID, task_id=examples.TASK_ID, department="sanitation", by=BY, reason="不属于本部门"
        )
    ]


def test_returning_twice_changes_nothing() -> None:
    case = replay([*dispatched(), examples.task_returned()])
    assert decide(case, return_()) == []


def test_a_completed_task_cannot_be_returned() -> None:
    case = replay([*dispatched(), examples.task_accepted(), examples.task_completed()])
    with pytest.raises(Refused):
        decide(case, return_())


@pytest.mark.parametrize("command", [accept(), complete(), return_()], ids=["accept", "complete", "return"])
def test_every_command_is_refused_once_the_case_has_ended(command: AcceptTask | CompleteTask | ReturnTask) -> None:
    case = replay([*dispatched(), CaseCancelled(case_id=examples.CASE_ID, reason="已自行解决", by="reporter")])
    with pytest.raises(Refused, match="the case has ended"):
        decide(case, command)


def test_a_command_for_an_unknown_task_is_refused() -> None:
    case = replay(dispatched())
    with pytest.raises(Refused, match="no such task"):
        decide(case, accept(UNKNOWN_TASK))
