"""intake's personal data: showing a reporter as the one rule (shared.web.access.personal_data_read)
decides and recording the unmasked reads, the per-reporter daily limit by blind index, and the
auditors' view of the reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
import structlog
from aiohttp import web
from msgspec import Meta

from shared.domain.case import Case
from shared.domain.events import SealedReporter
from shared.personal.pii import OverLimit, Reporter, Vault, masked
from shared.runtime.service import CLOCK, POOL, SETTINGS
from shared.web.access import personal_data_read
from shared.web.auth import Principal, principal_of
from shared.web.http import INT8_MAX, json_response, parse_query
from shared.web.ratelimit import reporter_day, reporter_over_limit

PURPOSE = "X-Purpose"  # why a member of staff needs the reporter's name and phone


class PiiReadsQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    case_id: UUID | None = None
    page_size: Annotated[int, Meta(ge=1, le=100)] = 50
    before: Annotated[int, Meta(ge=1, le=INT8_MAX)] | None = None  # pii_reads.id is a bigint


class PiiRead(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    read_at: datetime
    actor: str
    case_id: UUID
    purpose: str
    request_id: str


class PiiReadPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[PiiRead]
    next_before: int | None = None


class ShownReporter(msgspec.Struct, frozen=True, kw_only=True):
    reporter: Reporter | None  # None: the case has none, or it was erased
    erased: bool
    masked: bool


async def reporter_view(
    request: web.Request, principal: Principal, case: Case, vault: Vault, sealed: SealedReporter | None = None
) -> ShownReporter:
    """What this caller sees of the case's reporter, for every response that carries one.
    `sealed`: the copy the response shows (a history's event), else the case's own.

    The one rule decides; an unmasked read is recorded in pii_reads before it is shown.
    """
    sealed = sealed or case.reporter
    if sealed is None:
        return ShownReporter(reporter=None, erased=case.reporter_erased, masked=True)
    read = personal_data_read(principal, case, request.headers.get(PURPOSE))
    async with request.app[POOL].acquire() as conn:
        plain = await vault.unseal(conn, sealed)
        if plain is None:
            return ShownReporter(reporter=None, erased=True, masked=True)
        if read.record is not None:
            await conn.execute(
                "INSERT INTO pii_reads (actor, case_id, purpose, request_id) VALUES ($1, $2, $3, $4)",
                principal.actor,
                case.id,
                read.record,
                str(structlog.contextvars.get_contextvars().get("request_id", "")),
            )
    return ShownReporter(reporter=plain if read.unmask else masked(plain), erased=False, masked=not read.unmask)


async def seal_reporter(request: web.Request, vault: Vault, reporter: Reporter) -> SealedReporter:
    """The reporter's name and phone sealed with their own key; a phone is also counted by blind
    index against the daily limit (429 past it), in the same statement that finds the key.
    """
    now = request.app[CLOCK]()
    limit = request.app[SETTINGS].reporter_daily_limit
    async with request.app[POOL].acquire() as conn:
        try:
            return await vault.seal(conn, reporter, day=reporter_day(now), limit=limit)
        except OverLimit:
            raise reporter_over_limit(now, limit) from None


async def list_pii_reads(request: web.Request) -> web.Response:
    principal_of(request)  # auditors and supervisors only (the access table)
    query = parse_query(request, PiiReadsQuery)
    rows = await request.app[POOL].fetch(
        """SELECT id, read_at, actor, case_id, purpose, request_id FROM pii_reads
           WHERE ($1::uuid IS NULL OR case_id = $1) AND ($2::bigint IS NULL OR id < $2)
           ORDER BY id DESC LIMIT $3""",
        query.case_id,
        query.before,
        query.page_size + 1,
    )
    items = [PiiRead(**dict(r)) for r in rows[: query.page_size]]
    more = len(rows) > query.page_size
    return json_response(PiiReadPage(items=items, next_before=items[-1].id if more else None))
