"""The index of the log: which case a task or verification id belongs to, written with its event."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from uuid import UUID, uuid4

import asyncpg
import pytest
from msgspec.structs import replace

from ops.servers import Postgres
from shared.domain.events import CaseEvent
from shared.store import migrations
from shared.store.commands import case_of
from shared.store.db import create_pool, ensure_database
from shared.store.eventstore import EventStore, case_stream
from tests import examples
from tests.conftest import Database


async def logged(store: EventStore, events: Sequence[CaseEvent], case_id: UUID = examples.CASE_ID) -> None:
    """A new case's events appended to the log, as if other services had decided them."""
    await store.append(case_stream(case_id), events, expected_version=0, metadata=examples.METADATA)


def dispatched(case_id: UUID = examples.CASE_ID, task_id: UUID = examples.TASK_ID) -> list[CaseEvent]:
    events = [examples.case_reported(), examples.case_dispatched(), examples.task_dispatched(task_id)]
    return [replace(e, case_id=case_id) for e in events]


async def test_every_append_path_indexes_the_ids_it_creates(store: EventStore) -> None:
    cases = [uuid4() for _ in range(6)]
    tasks = [uuid4() for _ in cases]

    # Appends side by side share one INSERT (group commit); one more goes in a transaction of its own.
    await asyncio.gather(*(logged(store, dispatched(c, t), c) for c, t in zip(cases[:-1], tasks[:-1], strict=True)))
    async with store.transaction() as tx:
        await tx.append(
            case_stream(cases[-1]),
            [replace(e, case_id=cases[-1]) for e in examples.until_verifying()],
            expected_version=0,
            metadata=examples.METADATA,
        )

    found = [await case_of(store, t, "task") for t in tasks[:-1]]
    assert found == cases[:-1]
    assert await case_of(store, examples.TASK_ID, "task") == cases[-1]
    assert await case_of(store, examples.VERIFICATION_ID, "verification") == cases[-1]
    assert await case_of(store, examples.VERIFICATION_ID, "task") is None  # a verification is not a task


async def test_a_service_reads_the_index_but_only_the_log_writes_it(database: Database, store: EventStore) -> None:
    await logged(store, examples.until_verifying())
    for service in ("routing", "handling", "verification"):
        conn = await asyncpg.connect(database.service_url(service))
        try:
            assert await conn.fetchval("SELECT count(*) FROM case_index") == 2
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(
                    "INSERT INTO case_index (id, kind, case_id) VALUES ($1, 'task', $2)", uuid4(), examples.CASE_ID
                )
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("DELETE FROM case_index")
        finally:
            await conn.close()


async def test_the_migration_indexes_the_ids_already_in_the_log(
    postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = migrations.migration_files()
    index = next(i for i, (migration, _) in enumerate(files) if migration.startswith("0010_"))
    name = f"backfill_{uuid4().hex[:8]}"
    await ensure_database(postgres.url(), name)
    url = postgres.url(name)
    conn = await asyncpg.connect(url)
    pool = await create_pool(url)
    try:
        monkeypatch.setattr(migrations, "migration_files", lambda: files[:index])
        await migrations.migrate(conn)
        await EventStore(pool).append(
            case_stream(examples.CASE_ID), examples.until_verifying(), expected_version=0, metadata=examples.METADATA
        )
        monkeypatch.setattr(migrations, "migration_files", lambda: files)

        assert await migrations.migrate(conn) == [migration for migration, _ in files[index:]]
        rows = await conn.fetch("SELECT id, kind, case_id FROM case_index ORDER BY kind")
    finally:
        await pool.close()
        await conn.close()
    assert [tuple(r) for r in rows] == [
        (examples.TASK_ID, "task", examples.CASE_ID),
        (examples.VERIFICATION_ID, "verification", examples.CASE_ID),
    ]
