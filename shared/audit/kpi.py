"""KPIs from the events alone, pure: on-time close rate, rework, returns, time to close, satisfaction.

Definitions (one place, so a report can cite them):
- population: cases reported in [from, to) that were dispatched at least once;
- a case's deadline: the latest `complete_by` of the tasks of its first round (a reopen or a
  return does not extend it);
- on-time close rate (按期结案率): cases closed by their deadline, over cases closed plus cases
  still open whose deadline has passed at `as_of`;
- rework rate: cases reopened at least once, over cases verified at least once;
- returns per case: tasks returned "not ours", over the population;
- time to close: from report to close, per category and per department that completed a task;
- satisfaction: the mean rating (1-5) and the share of 4 or 5, over rated cases.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from datetime import datetime

import msgspec

from shared.domain.events import (
    CaseClosed,
    CaseEvent,
    CaseRated,
    CaseReopened,
    CaseReported,
    TaskCompleted,
    TaskDispatched,
    TaskReturned,
    VerificationFailed,
    VerificationPassed,
)
from shared.store.records import RecordedEvent


class CaseFacts(msgspec.Struct, frozen=True, kw_only=True):
    case_id: str
    category: str
    reported_at: datetime
    deadline: datetime | None
    closed_at: datetime | None
    departments: tuple[str, ...]  # those that completed a task
    reopened: bool
    verified: bool
    returns: int
    rating: int | None


def facts(rows: Sequence[RecordedEvent]) -> CaseFacts | None:
    """What the KPIs need to know about one case, from its events; None for a stream without a report."""
    events: list[tuple[datetime, CaseEvent]] = [(r.recorded_at, r.event()) for r in rows]
    report = next((e for _, e in events if isinstance(e, CaseReported)), None)
    if report is None:
        return None
    first_round = [e.task.complete_by for _, e in events if isinstance(e, TaskDispatched) and e.round == 1]
    departments: list[str] = []
    for _, e in events:
        if isinstance(e, TaskCompleted) and e.department not in departments:
            departments.append(e.department)
    ratings = [e.score for _, e in events if isinstance(e, CaseRated)]
    return CaseFacts(
        case_id=str(report.case_id),
        category=report.category,
        reported_at=report.reported_at,
        deadline=max(first_round) if first_round else None,
        closed_at=next((at for at, e in events if isinstance(e, CaseClosed)), None),
        departments=tuple(departments),
        reopened=any(isinstance(e, CaseReopened) for _, e in events),
        verified=any(isinstance(e, VerificationPassed | VerificationFailed) for _, e in events),
        returns=sum(isinstance(e, TaskReturned) for _, e in events),
        rating=ratings[-1] if ratings else None,
    )


class Group(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    cases: int
    closed: int
    median_hours_to_close: float | None
    mean_hours_to_close: float | None


class Kpis(msgspec.Struct, frozen=True, kw_only=True):
    cases: int
    due: int  # closed, or open past the deadline
    on_time: int
    on_time_rate: float | None
    open_overdue: int
    verified: int
    reopened: int
    rework_rate: float | None
    returns: int
    returns_per_case: float | None
    rated: int
    mean_rating: float | None
    satisfied_share: float | None
    by_category: list[Group]
    by_department: list[Group]


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _hours(cases: Iterable[CaseFacts]) -> list[float]:
    return [(c.closed_at - c.reported_at).total_seconds() / 3600 for c in cases if c.closed_at is not None]


def _group(name: str, cases: list[CaseFacts]) -> Group:
    hours = _hours(cases)
    return Group(
        name=name,
        cases=len(cases),
        closed=len(hours),
        median_hours_to_close=statistics.median(hours) if hours else None,
        mean_hours_to_close=statistics.fmean(hours) if hours else None,
    )


def kpis(all_facts: Iterable[CaseFacts], *, start: datetime | None, end: datetime | None, as_of: datetime) -> Kpis:
    """The KPIs over cases reported in [start, end) and dispatched at least once, judged at `as_of`."""
    population = [
        f
        for f in all_facts
        if f.deadline is not None and (start is None or f.reported_at >= start) and (end is None or f.reported_at < end)
    ]
    closed = [f for f in population if f.closed_at is not None and f.closed_at <= as_of]
    closed_ids = {f.case_id for f in closed}
    overdue = [f for f in population if f.case_id not in closed_ids and f.deadline is not None and f.deadline < as_of]
    on_time = [f for f in closed if f.deadline is not None and f.closed_at is not None and f.closed_at <= f.deadline]
    verified = [f for f in population if f.verified]
    rated = [f.rating for f in population if f.rating is not None]
    categories: dict[str, list[CaseFacts]] = {}
    departments: dict[str, list[CaseFacts]] = {}
    for f in population:
        categories.setdefault(f.category, []).append(f)
        for d in f.departments:
            departments.setdefault(d, []).append(f)
    returns = sum(f.returns for f in population)
    return Kpis(
        cases=len(population),
        due=len(closed) + len(overdue),
        on_time=len(on_time),
        on_time_rate=_ratio(len(on_time), len(closed) + len(overdue)),
        open_overdue=len(overdue),
        verified=len(verified),
        reopened=sum(f.reopened for f in verified),
        rework_rate=_ratio(sum(f.reopened for f in verified), len(verified)),
        returns=returns,
        returns_per_case=_ratio(returns, len(population)),
        rated=len(rated),
        mean_rating=statistics.fmean(rated) if rated else None,
        satisfied_share=_ratio(sum(r >= 4 for r in rated), len(rated)),
        by_category=[_group(name, cases) for name, cases in sorted(categories.items())],
        by_department=[_group(name, cases) for name, cases in sorted(departments.items())],
    )
