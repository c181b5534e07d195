"""Audit figures: rebuilding read models and verifying the log for 10,000 cases, beside a raw read of the same rows."""

from __future__ import annotations

import asyncio
from time import perf_counter
from uuid import uuid4

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from msgspec.structs import replace

from ops.audit.rebuild import rebuild
from ops.audit.store import verify_database
from shared.audit.checkpointer import Checkpointer
from shared.audit.checkpoints import public_bytes
from shared.domain.events import CaseClosed, CaseEvent, VerificationPassed
from shared.store.db import create_pool
from shared.store.eventstore import EventStore, case_stream
from shared.store.records import COLUMNS
from tests import examples
from tests.bench.eventstore_bench import Figure

CASES = 10_000
WRITERS = 16


def closed_case() -> list[CaseEvent]:
    case_id = uuid4()
    events = [
        *examples.until_verifying(),
        VerificationPassed(case_id=case_id, verification_id=examples.VERIFICATION_ID, by="gw"),
        CaseClosed(case_id=case_id),
    ]
    return [replace(e, case_id=case_id) for e in events]


async def seed(store: EventStore, cases: int) -> int:
    """`cases` closed cases, nine events each, appended by concurrent writers."""

    async def writer(n: int) -> int:
        written = 0
        for _ in range(n):
            events = closed_case()
            await store.append(case_stream(events[0].case_id), events, expected_version=0, metadata=examples.METADATA)
            written += len(events)
        return written

    return sum(await asyncio.gather(*(writer(cases // WRITERS) for _ in range(WRITERS))))


async def raw_read(url: str, order: str) -> float:
    """Events/s of reading every row, in the given order, with a plain cursor: the baseline."""
    conn = await asyncpg.connect(url)
    try:
        start, count = perf_counter(), 0
        async with conn.transaction():
            async for _ in conn.cursor(f"SELECT {COLUMNS} FROM events ORDER BY {order}", prefetch=5000):
                count += 1
        return count / (perf_counter() - start)
    finally:
        await conn.close()


async def run(admin_url: str, service_url: str) -> list[Figure]:
    pool = await create_pool(service_url, size=WRITERS)
    key = Ed25519PrivateKey.generate()
    try:
        store = EventStore(pool)
        events = await seed(store, CASES)
        await Checkpointer(store, key, every_events=10**9).checkpoint_now()
    finally:
        await pool.close()

    baseline_rebuild = await raw_read(admin_url, "stream_id, version")
    start = perf_counter()
    await rebuild(admin_url)
    ours_rebuild = events / (perf_counter() - start)

    baseline_verify = await raw_read(admin_url, "events.tx, events.position")
    start = perf_counter()
    report = await verify_database(admin_url, public_bytes(key.public_key()), None, None)
    ours_verify = events / (perf_counter() - start)
    assert report.ok, report.findings[:3]
    cases = f"{CASES:,} cases, {events:,} events"
    return [
        Figure(
            "rebuild every read model (replay)",
            ours_rebuild,
            baseline_rebuild,
            "raw cursor read, same rows",
            note=f"{cases}; fold + project + executemany, one transaction",
        ),
        Figure(
            "audit verify (chains + signed head)",
            ours_verify,
            baseline_verify,
            "raw cursor read, same rows",
            note=f"{cases}; decode, SHA-256 per event twice, Ed25519 check",
        ),
    ]
