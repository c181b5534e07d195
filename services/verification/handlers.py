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
from shared.domain.case import Case, Refused, replay
from shared.domain.events import Attachment, CaseHandled
from shared.messaging.bus import Delivered
from shared.runtime.service import CLOCK, POOL, SETTINGS, STORE
from shared.store.eventstore import ConcurrencyError, EventStore, Metadata, Transaction, case_stream
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


def _visible(principal: Principal, row: Any) -> bool:
    match principal.role:
        case Role.GRID_WORKER:
            return row["grid"] in principal.grids
        case Role.REPORTER_BACKEND:
            return bool(row["created_by"] == principal.sub)
        case _:
            return True  # dispatchers, supervisors, auditors (the access table keeps out the rest)


async def get_verification(request: web.Request) -> web.Response:
    row = await request.app[POOL].fetchrow(
        "SELECT * FROM verification_view WHERE verification_id = $1", uuid_param(request)
    )
    if row is None or not _visible(principal_of(request), row):
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


def _check_may_record(principal: Principal, row: Any) -> None:
    if not _visible(principal, row):
        raise not_found()  # another grid's or another backend's: absent, not forbidden (no existence leak)
    match principal.role:
        case Role.GRID_WORKER if not can_verify_in(principal, row["grid"]):
            raise forbidden("only a grid worker of the case's grid may verify it")
        case Role.REPORTER_BACKEND if row["kind"] != "reporter":
            raise forbidden("a reporter may confirm only reporter confirmations of cases it reported")


async def _record(
    request: web.Request, principal: Principal, *, passed: bool, reason: str, evidence: tuple[Attachment, ...]
) -> web.Response:
    verification_id = uuid_param(request)
    row = await request.app[POOL].fetchrow(
        "SELECT * FROM verification_view WHERE verification_id = $1", verification_id
    )
    if row is None:
        raise not_found()
    _check_may_record(principal, row)
    command = RecordVerification(
        case_id=row["case_id"],
        verification_id=verification_id,
        by=principal.actor,
        passed=passed,
        reason=reason,
        evidence=evidence,
    )
    metadata = Metadata(correlation_id=uuid4(), actor=principal.actor)
    clock = request.app[CLOCK]
    for _ in range(5):
        try:
            async with request.app[STORE].transaction() as tx:
                case, version = await tx.load(command.case_id)
                try:
                    events = decide(case, command)
                except Refused as exc:
                    raise ProblemError(409, "Conflict", exc.reason, kind="conflict") from None
                result = await tx.append(
                    case_stream(command.case_id), events, expected_version=version, metadata=metadata
                )
                case = replay(events, case)
                await project_verification(tx.conn, case, result.version, clock())
        except ConcurrencyError:
            continue
        assert case.verification is not None
        log.info(
            "verification_recorded",
            case_id=str(command.case_id),
            verification_id=str(verification_id),
            passed=command.passed,
            changed=bool(events),
        )
        recorded = api.Recorded(
            verification_id=verification_id,
            case_id=command.case_id,
            version=result.version,
            outcome=case.verification.outcome,
            changed=bool(events),
        )
        return json_response(recorded)
    raise ProblemError(503, "Busy", "the case is changing fast; retry", headers={"Retry-After": "1"})


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
    for _ in range(5):
        try:
            async with store.transaction() as tx:
                records = await tx.read_stream(case_stream(case_id))
                case = replay(r.event() for r in records)
                version = records[-1].version if records else 0
                current = case.verification is not None and case.verification.id == verification_id
                events = decide(case, CloseByDefault(case_id=case_id, now=now)) if current else []
                if events:
                    requested = next(r for r in reversed(records) if r.type == "VerificationRequested")
                    metadata = Metadata(
                        correlation_id=records[-1].metadata.correlation_id,
                        causation_id=requested.event_id,
                        actor=ACTOR,
                    )
                    # Ids fixed by the verification: two timers, or one restarted, append once.
                    ids = [uuid5(verification_id, f"default-close:{i}") for i in range(len(events))]
                    result = await tx.append(
                        case_stream(case_id), events, expected_version=version, metadata=metadata, event_ids=ids
                    )
                    case, version = replay(events, case), result.version
                    events = [] if result.duplicate else events
                await project_verification(tx.conn, case, version, now)  # a stale row is corrected too
        except ConcurrencyError:
            continue
        if events:
            log.info("verification_closed_by_default", case_id=str(case_id), verification_id=str(verification_id))
        return bool(events)
    return False


async def default_close_loop(app: web.Application, stop: asyncio.Event) -> None:
    store, clock, interval = app[STORE], app[CLOCK], app[SETTINGS].deadline_interval
    while not stop.is_set():
        try:
            await close_due_verifications(store, clock())
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("default_close_failed", error=str(exc) or type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
