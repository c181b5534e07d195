"""verification's I/O shell: HTTP views, the CaseHandled consumer, the default-close timer, the read model."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4, uuid5

import asyncpg
import structlog
from aiohttp import web

from services.verification import api
from services.verification.decide import CloseByDefault, RecordVerification, RequestVerification, decide
from shared.base.clock import Clock
from shared.domain.case import Case, replay
from shared.domain.events import Attachment, CaseEvent, CaseHandled
from shared.messaging.bus import Delivered
from shared.runtime.service import CLOCK, POOL, SETTINGS, STORE
from shared.store.commands import Busy, case_of, run_command
from shared.store.eventstore import EventStore, Metadata, RecordedEvent, Transaction, case_stream
from shared.web.access import can_verify_in
from shared.web.auth import Principal, Role, forbidden, principal_of
from shared.web.http import ProblemError, decode_body, invalid, json_response, parse_query, uuid_param
from shared.web.paging import Page

log = structlog.get_logger()
CONSUMER = "verification"
ACTOR = "service:verification"
RESPOND_WITHIN = web.AppKey("respond_within", timedelta)


def not_found() -> ProblemError:
    return ProblemError(404, "Not found", "no such verification", kind="not-found")


# --- reading verifications ------------------------------------------------------------


def _visible(principal: Principal, grid: str | None, created_by: str) -> bool:
    match principal.role:
        case Role.GRID_WORKER:
            return grid in principal.grids
        case Role.REPORTER_BACKEND:
            return created_by == principal.sub
        case _:
            return True  # dispatchers, supervisors, auditors (the access table keeps out the rest)


async def get_verification(request: web.Request) -> web.Response:
    row = await request.app[POOL].fetchrow(
        "SELECT * FROM verification_view WHERE verification_id = $1", uuid_param(request)
    )
    if row is None or not _visible(principal_of(request), row["grid"], row["created_by"]):
        raise not_found()  # absent, not forbidden: no existence leak
    return json_response(api.verification_out(row))


async def list_verifications(request: web.Request) -> web.Response:
    principal = principal_of(request)
    query = parse_query(request, api.VerificationsQuery)
    page = Page("verification_view", "requested_at", "verification_id")
    if query.grid:
        page.where("grid = {}", query.grid)
    if query.status:
        page.where("outcome = {}", query.status)
    if principal.role is Role.GRID_WORKER:
        page.where("grid = ANY({})", list(principal.grids))
    elif principal.role is Role.REPORTER_BACKEND:
        page.where("created_by = {}", principal.sub)
    rows, next_cursor = await page.fetch(request.app[POOL], query.cursor, query.page_size)
    items = [api.verification_out(r) for r in rows]
    return json_response(api.VerificationPage(items=items, next_cursor=next_cursor))


# --- recording a verdict --------------------------------------------------------------


async def pass_verification(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = await decode_body(request, api.PassIn)
    if principal.role is Role.GRID_WORKER and not body.evidence:
        raise invalid("a grid worker's pass needs at least one photo - at `$.evidence`")
    evidence = tuple(a.attachment() for a in body.evidence)
    return await _record(request, principal, passed=True, reason=body.note, evidence=evidence)


async def fail_verification(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = await decode_body(request, api.FailIn)
    evidence = tuple(a.attachment() for a in body.evidence)
    return await _record(request, principal, passed=False, reason=body.reason, evidence=evidence)


def _check_may_record(principal: Principal, case: Case, verification_id: UUID) -> None:
    # The case's verification is this one, or one of an earlier round (decide() refuses that:
    # its grid was the case's, and only the current one's kind matters).
    current = case.verification if case.verification and case.verification.id == verification_id else None
    grid = current.grid if current else case.location.grid
    if not _visible(principal, grid, case.created_by):
        raise not_found()  # another grid's or another backend's: absent, not forbidden (no existence leak)
    match principal.role:
        case Role.GRID_WORKER if not can_verify_in(principal, grid):
            raise forbidden("only a grid worker of the case's grid may verify it")
        case Role.REPORTER_BACKEND if current and current.kind != "reporter":
            raise forbidden("a reporter may confirm only reporter confirmations of cases it reported")


async def _record(
    request: web.Request, principal: Principal, *, passed: bool, reason: str, evidence: tuple[Attachment, ...]
) -> web.Response:
    verification_id = uuid_param(request)
    # The log's own index, not verification_view: a verification the log holds is found at once.
    case_id = await case_of(request.app[STORE], verification_id, "verification")
    if case_id is None:
        raise not_found()
    command = RecordVerification(
        case_id=case_id,
        verification_id=verification_id,
        by=principal.actor,
        passed=passed,
        reason=reason,
        evidence=evidence,
    )

    def decided(case: Case) -> list[CaseEvent]:
        _check_may_record(principal, case, verification_id)
        return decide(case, command)

    clock = request.app[CLOCK]
    outcome = await run_command(
        request.app[STORE],
        case_id,
        decided,
        metadata=Metadata(correlation_id=uuid4(), actor=principal.actor),
        after=lambda tx, case, version: project_verification(tx.conn, case, version, clock()),
    )
    verification = outcome.case.verification
    assert verification is not None
    log.info(
        "verification_recorded",
        case_id=str(case_id),
        verification_id=str(verification_id),
        passed=command.passed,
        changed=bool(outcome.events),
    )
    recorded = api.Recorded(
        verification_id=verification_id,
        case_id=case_id,
        version=outcome.version,
        outcome=verification.outcome,
        changed=bool(outcome.events),
    )
    return json_response(recorded)


# --- the consumer: request on CaseHandled, keep the read model ------------------------


async def on_case_event(tx: Transaction, msg: Delivered, *, respond_within: timedelta, clock: Clock) -> None:
    """CaseHandled asks for a verification; every subscribed event refreshes the read model."""
    case, version = await tx.load(msg.case_id)
    if not case.exists:
        return
    if isinstance(msg.event, CaseHandled):
        command = RequestVerification(
            case_id=msg.case_id,
            now=clock(),
            respond_within=respond_within,
        )
        events = decide(case, command)
        if events:
            result = await tx.append(
                case_stream(msg.case_id),
                events,
                expected_version=version,
                metadata=Metadata(correlation_id=msg.metadata.correlation_id, causation_id=msg.event_id, actor=ACTOR),
                event_ids=[uuid5(msg.event_id, f"verification:{i}") for i in range(len(events))],
            )
            case, version = replay(events, case), result.version
        log.info(
            "verification_requested" if events else "verification_not_requested",
            case_id=str(msg.case_id),
            kind=case.verifier,
            status=str(case.status),
        )
    await project_verification(tx.conn, case, version, clock())


async def project_verification(conn: Any, case: Case, version: int, at: datetime) -> None:
    """Write the case's current verification row (only ever forward: older versions change nothing)."""
    verification = case.verification
    if verification is None:
        return
    outcome = verification.outcome
    if outcome == "pending" and case.is_terminal:
        outcome = "withdrawn"  # cancelled, rejected or merged while it waited
    await conn.execute(
        """INSERT INTO verification_view (verification_id, case_id, round, kind, grid, outcome, respond_by,
                                          created_by, category, case_version, requested_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
           ON CONFLICT (verification_id) DO UPDATE SET
               outcome = excluded.outcome, case_version = excluded.case_version, updated_at = excluded.updated_at
           WHERE verification_view.case_version < excluded.case_version""",
        verification.id,
        case.id,
        verification.round,
        verification.kind,
        verification.grid,
        outcome,
        verification.respond_by,
        case.created_by,
        case.category,
        version,
        at,
    )


# --- the timer: unanswered reporter confirmations close by default --------------------


async def close_due_verifications(store: EventStore, now: datetime, limit: int = 100) -> int:
    """Close every reporter confirmation past its respond_by; the number closed now."""
    rows = await store.pool.fetch(
        """SELECT verification_id, case_id FROM verification_view
           WHERE outcome = 'pending' AND kind = 'reporter' AND respond_by <= $1
           ORDER BY respond_by LIMIT $2""",
        now,
        limit,
    )
    closed = 0
    for row in rows:
        closed += await close_by_default(store, row["case_id"], row["verification_id"], now)
    return closed


async def close_by_default(store: EventStore, case_id: UUID, verification_id: UUID, now: datetime) -> bool:
    def decided(case: Case) -> list[CaseEvent]:
        current = case.verification is not None and case.verification.id == verification_id
        return decide(case, CloseByDefault(case_id=case_id, now=now)) if current else []

    def caused(records: list[RecordedEvent]) -> Metadata:
        requested = next(r for r in reversed(records) if r.type == "VerificationRequested")
        return Metadata(
            correlation_id=records[-1].metadata.correlation_id, causation_id=requested.event_id, actor=ACTOR
        )

    outcome = await run_command(
        store,
        case_id,
        decided,
        metadata=caused,
        # Ids fixed by the verification: two timers, or one restarted, append once.
        event_ids=lambda events: [uuid5(verification_id, f"default-close:{i}") for i in range(len(events))],
        after=lambda tx, case, version: project_verification(tx.conn, case, version, now),  # a stale row too
    )
    if outcome.events:
        log.info("verification_closed_by_default", case_id=str(case_id), verification_id=str(verification_id))
    return bool(outcome.events)


async def default_close_loop(app: web.Application, stop: asyncio.Event) -> None:
    store, clock, interval = app[STORE], app[CLOCK], app[SETTINGS].deadline_interval
    while not stop.is_set():
        try:
            await close_due_verifications(store, clock())
        except (OSError, asyncpg.PostgresError, Busy) as exc:  # the next round tries again
            log.warning("default_close_failed", error=str(exc) or type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
