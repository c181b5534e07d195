"""Who verifies a case of a category: the grid worker, or the reporter (from the routing policy)."""

from __future__ import annotations

from collections.abc import Callable

from services.verification.decide import Kind

KindOf = Callable[[str, str | None], Kind]

# Used when the routing policy has no rule for a category (or cannot be imported).
REPORTER_CONFIRMED = frozenset({"noise_complaint", "neighbour_dispute"})


def builtin_kind(category: str, street: str | None = None) -> Kind:
    return "reporter" if category in REPORTER_CONFIRMED else "grid_worker"


def load_kind_of(rules_path: str = "") -> KindOf:
    """The routing policy's `verify_by` per category and street; the built-in set without one."""
    try:
        from services.routing.rules import load_policy  # routing owns the policy file
    except ImportError:
        return builtin_kind
    policy = load_policy(rules_path or None)

    def kind_of(category: str, street: str | None) -> Kind:
        rule = policy.route(category, street)
        if rule is None:
            return builtin_kind(category)
        return "reporter" if rule.verify_by == "reporter" else "grid_worker"

    return kind_of
