"""A case's timeline, pure: each step, how long each stage took, and whether each deadline was met."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec

from shared.domain.case import replay
from shared.domain.events import (
    AlarmRepeated,
    CaseClosed,
    CaseDispatched,
    CaseEvent,
    CaseReported,
    TaskAccepted,
    TaskCompleted,
    TaskDispatched,
    TaskReturned,
    VerificationFailed,
    VerificationPassed,
    VerificationRequested,
)
from shared.store.records import RecordedEvent


def event_time(event: CaseEvent) -> datetime | None:
    """When it happened, by the event's own data (a report's occurrence or receipt, an alarm's repeat)."""
    match event:
        case CaseReported(occurred_at=occurred, reported_at=reported):
            return occurred or reported
        case AlarmRepeated(occurred_at=occurred):
            return occurred
        case _:
            return None


class Step(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    position: int
    type: str
    recorded_at: datetime
    happened_at: datetime | None
    actor: str
    since_previous: timedelta | None


class Span(msgspec.Struct, frozen=True, kw_only=True):
    """One stage: from `start` to `end` (None: still open at the time asked), against `due`."""

    name: str
    start: datetime
    end: datetime | None
    due: datetime | None = None
    met: bool | None = None  # None: no deadline, or open and not yet due

    @property
    def took(self) -> timedelta | None:
        return self.end - self.start if self.end else None


class Timeline(msgspec.Struct, frozen=True, kw_only=True):
    case_id: str
    status: str
    version: int
    steps: list[Step]
    spans: list[Span]


def _judge(end: datetime | None, due: datetime | None, now: datetime) -> bool | None:
    if due is None:
        return None
    if end is not None:
        return end <= due
    return False if now > due else None


def timeline(rows: Sequence[RecordedEvent], now: datetime) -> Timeline:
    """The case's steps and stage spans, as of `now` (open stages are judged against it)."""
    events = [r.event() for r in rows]
    steps, previous = [], None
    for row, event in zip(rows, events, strict=True):
        steps.append(
            Step(
                version=row.version,
                position=row.position,
                type=row.type,
                recorded_at=row.recorded_at,
                happened_at=event_time(event),
                actor=row.metadata.actor,
                since_previous=row.recorded_at - previous if previous else None,
            )
        )
        previous = row.recorded_at
    case = replay(events)
    return Timeline(
        case_id=str(case.id),
        status=str(case.status),
        version=rows[-1].version if rows else 0,
        steps=steps,
        spans=spans(rows, events, now),
    )


def spans(rows: Sequence[RecordedEvent], events: Sequence[CaseEvent], now: datetime) -> list[Span]:
    at = [r.recorded_at for r in rows]
    out: list[Span] = []
    reported = next((at[i] for i, e in enumerate(events) if isinstance(e, CaseReported)), None)
    if reported is None:
        return out
    dispatched = next((at[i] for i, e in enumerate(events) if isinstance(e, CaseDispatched)), None)
    out.append(Span(name="to dispatch", start=reported, end=dispatched))
    tasks: dict[Any, dict[str, Any]] = {}
    for i, e in enumerate(events):
        match e:
            case TaskDispatched(task=t, round=round_):
                tasks[t.task_id] = {"task": t, "round": round_, "dispatched": at[i]}
            case TaskAccepted(task_id=tid) if tid in tasks:
                tasks[tid].setdefault("accepted", at[i])
            case TaskCompleted(task_id=tid) if tid in tasks:
                tasks[tid].setdefault("completed", at[i])
            case TaskReturned(task_id=tid) if tid in tasks:
                tasks[tid].setdefault("returned", at[i])
    for info in tasks.values():
        t, label = info["task"], f"{info['task'].department}, round {info['round']}"
        end_accept = info.get("accepted") or info.get("returned")
        out.append(
            Span(
                name=f"to accept ({label})" + (" - returned" if "returned" in info else ""),
                start=info["dispatched"],
                end=end_accept,
                due=t.accept_by,
                met=_judge(end_accept, t.accept_by, now) if "returned" not in info else None,
            )
        )
        if "accepted" in info:
            completed = info.get("completed")
            out.append(
                Span(
                    name=f"to complete ({label})",
                    start=info["accepted"],
                    end=completed,
                    due=t.complete_by,
                    met=_judge(completed, t.complete_by, now),
                )
            )
    requested: Requested | None = None
    for i, e in enumerate(events):
        if isinstance(e, VerificationRequested):
            requested = (at[i], e.respond_by, e.round)
        elif isinstance(e, VerificationPassed | VerificationFailed) and requested:
            verdict = "passed" if isinstance(e, VerificationPassed) else "failed"
            out.append(_verify_span(requested, at[i], verdict, now))
            requested = None
    if requested:
        out.append(_verify_span(requested, None, "pending", now))
    closed = next((at[i] for i, e in enumerate(events) if isinstance(e, CaseClosed)), None)
    out.append(Span(name="to close (whole case)", start=reported, end=closed))
    return out


Requested = tuple[datetime, datetime | None, int]  # when, respond by, round


def _verify_span(requested: Requested, end: datetime | None, verdict: str, now: datetime) -> Span:
    start, due, round_ = requested
    return Span(name=f"to verify (round {round_}, {verdict})", start=start, end=end, due=due, met=_judge(end, due, now))
