"""intake's I/O shell: the HTTP views and the consumer that keeps the case list."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid4

import msgspec
import structlog
from aiohttp import web

from services.intake import api, privacy
from services.intake.decide import CancelCase, RateCase, RepeatAlarm, ReportCase, decide
from shared.domain.case import Case, Refused, replay
from shared.domain.events import AlarmRepeated, Attachment, CaseEvent, Device, Location
from shared.messaging.bus import Delivered
from shared.personal.pii import Reporter, Vault
from shared.runtime.service import CLOCK, POOL, STORE
from shared.store.commands import retrying, run_command
from shared.store.eventstore import ConcurrencyError, Metadata, Transaction, case_stream
from shared.web.access import can_read_case
from shared.web.auth import Principal, Role, forbidden, principal_of
from shared.web.http import ProblemError, decode_body, invalid, json_response, parse_query, uuid_param
from shared.web.paging import Page
from shared.web.ratelimit import LOCAL

log = structlog.get_logger()
VAULT = web.AppKey("vault", Vault)
CONSUMER = "intake"
_encoder = msgspec.json.Encoder()


class _KeyTaken(ConcurrencyError):
    """Another request with the same Idempotency-Key committed first: look for its answer, or try again."""


def not_found() -> ProblemError:
    return ProblemError(404, "Not found", "no such case", kind="not-found")


def metadata_for(principal: Principal, correlation_id: UUID | None = None) -> Metadata:
    return Metadata(correlation_id=correlation_id or uuid4(), actor=principal.actor)


# --- POST /v1/reports -----------------------------------------------------------------


async def post_report(request: web.Request) -> web.Response:
    principal = principal_of(request)
    key = request.headers.get("Idempotency-Key", "").strip().strip('"')
    if len(key) > 255:
        raise ProblemError(400, "Invalid Idempotency-Key", "at most 255 characters", kind="idempotency-key")
    body = await request.read()
    fingerprint = hashlib.sha256(request.method.encode() + request.path.encode() + body).digest()
    if key and (stored := await _stored_answer(request, principal.sub, key, fingerprint)):
        return stored
    report = await decode_body(request, api.ReportIn)
    _check_report(report)

    sealed = None
    if report.reporter and (report.reporter.name or report.reporter.phone):
        # Its own statement, before the report: the reporter's key exists before any event names it.
        reporter = Reporter(name=report.reporter.name, phone=report.reporter.phone)
        sealed = await privacy.seal_reporter(request, request.app[VAULT], reporter)
    command = ReportCase(
        case_id=uuid4(),
        source=report.source,
        category=report.category,
        description=report.description,
        location=Location(
            grid=report.location.grid,
            lat=report.location.lat,
            lon=report.location.lon,
            address=report.location.address,
        ),
        reported_at=request.app[CLOCK](),
        created_by=principal.sub,
        occurred_at=report.occurred_at,
        reporter=sealed,
        attachments=tuple(Attachment(url=a.url, sha256=a.sha256, media_type=a.media_type) for a in report.attachments),
        device=Device(id=report.device.id, alarm=report.device.alarm) if report.device else None,
    )

    async def record() -> tuple[int, api.ReportAccepted] | web.Response:
        try:
            return await _record_report(request, principal, command, key, fingerprint)
        except ConcurrencyError:
            if key and (stored := await _stored_answer(request, principal.sub, key, fingerprint)):
                return stored  # the same request, committed first by a twin
            raise

    recorded = await retrying(record)
    if isinstance(recorded, web.Response):
        return recorded
    status, accepted = recorded
    log.info("report_recorded", case_id=str(accepted.case_id), merged=accepted.merged, category=command.category)
    return json_response(accepted, status=status, headers={"Location": f"/v1/cases/{accepted.case_id}"})


def _check_report(report: api.ReportIn) -> None:
    location = report.location
    if location.grid is None and (location.lat is None or location.lon is None):
        raise invalid("a location needs a grid, or both lat and lon", at="/location")
    if report.source == "sensor" and report.device is None:
        raise invalid("a sensor report names its device", at="/device")


async def _record_report(
    request: web.Request, principal: Principal, command: ReportCase, key: str, fingerprint: bytes
) -> tuple[int, api.ReportAccepted]:
    store = request.app[STORE]
    metadata = metadata_for(principal)
    if not key and command.device is None:
        return await _record_plain(request, command, metadata)
    async with store.transaction() as tx:
        device_key = f"{command.device.id}\x1f{command.device.alarm}" if command.device else None
        accepted: api.ReportAccepted | None = None
        status = 201
        if device_key:
            # Repeats of one alarm queue up here instead of racing for the case's next version.
            # An advisory lock takes no transaction id, so the events INSERT stays the first write.
            await tx.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", device_key)
            open_case = await tx.conn.fetchval("SELECT case_id FROM open_alarms WHERE device_key = $1", device_key)
            if open_case is not None:
                accepted = await _merge_alarm(tx, open_case, command, metadata)
                status = 202
        if accepted is None:
            events = decide(Case(), command)
            result = await tx.append(case_stream(command.case_id), events, expected_version=0, metadata=metadata)
            if device_key:
                await tx.conn.execute("DELETE FROM open_alarms WHERE device_key = $1", device_key)
                inserted = await tx.conn.fetchval(
                    "INSERT INTO open_alarms VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
                    device_key,
                    command.case_id,
                )
                if not inserted:
                    raise ConcurrencyError("another alarm of this device opened a case first")
            accepted = api.ReportAccepted(case_id=command.case_id, status="reported", version=result.version)
        if key:
            stored = await tx.conn.fetchval(
                """INSERT INTO idempotency_keys (caller, key, fingerprint, status, body)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true""",
                principal.sub,
                key,
                fingerprint,
                status,
                _encoder.encode(accepted),
            )
            if not stored:
                raise _KeyTaken
    return status, accepted


async def _record_plain(
    request: web.Request, command: ReportCase, metadata: Metadata
) -> tuple[int, api.ReportAccepted]:
    """A report with nothing to keep beside it (no Idempotency-Key, no alarm): one append, no BEGIN/COMMIT.

    A new case's stream is written whole by one INSERT, which is atomic by itself.
    """
    events = decide(Case(), command)
    result = await request.app[STORE].append(
        case_stream(command.case_id), events, expected_version=0, metadata=metadata
    )
    return 201, api.ReportAccepted(case_id=command.case_id, status="reported", version=result.version)


async def _merge_alarm(
    tx: Transaction, case_id: UUID, command: ReportCase, metadata: Metadata
) -> api.ReportAccepted | None:
    case, version = await tx.load(case_id)
    try:
        events = decide(case, RepeatAlarm(case_id=case_id, occurred_at=command.occurred_at or command.reported_at))
    except Refused:
        return None  # that case has ended: this alarm opens a new one
    result = await tx.append(case_stream(case_id), events, expected_version=version, metadata=metadata)
    count = case.repeat_count + 1
    return api.ReportAccepted(
        case_id=case_id, status=str(case.status), version=result.version, merged=True, repeat_count=count
    )


async def _stored_answer(request: web.Request, caller: str, key: str, fingerprint: bytes) -> web.Response | None:
    row = await request.app[POOL].fetchrow(
        "SELECT fingerprint, status, body FROM idempotency_keys WHERE caller = $1 AND key = $2", caller, key
    )
    if row is None:
        return None
    if bytes(row["fingerprint"]) != fingerprint:
        raise ProblemError(
            422,
            "Idempotency-Key reused",
            "this Idempotency-Key was used with another request body",
            kind="idempotency-key-reused",
        )
    accepted = msgspec.json.decode(bytes(row["body"]), type=api.ReportAccepted)
    return json_response(
        accepted,
        status=row["status"],
        headers={"Location": f"/v1/cases/{accepted.case_id}", "Idempotent-Replayed": "true"},
    )


# --- reading cases --------------------------------------------------------------------


async def _readable_case(request: web.Request, to_version: int | None = None, until: datetime | None = None) -> Any:
    principal = principal_of(request)
    case_id = uuid_param(request)
    rows = await request.app[STORE].read_stream(case_stream(case_id), to_version=to_version, until=until)
    if not rows or (to_version is not None and rows[-1].version < to_version):
        raise not_found()  # a version past the case's head does not exist (yet)
    case = replay(r.event() for r in rows)
    # A case someone may not see is reported as absent, not as forbidden: no existence leak.
    current = case if to_version is None and until is None else (await request.app[STORE].load(case_id))[0]
    if not can_read_case(principal, current):
        raise not_found()
    return principal, case, rows


async def get_case(request: web.Request) -> web.Response:
    query = parse_query(request, api.CaseQuery)
    principal, case, rows = await _readable_case(request, to_version=query.version, until=query.as_of)
    shown = await privacy.reporter_view(request, principal, case, request.app[VAULT])
    return json_response(api.case_out(case, rows[-1].version, shown.reporter, shown.erased))


async def list_cases(request: web.Request) -> web.Response:
    principal = principal_of(request)
    query = parse_query(request, api.CasesQuery)
    page = Page("case_view", "reported_at", "case_id", descending=True)
    if query.status:
        page.where("status = {}", query.status)
    if query.grid:
        page.where("grid = {}", query.grid)
    if query.category:
        page.where("category = {}", query.category)
    if query.street:
        page.where("street = {}", query.street)
    if query.reported_from:
        page.where("reported_at >= {}", local_midnight(query.reported_from))
    if query.reported_to:
        page.where("reported_at < {}", local_midnight(query.reported_to + timedelta(days=1)))
    if principal.role is Role.REPORTER_BACKEND:
        page.where("created_by = {}", principal.sub)
    elif principal.role is Role.GRID_WORKER:
        page.where("grid = ANY({})", list(principal.grids))
    elif principal.role is Role.HANDLER:
        page.where("{} = ANY(departments)", principal.department)
    rows, next_cursor = await page.fetch(request.app[POOL], query.cursor, query.page_size)
    items = [_summary(r) for r in rows]
    return json_response(api.CasePage(items=items, next_cursor=next_cursor))


def local_midnight(day: date) -> datetime:
    """Where a day of the command centre's calendar begins."""
    return datetime.combine(day, time.min, LOCAL)


def _summary(row: Any) -> api.CaseSummary:
    return api.CaseSummary(
        id=row["case_id"],
        version=row["version"],
        status=row["status"],
        source=row["source"],
        category=row["category"],
        grid=row["grid"],
        street=row["street"],
        departments=list(row["departments"]),
        round=row["round"],
        repeat_count=row["repeat_count"],
        reported_at=row["reported_at"],
        updated_at=row["updated_at"],
    )


# --- commands on a case ---------------------------------------------------------------


async def cancel_case(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = await decode_body(request, api.CancelIn)
    return await _command(
        request, principal, lambda case_id: CancelCase(case_id=case_id, reason=body.reason, by=principal.actor)
    )


async def rate_case(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = await decode_body(request, api.RatingIn)
    return await _command(
        request, principal, lambda case_id: RateCase(case_id=case_id, score=body.score, comment=body.comment)
    )


async def _command(request: web.Request, principal: Principal, make: Any) -> web.Response:
    case_id = uuid_param(request)

    def decided(case: Case) -> list[CaseEvent]:
        if not case.exists or not can_read_case(principal, case):
            raise not_found()
        if principal.role is Role.REPORTER_BACKEND and case.created_by != principal.sub:
            raise forbidden("only the backend that reported a case may do this")
        return decide(case, make(case_id))

    outcome = await run_command(request.app[STORE], case_id, decided, metadata=metadata_for(principal))
    return json_response({"case_id": str(case_id), "version": outcome.version, "changed": bool(outcome.events)})


# --- the case list, kept from the log ---------------------------------------------------


async def on_case_event(tx: Transaction, msg: Delivered) -> None:
    """Any event of a case: fold the case from the log and write its row (order-independent)."""
    if isinstance(msg.event, AlarmRepeated):
        # A storm of repeats changes one number: no need to fold a thousand events a thousand times.
        await tx.conn.execute(
            "UPDATE case_view SET repeat_count = GREATEST(repeat_count, $2) WHERE case_id = $1",
            msg.case_id,
            msg.event.repeat_count,
        )
        return
    rows = await tx.read_stream(case_stream(msg.case_id))
    case = replay(r.event() for r in rows)
    if not case.exists:
        return
    # updated_at is the last event's time, not the message's: a rebuild from the log gives the same row.
    await project_case(tx.conn, case, rows[-1].version, rows[-1].recorded_at)


async def project_case(conn: Any, case: Case, version: int, at: datetime) -> None:
    assert case.id is not None and case.reported_at is not None
    await conn.execute(
        """INSERT INTO case_view (case_id, version, status, source, category, grid, street, created_by,
                                  departments, round, repeat_count, reported_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
           ON CONFLICT (case_id) DO UPDATE SET
               version = excluded.version, status = excluded.status, departments = excluded.departments,
               round = excluded.round, repeat_count = excluded.repeat_count, updated_at = excluded.updated_at
           WHERE case_view.version <= excluded.version""",
        case.id,
        version,
        str(case.status),
        str(case.source),
        case.category,
        case.location.grid,
        case.location.street,
        case.created_by,
        list(case.departments),
        case.round,
        case.repeat_count,
        case.reported_at,
        at,
    )
    if case.is_terminal and case.device is not None:
        await conn.execute("DELETE FROM open_alarms WHERE case_id = $1", case.id)
