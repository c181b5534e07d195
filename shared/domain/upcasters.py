"""What events stored under an older schema version say in today's shape (pure).

One function per step: each takes the stored JSON object of one event type at schema version
n and returns it as the code of version n + 1 would have recorded the same fact. They are
registered in `events.UPCASTERS` and run as events are decoded (see versioning.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

STREET_TEAM = "enforcement_{street}"  # in a rule: the enforcement team of the case's street
NO_STREET_TEAM = "city_management"  # who a rule's street team was when the street was unknown

# The routing policy versions that were shipped (shared/domain/data/rules.toml; a version is
# its `version` plus the digest of the file's bytes), each with the rules whose work the
# reporter verified: the departments as a dispatch by that rule names them (lead first) and
# its priority. Every other rule of those versions was verified by the grid worker, and so was
# a dispatch that no rule made (a category the policy did not know).
# History, not configuration: it never changes. Later versions of the rules record who verifies
# on the dispatch itself (CaseDispatched v2).
REPORTER_VERIFIED: dict[str, frozenset[tuple[tuple[str, ...], str]]] = {
    "kaizhou-2026.11-1+4bdb8df254ff": frozenset(
        {
            (("environment", "police"), "normal"),  # noise_complaint
            (("housing", "environment"), "high"),  # night_construction_noise
            (("justice", "police"), "normal"),  # neighbour_dispute
            (("police",), "low"),  # dog_nuisance
            (("market_regulation",), "high"),  # food_safety
            (("market_regulation", STREET_TEAM), "normal"),  # unlicensed_business
            (("tax",), "low"),  # invoice_refused
            (
                (
                    "police",
                    "discipline_inspection",
                    "court",
                    "procuratorate",
                    "organization",
                    "political_legal",
                    "tax",
                    "market_regulation",
                ),
                "normal",
            ),  # background_check
        }
    ),
}


def case_dispatched_v2(v1: dict[str, Any]) -> dict[str, Any]:
    """CaseDispatched v1 → v2: add `verifier`, who verifies the round's work.

    v1 did not record it: verification looked it up when the work was handled, in the rule of
    the case's category. A v1 dispatch records not the category but its policy version, its
    departments and its priority, and in the rules of a shipped version those name the rule
    that made the dispatch, so they name its verifier (`REPORTER_VERIFIED`).
    """
    return {**v1, "verifier": verifier_of_v1(v1.get("policy_version"), v1.get("departments"), v1.get("priority"))}


def verifier_of_v1(policy_version: object, departments: object, priority: object) -> str:
    """Who verified a v1 dispatch's work, by the rules of the policy version it records.

    "grid_worker" unless those rules name the reporter for a dispatch of these departments at
    this priority. Two kinds of dispatch get "grid_worker", the rules file's default verifier,
    without the rules saying so, because nothing recorded tells their rule: one under a policy
    version that was never shipped (an operator's own rules file, of which this code has no
    copy), and one that is no rule's own (a dispatcher's choice of departments or priority, or
    a reopened round whose departments changed through a return).
    """
    rules = REPORTER_VERIFIED.get(policy_version) if isinstance(policy_version, str) else None
    if not rules or not isinstance(departments, list | tuple) or not isinstance(priority, str):
        return "grid_worker"
    if any(_dispatched_by(rule, departments, priority, rule_priority) for rule, rule_priority in rules):
        return "reporter"
    return "grid_worker"


def _dispatched_by(rule: Sequence[str], departments: Sequence[object], priority: str, rule_priority: str) -> bool:
    """Whether a dispatch to `departments` at `priority` is the one `rule` makes, in some street."""
    if priority != rule_priority or len(departments) != len(rule):
        return False
    return all(d == r or (r == STREET_TEAM and _street_team(d)) for d, r in zip(departments, rule, strict=True))


def _street_team(department: object) -> bool:
    return isinstance(department, str) and (department.startswith("enforcement_") or department == NO_STREET_TEAM)
