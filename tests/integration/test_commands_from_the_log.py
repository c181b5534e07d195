"""Commands find their case in the log, never in a read model: an id the log knows is never 404.

The apps run without a relay, so no event reaches their consumers and their read models stay
empty: whatever a command finds, it found in the log (and the index written with it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from msgspec.structs import replace

from ops.servers import Postgres
from services.handling.app import spec as handling
from services.routing.app import spec as routing
from services.verification.app import spec as verification
from shared.base.config import Settings
from shared.domain.events import CaseEvent
from shared.messaging.bus import connect, ensure_stream
from shared.runtime.service import ServiceSpec, build
from shared.store import migrations
from shared.store.commands import case_of
from shared.store.db import create_pool, ensure_database
from shared.store.eventstore import EventStore, case_stream
from shared.web.auth import Role, issue_token
from tests import examples
from tests.conftest import Database

SECRET = "commands-test-secret-of-at-least-32-bytes"
EVIDENCE = [{"url": "https://files.example/after.jpg", "sha256": "ab" * 32, "media_type": "image/jpeg"}]
Client = TestClient[Any, Any]


@pytest.fixture
async def stream(settings: Settings) -> AsyncIterator[None]:
    """The stream the apps consume exists; no relay fills it."""
    nc = await connect(settings, "commands-test")
    await ensure_stream(nc.jetstream(), settings)
    yield
    await nc.close()


@asynccontextmanager
async def unheard(
    settings: Settings, store: EventStore, spec: Callable[[Settings], ServiceSpec], view: str, events: list[CaseEvent]
) -> AsyncIterator[Client]:
    """The service, serving while `events` are in the log and its read model `view` knows nothing of them."""
    await logged(store, events)
    assert await store.pool.fetchval(f"SELECT count(*) FROM {view}") == 0
    the_settings = replace(settings, jwt_secret=SECRET)
    async with TestClient(TestServer(build(the_settings, spec(the_settings)))) as client:
        yield client


async def logged(store: EventStore, events: Sequence[CaseEvent], case_id: UUID = examples.CASE_ID) -> None:
    """A new case's events appended to the log, as if other services had decided them."""
    await store.append(case_stream(case_id), events, expected_version=0, metadata=examples.METADATA)


def dispatched(case_id: UUID = examples.CASE_ID, task_id: UUID = examples.TASK_ID) -> list[CaseEvent]:
    events = [examples.case_reported(), examples.case_dispatched(), examples.task_dispatched(task_id)]
    return [replace(e, case_id=case_id) for e in events]


def bearer(role: Role, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, sub='someone', role=role, **claims)}"}


async def test_a_task_the_log_holds_is_read_and_accepted_before_handling_has_heard_of_it(
    settings: Settings, stream: None, store: EventStore
) -> None:
    async with unheard(settings, store, handling, "task_view", dispatched()) as client:
        handler = bearer(Role.HANDLER, department="sanitation")
        read = await client.get(f"/v1/tasks/{examples.TASK_ID}", headers=handler)
        accepted = await client.post(f"/v1/tasks/{examples.TASK_ID}/accept", json={}, headers=handler)

        assert read.status == 200
        assert accepted.status == 200
        assert (await accepted.json())["status"] == "accepted"
        assert [r.type for r in await store.read_stream(case_stream(examples.CASE_ID))][-1] == "TaskAccepted"


async def test_a_verification_the_log_holds_is_passed_before_its_view_has_a_row(
    settings: Settings, stream: None, store: EventStore
) -> None:
    async with unheard(settings, store, verification, "verification_view", examples.until_verifying()) as client:
        worker = bearer(Role.GRID_WORKER, grids=("wenfeng-tianehu-01",))
        elsewhere = bearer(Role.GRID_WORKER, grids=("hanfeng-01",))
        hidden = await client.post(
            f"/v1/verifications/{examples.VERIFICATION_ID}/pass", json={"evidence": EVIDENCE}, headers=elsewhere
        )
        passed = await client.post(
            f"/v1/verifications/{examples.VERIFICATION_ID}/pass", json={"evidence": EVIDENCE}, headers=worker
        )

        assert hidden.status == 404  # another grid's verification is absent to it, as before
        assert passed.status == 200
        assert (await passed.json())["outcome"] == "passed"
        assert [r.type for r in await store.read_stream(case_stream(examples.CASE_ID))][-1] == "CaseClosed"
        # The command keeps the row beside its events, in its own transaction.
        outcome = await store.pool.fetchval(
            "SELECT outcome FROM verification_view WHERE verification_id = $1", examples.VERIFICATION_ID
        )
        assert outcome == "passed"


async def test_a_task_the_log_holds_is_reassigned_before_routing_has_indexed_it(
    settings: Settings, stream: None, store: EventStore
) -> None:
    async with unheard(settings, store, routing, "routing_tasks", dispatched()) as client:
        reassigned = await client.post(
            f"/v1/tasks/{examples.TASK_ID}/reassign", json={"department": "water"}, headers=bearer(Role.DISPATCHER)
        )

        assert reassigned.status == 200, await reassigned.text()
        [new_task] = (await reassigned.json())["tasks"]
        assert await case_of(store, UUID(new_task), "task") == examples.CASE_ID


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
