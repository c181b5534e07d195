"""The chaos checker's lifecycle rules: legal paths pass, each kind of illegal step is named."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from tests.chaos.lifecycle import Step, deadlines_fired, final_phase, problems

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def path(*entries: Sequence[str]) -> list[Step]:
    """("TaskAccepted", "t1") or "CaseHandled"; versions numbered from 1."""
    steps = []
    for version, entry in enumerate(entries, start=1):
        kind, *rest = (entry,) if isinstance(entry, str) else tuple(entry)
        task = rest[0] if rest else None
        extra = rest[1] if len(rest) > 1 else None
        if kind == "TaskDispatched":
            steps.append(Step(version, kind, task=task, replaces=extra))
        else:
            steps.append(Step(version, kind, task=task, kind=extra))
    return steps


STRAIGHT: list[Sequence[str]] = [
    "CaseReported",
    "CaseDispatched",
    ("TaskDispatched", "t1"),
    ("TaskAccepted", "t1"),
    ("TaskCompleted", "t1"),
    "CaseHandled",
    "VerificationRequested",
    "VerificationPassed",
    "CaseClosed",
]


def test_the_straight_path_is_legal_and_ends_closed() -> None:
    assert problems(path(*STRAIGHT)) == []
    assert final_phase(path(*STRAIGHT)) == "closed"
    assert problems(path(*STRAIGHT, "CaseRated", "ReporterErased")) == []


def test_a_return_a_failed_verification_and_a_second_round_are_legal() -> None:
    steps = path(
        "CaseReported",
        "CaseDispatched",
        ("TaskDispatched", "t1"),
        ("TaskReturned", "t1"),
        ("TaskDispatched", "t2", "t1"),
        ("TaskNoted", "t2"),
        ("TaskAccepted", "t2"),
        ("TaskCompleted", "t2"),
        "CaseHandled",
        "VerificationRequested",
        "VerificationFailed",
        "CaseReopened",
        "CaseDispatched",
        ("TaskDispatched", "t3"),
        ("TaskAccepted", "t3"),
        ("TaskCompleted", "t3"),
        "CaseHandled",
        "VerificationRequested",
        "VerificationPassed",
        "CaseClosed",
    )
    assert problems(steps) == []


def test_a_case_queued_after_a_return_while_another_task_works_then_dispatched_by_hand() -> None:
    steps = path(
        "CaseReported",
        "CaseDispatched",
        ("TaskDispatched", "a"),
        ("TaskDispatched", "b"),
        ("TaskReturned", "a"),
        "CaseQueued",
        ("TaskAccepted", "b"),
        ("TaskDispatched", "c"),
        ("TaskAccepted", "c"),
        ("TaskCompleted", "c"),
        ("TaskCompleted", "b"),
        "CaseHandled",
    )
    assert problems(steps) == []


def test_unknown_category_waits_in_the_queue_then_a_hand_dispatch_or_a_cancellation() -> None:
    assert final_phase(path("CaseReported", "CaseQueued")) == "queued"
    assert problems(path("CaseReported", "CaseQueued", "CaseDispatched", ("TaskDispatched", "t"))) == []
    assert problems(path("CaseReported", "CaseQueued", "CaseCancelled")) == []


def test_a_gap_in_versions_is_named() -> None:
    steps = path(*STRAIGHT)
    del steps[3]
    found = problems(steps)
    assert any("without gaps" in p for p in found)


def test_a_step_taken_twice_is_named() -> None:
    found = problems(path(*STRAIGHT[:6], "CaseHandled"))
    assert found and "CaseHandled" in found[0]
    assert problems(path("CaseReported", "CaseReported"))
    assert any("twice" in p for p in problems(path(*STRAIGHT[:3], ("TaskDispatched", "t1"))))


def test_a_skipped_step_is_named() -> None:
    assert problems(path("CaseReported", "CaseDispatched", ("TaskDispatched", "t1"), "CaseHandled"))
    assert problems(path("CaseReported", "CaseDispatched", ("TaskDispatched", "t1"), ("TaskCompleted", "t1")))
    assert problems(path(*STRAIGHT[:6], "VerificationPassed", "CaseClosed"))
    assert problems(path(*STRAIGHT[:7], "CaseClosed"))
    assert problems(path("CaseReported", "CaseDispatched", "CaseHandled"))


def test_nothing_moves_after_an_ending() -> None:
    assert problems(path(*STRAIGHT, "CaseCancelled"))
    assert problems(path(*STRAIGHT[:4], "CaseCancelled", ("TaskCompleted", "t1")))
    assert problems(path(*STRAIGHT[:6], "CaseRejected"))  # handled: too late to reject
    assert problems(path("CaseReported", "CaseRated"))


def test_deadlines_warn_then_overdue_then_escalate_each_once_and_never_early() -> None:
    dispatched = Step(
        3,
        "TaskDispatched",
        task="t",
        warn_at={"accept": T0, "complete": T0 + timedelta(hours=8)},
        due={"accept": T0 + timedelta(hours=1), "complete": T0 + timedelta(hours=10)},
    )
    head = [Step(1, "CaseReported"), Step(2, "CaseDispatched"), dispatched]
    late = T0 + timedelta(hours=2)
    fired = [
        Step(4, "DeadlineWarned", task="t", kind="accept", at=late),
        Step(5, "TaskOverdue", task="t", kind="accept", at=late),
        Step(6, "CaseEscalated", task="t", kind="accept", at=late),
    ]
    assert problems(head + fired) == []
    assert deadlines_fired(head + fired) == {("t", "accept"): ["DeadlineWarned", "TaskOverdue", "CaseEscalated"]}
    early = [Step(4, "DeadlineWarned", task="t", kind="accept", at=T0 - timedelta(seconds=1))]
    assert any("early" in p for p in problems(head + early))
    overdue_early = [fired[0], Step(5, "TaskOverdue", task="t", kind="accept", at=T0 + timedelta(minutes=59))]
    assert any("early" in p for p in problems(head + overdue_early))
    twice = [fired[0], Step(5, "DeadlineWarned", task="t", kind="accept", at=late)]
    assert any("twice" in p for p in problems(head + twice))
    skipped = [Step(4, "TaskOverdue", task="t", kind="accept", at=late)]
    assert any("skipped" in p for p in problems(head + skipped))
    accepted = [Step(4, "TaskAccepted", task="t"), Step(5, "DeadlineWarned", task="t", kind="accept", at=late)]
    assert problems(head + accepted)
