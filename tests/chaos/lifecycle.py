"""Is a case's history a legal path through the lifecycle? A pure checker over its events.

Written from the lifecycle as the README and the services' decide() describe it, not from
`shared.domain.case.evolve`, so a bug in the fold cannot hide itself. A case moves through phases

    reported → (queued ⇄) dispatched → handled → verifying → passed → closed
                                                           ↘ failed → reopened → dispatched …

and may end cancelled, rejected or merged before it is handled. Every case-level step is
taken once per round (none twice, none skipped); tasks go dispatched → accepted → completed,
or are returned, replaced or withdrawn (their case ending), and take no step after that; each
deadline (task, kind) is warned, then overdue, then escalated, each at most once, and never
before its moment. Versions run 1, 2, 3 … without gaps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

TERMINAL = frozenset({"closed", "rejected", "merged", "cancelled"})
# phase -> case-level event -> next phase
FLOW: dict[str, dict[str, str]] = {
    "new": {"CaseReported": "reported"},
    "reported": {"CaseQueued": "queued", "CaseDispatched": "dispatched"},
    "queued": {"CaseDispatched": "dispatched"},
    "dispatched": {"CaseQueued": "queued", "CaseHandled": "handled"},
    "handled": {"VerificationRequested": "verifying"},
    "verifying": {"VerificationPassed": "passed", "VerificationFailed": "failed"},
    "passed": {"CaseClosed": "closed"},
    "failed": {"CaseReopened": "reopened"},
    "reopened": {"CaseDispatched": "dispatched"},
}
ENDINGS: dict[str, tuple[str, frozenset[str]]] = {
    "CaseCancelled": ("cancelled", frozenset({"reported", "queued", "dispatched", "reopened"})),
    "CaseRejected": ("rejected", frozenset({"reported", "queued", "dispatched"})),
    "CaseMerged": ("merged", frozenset({"reported", "queued", "dispatched"})),
}
TASK_FLOW: dict[str, dict[str, str]] = {
    "dispatched": {"TaskAccepted": "accepted", "TaskReturned": "returned", "TaskWithdrawn": "withdrawn"},
    "accepted": {"TaskCompleted": "completed", "TaskReturned": "returned", "TaskWithdrawn": "withdrawn"},
}
DEADLINE_ORDER = ("DeadlineWarned", "TaskOverdue", "CaseEscalated")
ANYWHERE = frozenset({"ReporterErased"})
WORKING = frozenset({"dispatched", "queued"})  # tasks of a round may move while it waits for a hand dispatch
Bad = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    """One event as the checker needs it."""

    version: int
    type: str
    task: str | None = None  # task-level events: the task
    kind: str | None = None  # deadline events: "accept" | "complete"
    replaces: str | None = None  # TaskDispatched: the task it takes over from
    at: datetime | None = None  # when it was recorded (the services' clock)
    warn_at: dict[str, datetime] = field(default_factory=dict)  # TaskDispatched: kind -> warning moment
    due: dict[str, datetime] = field(default_factory=dict)  # TaskDispatched: kind -> deadline


@dataclass
class _Walk:
    phase: str = "new"
    round: int = 0
    tasks: dict[str, str] = field(default_factory=dict)  # task -> its state
    task_round: dict[str, int] = field(default_factory=dict)
    deadlines: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    warn_at: dict[tuple[str, str], datetime] = field(default_factory=dict)
    due: dict[tuple[str, str], datetime] = field(default_factory=dict)
    previous: str = ""
    problems: list[str] = field(default_factory=list)

    def open_in_round(self) -> list[str]:
        return [
            t for t, s in self.tasks.items() if s in ("dispatched", "accepted") and self.task_round[t] == self.round
        ]


def problems(steps: list[Step]) -> list[str]:
    """Everything illegal about one case's history; [] when it is a legal path."""
    walk = _Walk()
    versions = [s.version for s in steps]
    if versions != list(range(1, len(steps) + 1)):
        walk.problems.append(f"versions {versions[:12]}… are not 1..{len(steps)} without gaps")
    for step in steps:
        _step(walk, step)
        walk.previous = step.type
    return walk.problems


def final_phase(steps: list[Step]) -> str:
    walk = _Walk()
    for step in steps:
        _step(walk, step)
        walk.previous = step.type
    return walk.phase


def _step(walk: _Walk, step: Step) -> None:
    def bad(reason: str) -> None:
        walk.problems.append(f"v{step.version} {step.type}: {reason} (phase {walk.phase})")

    kind = step.type
    if kind in ANYWHERE:
        return
    if kind == "CaseRated":
        if walk.phase != "closed":
            bad("a rating before the case closed")
        return
    if kind == "AlarmRepeated":
        if walk.phase in TERMINAL or walk.phase == "new":
            bad("a repeat of an ended case")
        return
    if kind in ENDINGS:
        to, allowed = ENDINGS[kind]
        if walk.phase not in allowed:
            bad("an ending not allowed here")
        walk.phase = to
        for task, state in walk.tasks.items():
            if state in ("dispatched", "accepted"):
                walk.tasks[task] = "replaced"
        return
    if kind in FLOW.get(walk.phase, {}):
        _case_step(walk, step, bad)
        return
    if kind in (
        "TaskDispatched",
        "TaskAccepted",
        "TaskCompleted",
        "TaskReturned",
        "TaskWithdrawn",
        "TaskNoted",
        *DEADLINE_ORDER,
    ):
        _task_step(walk, step, bad)
        return
    bad("not a step this phase allows")


def _case_step(walk: _Walk, step: Step, bad: Bad) -> None:
    kind = step.type
    if kind == "CaseHandled":
        if walk.previous != "TaskCompleted":
            bad("handled without a task completed in the same step")
        if walk.open_in_round():
            bad(f"handled with tasks still open: {walk.open_in_round()}")
    if kind == "CaseClosed" and walk.previous != "VerificationPassed":
        bad("closed without the verification passed in the same step")
    if kind == "CaseReopened" and walk.previous != "VerificationFailed":
        bad("reopened without a failed verification in the same step")
    if kind == "CaseDispatched":
        if walk.phase == "queued" and walk.round > 0:
            bad("a new round from the queue: a hand dispatch goes on with the round")
        walk.round += 1
    walk.phase = FLOW[walk.phase][kind]


def _task_step(walk: _Walk, step: Step, bad: Bad) -> None:
    kind, task = step.type, step.task
    if task is None:
        bad("a task event without a task")
        return
    if kind == "TaskDispatched":
        if task in walk.tasks:
            bad("the task was dispatched twice")
        if step.replaces is not None:
            if walk.phase != "dispatched":
                bad("a re-dispatch outside the dispatched phase")
            replaced = walk.tasks.get(step.replaces)
            if replaced is None:
                bad("it replaces a task that never was")
            elif replaced in ("dispatched", "accepted"):
                walk.tasks[step.replaces] = "replaced"
        elif walk.phase == "queued" and walk.round > 0:
            walk.phase = "dispatched"  # a hand dispatch in a round already started
        elif walk.phase != "dispatched" or walk.previous not in ("CaseDispatched", "TaskDispatched"):
            bad("a first dispatch not right after CaseDispatched")
        walk.tasks[task] = "dispatched"
        walk.task_round[task] = walk.round
        for name, moment in step.warn_at.items():
            walk.warn_at[(task, name)] = moment
        for name, moment in step.due.items():
            walk.due[(task, name)] = moment
        return
    state = walk.tasks.get(task)
    if state is None:
        bad("a step of a task never dispatched")
        return
    if walk.phase not in WORKING or (walk.phase == "queued" and walk.round == 0):
        bad("a task step outside the dispatched phase")
    if kind == "TaskNoted":
        if state not in ("dispatched", "accepted"):
            bad(f"a note on a {state} task")
        return
    if kind in DEADLINE_ORDER:
        _deadline_step(walk, step, state, bad)
        return
    following = TASK_FLOW.get(state, {})
    if kind not in following:
        bad(f"a {state} task cannot take this step")
        return
    walk.tasks[task] = following[kind]


def _deadline_step(walk: _Walk, step: Step, state: str, bad: Bad) -> None:
    assert step.task is not None
    kind = step.kind or ""
    if kind not in ("accept", "complete"):
        bad(f"unknown deadline kind {kind!r}")
        return
    if state not in ("dispatched", "accepted") or (kind == "accept" and state != "dispatched"):
        bad(f"an {kind} deadline of a {state} task")
    key = (step.task, kind)
    seen = walk.deadlines.setdefault(key, [])
    position = DEADLINE_ORDER.index(step.type)
    if step.type in seen:
        bad(f"the {kind} deadline fired twice")
    elif seen != list(DEADLINE_ORDER[:position]):
        bad(f"the {kind} deadline skipped a step: {seen} before it")
    seen.append(step.type)
    moment = (walk.warn_at if step.type == "DeadlineWarned" else walk.due).get(key)
    if step.at is not None and moment is not None and step.at < moment:
        bad(f"fired early: at {step.at.isoformat()}, its moment is {moment.isoformat()}")


def deadlines_fired(steps: list[Step]) -> dict[tuple[str, str], list[str]]:
    """(task, kind) -> the deadline steps it took, in order."""
    fired: dict[tuple[str, str], list[str]] = {}
    for step in steps:
        if step.type in DEADLINE_ORDER and step.task is not None:
            fired.setdefault((step.task, step.kind or ""), []).append(step.type)
    return fired
