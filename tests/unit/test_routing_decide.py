"""routing's decide(): given events, when a command, then events."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest
from msgspec.structs import replace

from services.routing.decide import (
    CheckDeadlines,
    Dispatch,
    MergeCase,
    Reassign,
    Redispatch,
    RejectCase,
    decide,
    next_check,
)
from shared.domain.case import NO_CASE, Case, Refused, Status, TaskStatus, replay
from shared.domain.events import (
    CaseCancelled,
    CaseClosed,
    CaseDispatched,
    CaseEscalated,
    CaseEvent,
    CaseMerged,
    CaseQueued,
    CaseRejected,
    CaseReopened,
    DeadlineWarned,
    TaskDispatched,
    TaskOverdue,
    TaskWithdrawn,
    VerificationPassed,
    decode,
    department_of,
    encode,
)
from tests import examples as ex

NEW_TASK = ex.assignment(ex.TASK_ID_2, "water")


def dispatch(*tasks: object) -> Dispatch:
    return Dispatch(
        case_id=ex.CASE_ID,
        tasks=tasks,  # type: ignore[arg-type]
        priority="normal",
        policy_version="p1",
        verifier="reporter",
        by="rules",
    )


def test_a_new_case_is_dispatched_to_every_department_of_its_rule() -> None:
    case = replay([ex.case_reported()])
    events = decide(case, dispatch(ex.assignment(), NEW_TASK))
    assert events == [
        CaseDispatched(
            case_id=ex.CASE_ID,
            round=1,
            departments=("sanitation", "water"),
            priority="normal",
            policy_version="p1",
            verifier="reporter",
            by="rules",
        ),
        TaskDispatched(case_id=ex.CASE_ID, round=1, task=ex.assignment()),
        TaskDispatched(case_id=ex.CASE_ID, round=1, task=NEW_TASK),
    ]
    after = replay(events, case)
    assert (after.status, after.verifier) == (Status.DISPATCHED, "reporter")


def test_a_case_no_rule_matches_waits_in_the_queue() -> None:
    events = decide(replay([ex.case_reported()]), dispatch())
    assert events == [CaseQueued(case_id=ex.CASE_ID, reason="no routing rule matches")]


def test_dispatching_a_dispatched_case_again_changes_nothing() -> None:
    case = replay([ex.case_reported(), ex.case_dispatched(), ex.task_dispatched()])
    assert decide(case, dispatch(ex.assignment())) == []


def test_a_queued_case_is_dispatched_by_hand() -> None:
    case = replay([ex.case_reported(), CaseQueued(case_id=ex.CASE_ID, reason="no rule")])
    events = decide(case, dispatch(NEW_TASK))
    assert [type(e) for e in events] == [CaseDispatched, TaskDispatched]
    assert replay(events, case).status is Status.DISPATCHED


def test_a_reopened_case_starts_its_new_round() -> None:
    history = [*ex.until_verifying(), CaseReopened(case_id=ex.CASE_ID, round=2, departments=("sanitation",))]
    events = decide(replay(history), dispatch(ex.assignment(ex.TASK_ID_2)))
    assert events[0] == CaseDispatched(
        case_id=ex.CASE_ID,
        round=2,
        departments=("sanitation",),
        priority="normal",
        policy_version="p1",
        verifier="reporter",
        by="rules",
    )
    assert replay(events, replay(history)).round_tasks()[0].id == ex.TASK_ID_2


def test_a_returned_task_goes_to_the_next_department() -> None:
    case = replay([ex.case_reported(), ex.case_dispatched(), ex.task_dispatched(), ex.task_returned()])
    events = decide(case, Redispatch(case_id=ex.CASE_ID, returned_task=ex.TASK_ID, assignment=NEW_TASK))
    assert events == [TaskDispatched(case_id=ex.CASE_ID, round=1, task=NEW_TASK, replaces=ex.TASK_ID)]
    after = replay(events, case)
    assert after.unresolved_returns() == () and after.task(ex.TASK_ID).replaced_by == ex.TASK_ID_2  # type: ignore[union-attr]


def test_a_return_is_redispatched_only_once() -> None:
    history = [ex.case_reported(), ex.case_dispatched(), ex.task_dispatched(), ex.task_returned()]
    case = replay(history)
    first = decide(case, Redispatch(case_id=ex.CASE_ID, returned_task=ex.TASK_ID, assignment=NEW_TASK))
    again = decide(replay(first, case), Redispatch(case_id=ex.CASE_ID, returned_task=ex.TASK_ID, assignment=NEW_TASK))
    assert again == []


def test_with_no_department_left_a_return_goes_to_the_queue() -> None:
    case = replay([ex.case_reported(), ex.case_dispatched(), ex.task_dispatched(), ex.task_returned()])
    events = decide(case, Redispatch(case_id=ex.CASE_ID, returned_task=ex.TASK_ID, assignment=None))
    assert events == [CaseQueued(case_id=ex.CASE_ID, reason="no other department to try")]


def test_the_third_return_goes_to_the_queue() -> None:
    from uuid import UUID

    t2, t3 = UUID(int=2), UUID(int=3)
    history = [
        ex.case_reported(),
        ex.case_dispatched(),
        ex.task_dispatched(),
        ex.task_returned(),
        TaskDispatched(case_id=ex.CASE_ID, round=1, task=ex.assignment(t2, "water"), replaces=ex.TASK_ID),
        ex.task_returned(t2, "water"),
        TaskDispatched(case_id=ex.CASE_ID, round=1, task=ex.assignment(t3, "housing"), replaces=t2),
        ex.task_returned(t3, "housing"),
    ]
    events = decide(replay(history), Redispatch(case_id=ex.CASE_ID, returned_task=t3, assignment=NEW_TASK))
    assert events == [CaseQueued(case_id=ex.CASE_ID, reason="returned too often")]
    queued = replay(events, replay(history))
    hand = decide(queued, dispatch(ex.assignment(UUID(int=9), "police")))
    assert [type(e) for e in hand] == [TaskDispatched]  # the same round goes on
    assert replay(hand, queued).unresolved_returns() == ()


def test_an_open_task_can_be_reassigned_but_not_a_completed_one() -> None:
    case = replay([ex.case_reported(), ex.case_dispatched(), ex.task_dispatched()])
    events = decide(case, Reassign(case_id=ex.CASE_ID, task_id=ex.TASK_ID, assignment=NEW_TASK))
    assert events == [TaskDispatched(case_id=ex.CASE_ID, round=1, task=NEW_TASK, replaces=ex.TASK_ID)]
    done = replay([ex.task_accepted(), ex.task_completed()], case)
    with pytest.raises(Refused):
        decide(done, Reassign(case_id=ex.CASE_ID, task_id=ex.TASK_ID, assignment=NEW_TASK))


def test_no_deadline_event_before_the_warning_moment() -> None:
    case = replay([ex.case_reported(), ex.case_dispatched(), ex.task_dispatched()])
    task = case.tasks[0]
    assert decide(case, CheckDeadlines(case_id=ex.CASE_ID, now=task.accept_warn_at - timedelta(seconds=1))) == []


def test_warning_then_overdue_then_escalation_each_once() -> None:
    case = replay([ex.case_reported(), ex.case_dispatched(), ex.task_dispatched()])
    task = case.tasks[0]
    warned = decide(case, CheckDeadlines(case_id=ex.CASE_ID, now=task.accept_warn_at))
    assert warned == [
        DeadlineWarned(
            case_id=ex.CASE_ID, task_id=ex.TASK_ID, department="sanitation", kind="accept", due_at=task.accept_by
        )
    ]
    case = replay(warned, case)
    assert decide(case, CheckDeadlines(case_id=ex.CASE_ID, now=task.accept_warn_at)) == []
    late = decide(case, CheckDeadlines(case_id=ex.CASE_ID, now=task.accept_by))
    assert [type(e) for e in late] == [TaskOverdue, CaseEscalated]
    case = replay(late, case)
    assert decide(case, CheckDeadlines(case_id=ex.CASE_ID, now=task.accept_by + timedelta(minutes=5))) == []
    assert case.escalations == 1


def test_a_deadline_missed_while_down_still_warns_first_and_only_once() -> None:
    case = replay([ex.case_reported(), ex.case_dispatched(), ex.task_dispatched(), ex.task_accepted()])
    task = case.tasks[0]
    events = decide(case, CheckDeadlines(case_id=ex.CASE_ID, now=task.complete_by + timedelta(days=3)))
    assert [(type(e).__name__, getattr(e, "kind", "")) for e in events] == [
        ("DeadlineWarned", "complete"),
        ("TaskOverdue", "complete"),
        ("CaseEscalated", "complete"),
    ]
    assert (
        decide(replay(events, case), CheckDeadlines(case_id=ex.CASE_ID, now=task.complete_by + timedelta(days=4))) == []
    )
    assert next_check(replay(events, case)) is None


def test_an_accepted_task_has_no_accept_deadline() -> None:
    case = replay([ex.case_reported(), ex.case_dispatched(), ex.task_dispatched(), ex.task_accepted()])
    task = case.tasks[0]
    assert decide(case, CheckDeadlines(case_id=ex.CASE_ID, now=task.accept_by)) == []
    assert next_check(case) == task.complete_warn_at


def test_a_case_can_be_rejected_before_handling_but_not_after_closing() -> None:
    reported = replay([ex.case_reported()])
    assert [type(e).__name__ for e in decide(reported, RejectCase(case_id=ex.CASE_ID, reason="重复", by="d"))] == [
        "CaseRejected"
    ]
    with pytest.raises(Refused):
        decide(replay(ex.until_verifying()), RejectCase(case_id=ex.CASE_ID, reason="x", by="d"))


OTHER = UUID("00000000-0000-4000-8000-0000000000c2")
THIRD = UUID("00000000-0000-4000-8000-0000000000c3")


def other(*events: CaseEvent, case_id: UUID = OTHER) -> Case:
    """Another case, as routing's shell loads the target of a merge."""
    return replay(replace(e, case_id=case_id) for e in (ex.case_reported(), *events))


def merge(target: Case, into: UUID = OTHER) -> MergeCase:
    return MergeCase(case_id=ex.CASE_ID, into=into, by="dispatcher:d", target=target)


DISPATCHED = [ex.case_reported(), ex.case_dispatched("sanitation", "water"), ex.task_dispatched()]
ENDED_TARGETS = {
    "cancelled": other(CaseCancelled(case_id=OTHER, reason="不需要了", by="reporter")),
    "rejected": other(CaseRejected(case_id=OTHER, reason="不属实", by="dispatcher:d")),
    "merged": other(CaseMerged(case_id=OTHER, into=THIRD, by="dispatcher:d")),
    "closed": other(
        *ex.until_verifying()[1:],
        VerificationPassed(case_id=OTHER, verification_id=ex.VERIFICATION_ID, by="grid_worker:gw"),
        CaseClosed(case_id=OTHER),
    ),
}


def test_a_case_cannot_be_merged_into_itself() -> None:
    case = replay([ex.case_reported()])
    with pytest.raises(Refused, match="into itself"):
        decide(case, merge(case, into=ex.CASE_ID))


@pytest.mark.parametrize("status", sorted(ENDED_TARGETS))
def test_a_case_cannot_be_merged_into_a_case_that_has_ended(status: str) -> None:
    target = ENDED_TARGETS[status]
    assert target.status == status
    with pytest.raises(Refused):
        decide(replay(DISPATCHED), merge(target))


def test_a_merge_back_into_a_case_merged_into_this_one_is_a_cycle_and_refused() -> None:
    target = other(CaseMerged(case_id=OTHER, into=ex.CASE_ID, by="dispatcher:d"))
    with pytest.raises(Refused, match="cycle"):
        decide(replay([ex.case_reported()]), merge(target))


def test_a_merge_into_a_case_merged_on_through_others_is_refused() -> None:
    # OTHER went into THIRD, which went into this case: any merged target is refused, so no cycle.
    target = other(CaseMerged(case_id=OTHER, into=THIRD, by="dispatcher:d"))
    with pytest.raises(Refused, match=str(THIRD)):
        decide(replay([ex.case_reported()]), merge(target))


def test_a_merge_needs_the_target_loaded() -> None:
    with pytest.raises(Refused, match="no such case"):
        decide(replay([ex.case_reported()]), merge(NO_CASE))
    with pytest.raises(Refused, match="no such case"):
        decide(replay([ex.case_reported()]), merge(other(case_id=THIRD)))  # the wrong case loaded


def test_a_case_past_dispatch_cannot_be_merged() -> None:
    with pytest.raises(Refused):
        decide(replay(ex.until_verifying()), merge(other()))


def test_a_merge_ends_each_open_task_with_its_own_event_then_the_case() -> None:
    case = replay([*DISPATCHED, ex.task_dispatched(ex.TASK_ID_2, "water"), ex.task_accepted(ex.TASK_ID_2, "water")])
    case = replay([ex.task_returned(ex.TASK_ID_2, "water")], case)  # a returned task is not open: no event
    case = replay([ex.task_dispatched(UUID(int=3), "city_management")], case)
    events = decide(case, merge(other(ex.case_dispatched(), ex.task_dispatched())))
    assert [(type(e).__name__, getattr(e, "task_id", None)) for e in events] == [
        ("TaskWithdrawn", ex.TASK_ID),
        ("TaskWithdrawn", UUID(int=3)),
        ("CaseMerged", None),
    ]
    assert all(e.case_id == ex.CASE_ID for e in events)  # nothing for the target: it is unaffected
    withdrawn = events[0]
    assert isinstance(withdrawn, TaskWithdrawn) and withdrawn.department == "sanitation"
    assert withdrawn.by == "dispatcher:d" and str(OTHER) in withdrawn.reason
    merged = replay(events, case)
    assert merged.status is Status.MERGED and merged.merged_into == OTHER
    assert [t.status for t in merged.tasks] == [TaskStatus.WITHDRAWN, TaskStatus.RETURNED, TaskStatus.WITHDRAWN]


def test_a_retried_merge_changes_nothing_even_after_the_target_ended() -> None:
    case = replay(DISPATCHED)
    case = replay(decide(case, merge(other())), case)
    assert decide(case, merge(ENDED_TARGETS["closed"])) == []


def test_a_rejection_ends_each_open_task_with_its_own_event_too() -> None:
    events = decide(replay(DISPATCHED), RejectCase(case_id=ex.CASE_ID, reason="不属实", by="dispatcher:d"))
    assert [type(e).__name__ for e in events] == ["TaskWithdrawn", "CaseRejected"]
    assert replay(events, replay(DISPATCHED)).tasks[0].status is TaskStatus.WITHDRAWN


def test_a_withdrawn_task_is_on_its_departments_subject() -> None:
    event = TaskWithdrawn(case_id=ex.CASE_ID, task_id=ex.TASK_ID, department="water", by="d", reason="merged")
    assert department_of(event) == "water"
    assert decode(encode(event)) == event
