"""Turning a rule into task assignments with deadlines (pure: the time and ids come in)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import UUID

from shared.domain.case import Case
from shared.domain.events import TaskAssignment
from shared.domain.rules import Policy, Rule, WorkingCalendar

# When no rule knows the category (a dispatcher's hand dispatch): a working day to accept, five to complete.
DEFAULT_RULE = Rule(
    category="*",
    lead="",
    co=(),
    priority="normal",
    accept_hours=7.0,
    complete_hours=35.0,
    natural_time=False,
    verify_by="grid_worker",
    fallbacks=(),
)
# Categories the reporter verifies even under a policy that has no rule for them.
REPORTER_CONFIRMED = frozenset({"noise_complaint", "neighbour_dispute"})


def assignments(
    policy: Policy,
    calendar: WorkingCalendar,
    rule: Rule | None,
    departments: Sequence[str],
    now: datetime,
    task_id: Callable[[str], UUID],
    warn_share: float,
) -> tuple[TaskAssignment, ...]:
    rule = rule or DEFAULT_RULE
    due = policy.deadlines(rule, now, calendar, warn_share)
    return tuple(
        TaskAssignment(
            task_id=task_id(department),
            department=department,
            lead=department == (rule.lead or departments[0]),
            accept_by=due.accept_by,
            complete_by=due.complete_by,
            accept_warn_at=due.accept_warn_at,
            complete_warn_at=due.complete_warn_at,
        )
        for department in dict.fromkeys(departments)
    )


def verifier_for(rule: Rule | None, category: str) -> str:
    """Who verifies the work of a dispatch: its rule's verifier.

    Without a rule, the grid worker, except for the complaints only their reporter can confirm.
    """
    if rule is not None:
        return rule.verify_by
    return "reporter" if category in REPORTER_CONFIRMED else "grid_worker"


def rule_for(policy: Policy, case: Case) -> Rule | None:
    street = case.location.street or policy.street_of(case.location.grid)
    return policy.route(case.category, street)


def tried_departments(case: Case) -> set[str]:
    return {t.department for t in case.tasks}
