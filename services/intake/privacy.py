"""intake's personal-data rules: who reads a reporter unmasked (and that it is recorded), the
per-reporter daily limit by blind index, and the auditors' view of the reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
import structlog
from aiohttp import web
from msgspec import Meta

from shared.access import sees_personal_data
from shared.auth import Principal, Role, principal_of
from shared.case import Case
from shared.events import SealedReporter
from shared.http import INT8_MAX, json_response, parse_query
from shared.pii import OverLimit, Reporter, Vault, masked
from shared.ratelimit import reporter_day, reporter_over_limit
from shared.service import CLOCK, POOL, SETTINGS

PURPOSE = "X-Purpose"  # why a member of staff needs the reporter's name and phone
OWN_BACKEND = "the reporting backend"


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


async def reporter_view(
    request: web.Request, principal: Principal, case: Case, vault: Vault
) -> tuple[Reporter | None, bool]:
    """(what this caller sees of the reporter, whether the reporter was erased)."""
    if case.reporter is None:
        return None, case.reporter_erased
    async with request.app[POOL].acquire() as conn:
        plain = await vault.unseal(conn, case.reporter)
        if plain is None:
            return None, True
        purpose = request.headers.get(PURPOSE, "").strip()[:200]
        own_backend = principal.role is Role.REPORTER_BACKEND
        if not sees_personal_data(principal, case) or not (own_backend or purpose):
            return masked(plain), False  # staff say why, or see it masked
        await conn.execute(
            "INSERT INTO pii_reads (actor, case_id, purpose, request_id) VALUES ($1, $2, $3, $4)",
            principal.actor,
            case.id,
            purpose or OWN_BACKEND,
            str(structlog.contextvars.get_contextvars().get("request_id", "")),
        )
    return plain, False


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
