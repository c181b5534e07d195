"""Timelines, KPIs and exports from events alone: no I/O."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from msgspec.structs import replace

from shared.audit import export
from shared.audit.checkpoints import public_bytes
from shared.audit.kpi import facts, kpis
from shared.audit.timeline import timeline
from shared.domain import events as ev
from shared.store.eventstore import RecordedEvent
from tests import examples
from tests.audit_log import chained
from tests.unit.test_audit_chain import PUBLIC, checkpoint_over

HOUR = timedelta(hours=1)
T0 = examples.NOW  # accept_by is T0 + 2 h, complete_by T0 + 1 day (examples.assignment)


def closed_case(case_id: UUID = examples.CASE_ID, **extra: ev.CaseEvent) -> list[ev.CaseEvent]:
    return [
        replace(e, case_id=case_id)
        for e in [
            *examples.until_verifying(),
            ev.VerificationPassed(case_id=case_id, verification_id=examples.VERIFICATION_ID, by="gw"),
            ev.CaseClosed(case_id=case_id),
        ]
    ]


def test_a_timeline_shows_each_stage_and_judges_its_deadline() -> None:
    # reported, dispatched at +10 min, task dispatched +20 min, accepted at +3 h (late), completed +5 h (on time)
    times = [
        T0,
        T0 + timedelta(minutes=10),
        T0 + timedelta(minutes=10),
        T0 + 3 * HOUR,
        T0 + 5 * HOUR,
        T0 + 5 * HOUR,
        T0 + 5 * HOUR,
        T0 + 6 * HOUR,
        T0 + 6 * HOUR,
    ]
    line = timeline(chained(closed_case(), times=times), now=T0 + 48 * HOUR)
    spans = {s.name: s for s in line.spans}
    assert spans["to dispatch"].took == timedelta(minutes=10)
    assert spans["to accept (sanitation, round 1)"].met is False
    assert spans["to complete (sanitation, round 1)"].took == 2 * HOUR
    assert spans["to complete (sanitation, round 1)"].met is True
    assert spans["to verify (round 1, passed)"].took == HOUR
    assert spans["to close (whole case)"].took == 6 * HOUR
    assert line.status == "closed" and line.steps[1].since_previous == timedelta(minutes=10)
    assert line.steps[0].happened_at == T0  # the report's own time


def test_an_open_stage_past_its_deadline_is_missed_and_before_it_undecided() -> None:
    rows = chained(examples.until_verifying()[:3], step=timedelta(minutes=1))
    assert {s.name: s.met for s in timeline(rows, now=T0 + HOUR).spans}["to accept (sanitation, round 1)"] is None
    assert {s.name: s.met for s in timeline(rows, now=T0 + 3 * HOUR).spans}["to accept (sanitation, round 1)"] is False


def case_rows(n: int, events: list[ev.CaseEvent], step: timedelta) -> list[RecordedEvent]:
    case_id = UUID(int=n)
    return chained([replace(e, case_id=case_id) for e in events], case_id=case_id, step=step)


def test_kpis_count_open_overdue_cases_against_the_on_time_rate() -> None:
    reopened = [
        *examples.until_verifying(),
        ev.VerificationFailed(case_id=examples.CASE_ID, verification_id=examples.VERIFICATION_ID, by="gw", reason="x"),
        ev.CaseReopened(case_id=examples.CASE_ID, round=2, departments=("sanitation",)),
        examples.task_returned(),
        *closed_case()[-2:],
        ev.CaseRated(case_id=examples.CASE_ID, score=5),
    ]
    cases = [
        case_rows(1, closed_case(), timedelta(minutes=10)),  # closed in 80 min: on time
        case_rows(2, closed_case(), timedelta(hours=4)),  # closed after 32 h: late (due T0 + 24 h)
        case_rows(3, reopened, timedelta(minutes=10)),  # reopened, a return, rated 5, on time
        case_rows(4, examples.until_verifying()[:4], timedelta(minutes=10)),  # open, past due at +2 days
        case_rows(5, [examples.case_reported()], timedelta(minutes=10)),  # never dispatched: not counted
    ]
    found = [f for f in (facts(rows) for rows in cases) if f is not None]
    result = kpis(found, start=None, end=None, as_of=T0 + 48 * HOUR)
    assert (result.cases, result.due, result.on_time, result.open_overdue) == (4, 4, 2, 1)
    assert result.on_time_rate == 0.5
    assert (result.reopened, result.verified, result.rework_rate) == (1, 3, 1 / 3)
    assert result.returns_per_case == 0.25
    assert (result.rated, result.mean_rating, result.satisfied_share) == (1, 5.0, 1.0)
    [sanitation] = result.by_department
    assert sanitation.closed == 3 and sanitation.median_hours_to_close is not None
    early = kpis(found, start=None, end=None, as_of=T0 + 2 * HOUR)
    assert early.due == 2 and early.open_overdue == 0  # cases 1 and 3 had closed; nothing was past due yet


def test_an_export_verifies_without_a_database_and_an_edited_one_does_not() -> None:
    rows = chained(closed_case())
    checkpoint = checkpoint_over(rows)
    doc = export.build(examples.CASE_ID, rows, checkpoint, checkpoint.streams, PUBLIC, T0)
    text = msgspec.json.encode(doc)
    again = msgspec.json.decode(text, type=export.CaseExport)
    assert export.verify(again, PUBLIC).ok

    edited = msgspec.json.decode(text.replace(b"sanitation", b"water", 1), type=export.CaseExport)
    assert [f.kind for f in export.verify(edited, PUBLIC).findings] == ["edited"]

    # A forger who recomputes every hash still cannot reach the signed stream root.
    forged_rows = chained(
        [replace(e, description="改过") if isinstance(e, ev.CaseReported) else e for e in closed_case()]
    )
    forged = replace(doc, events=[export.exported(r) for r in forged_rows])
    assert [f.kind for f in export.verify(forged, PUBLIC).findings] == ["stream"]

    stranger = public_bytes(Ed25519PrivateKey.generate().public_key())
    assert [f.kind for f in export.verify(doc, stranger).findings] == ["signature"]
