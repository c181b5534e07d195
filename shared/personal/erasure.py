"""Erasing a reporter (crypto-shredding) without rewriting history.

`erase_reporter` deletes the reporter's data key and blind index (shared/personal/pii.py), drops their
daily counts, then appends `ReporterErased(ref)` to every case they reported. The events keep
their ciphertext, which no key opens any more, so the hash chains (computed over the stored
bytes) still verify. It is idempotent: a second run (after a crash, or after `Busy` from a case
that kept changing under it) finishes the job.
"""

from __future__ import annotations

import uuid
from uuid import UUID

import asyncpg
import structlog

from shared.domain.events import ReporterErased
from shared.personal.pii import Vault
from shared.store.commands import run_command
from shared.store.eventstore import EventStore, Metadata

log = structlog.get_logger()
_ERASURE = uuid.UUID("4d2b0c4e-9a55-4f57-8a8c-0c6d2c6f7e11")  # namespace of the erasure events' ids


async def cases_of_reporter(conn: asyncpg.Connection | asyncpg.Pool, ref: UUID) -> list[UUID]:
    rows = await conn.fetch(
        """SELECT DISTINCT (data::jsonb ->> 'case_id')::uuid AS case_id FROM events
           WHERE type = 'CaseReported' AND data::jsonb -> 'reporter' ->> 'ref' = $1""",
        str(ref),
    )
    return [r["case_id"] for r in rows]


async def erase_reporter(pool: asyncpg.Pool, ref: UUID, *, actor: str) -> tuple[bool, list[UUID]]:
    """(whether a key was erased now, the cases that got a ReporterErased now)."""
    async with pool.acquire() as conn, conn.transaction():
        index = await conn.fetchval("SELECT phone_index FROM reporter_keys WHERE ref = $1", ref)
        erased = await Vault.erase(conn, ref)
        if index is not None:
            await conn.execute("DELETE FROM reporter_quota WHERE phone_index = $1", index)
    store = EventStore(pool)
    marked: list[UUID] = []
    for case_id in await cases_of_reporter(pool, ref):
        if await _mark_erased(store, case_id, ref, actor):
            marked.append(case_id)
    log.info("reporter_erased", ref=str(ref), key_erased=erased, cases=len(marked))
    return erased, marked


async def _mark_erased(store: EventStore, case_id: UUID, ref: UUID, actor: str) -> bool:
    """Append ReporterErased to the case unless it has one; whether it was appended now."""
    erased = ReporterErased(case_id=case_id, ref=ref)
    outcome = await run_command(
        store,
        case_id,
        lambda case: [] if case.reporter_erased else [erased],
        metadata=Metadata(correlation_id=uuid.uuid4(), actor=actor),
        event_ids=lambda _: [uuid.uuid5(_ERASURE, f"{ref}/{case_id}")],  # one erasure event per case, ever
    )
    return bool(outcome.events)
