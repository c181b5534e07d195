"""The event store against a real PostgreSQL: concurrency, idempotence, ordering, immutability."""

from __future__ import annotations

import asyncio
import contextlib
import random
from uuid import uuid4

import asyncpg
import msgspec
import pytest

from shared.audit.chain import stream_findings
from shared.store.eventstore import Checkpoint, ConcurrencyError, EventStore, RecordedEvent, case_stream
from tests import examples
from tests.conftest import Database
from tests.eventually import eventually


async def test_two_appends_at_the_same_expected_version_only_one_wins(store: EventStore) -> None:
    stream = case_stream(examples.CASE_ID)
    await store.append(stream, [examples.case_reported()], expected_version=0, metadata=examples.METADATA)

    results = await asyncio.gather(
        store.append(stream, [examples.case_dispatched()], expected_version=1, metadata=examples.METADATA),
        store.append(stream, [examples.case_dispatched()], expected_version=1, metadata=examples.METADATA),
        return_exceptions=True,
    )

    assert sorted(type(r).__name__ for r in results) == ["AppendResult", "ConcurrencyError"]
    assert [r.version for r in await store.read_stream(stream)] == [1, 2]


async def test_a_stale_expected_version_is_a_concurrency_error(store: EventStore) -> None:
    stream = case_stream(examples.CASE_ID)
    await store.append(stream, [examples.case_reported()], expected_version=0, metadata=examples.METADATA)
    with pytest.raises(ConcurrencyError):
        await store.append(stream, [examples.case_dispatched()], expected_version=0, metadata=examples.METADATA)


async def test_the_same_event_id_appended_twice_is_stored_once(store: EventStore, pool: asyncpg.Pool) -> None:
    stream = case_stream(examples.CASE_ID)
    event_id = uuid4()
    first = await store.append(
        stream,
        [examples.case_reported()],
        expected_version=0,
        metadata=examples.METADATA,
        event_ids=[event_id],
    )
    again = await store.append(
        stream,
        [examples.case_reported()],
        expected_version=0,
        metadata=examples.METADATA,
        event_ids=[event_id],
    )

    assert again.duplicate and not first.duplicate
    assert again.positions == first.positions
    assert await pool.fetchval("SELECT count(*) FROM events WHERE event_id = $1", event_id) == 1


async def test_a_stream_reads_back_in_version_order_and_folds_into_the_case(store: EventStore) -> None:
    stream = case_stream(examples.CASE_ID)
    history = examples.until_verifying()
    await store.append(stream, history, expected_version=0, metadata=examples.METADATA)

    case, version = await store.load(examples.CASE_ID)

    assert version == len(history)
    assert case.status == "verifying"
    assert [r.event() for r in await store.read_stream(stream)] == history
    assert stream_findings(await store.read_stream(stream)) == []


async def test_concurrent_writers_are_all_seen_once_by_a_polling_reader(store: EventStore) -> None:
    writers, appends_each = 12, 40
    written: set[str] = set()
    done = asyncio.Event()

    async def writer(n: int) -> None:
        for i in range(appends_each):
            stream = f"load-{n}-{i % 4}"
            while True:
                head = await store.read_stream(stream)
                try:
                    result = await store.append(
                        stream,
                        [examples.case_reported(description=f"w{n}-{i}")],
                        expected_version=len(head),
                        metadata=examples.METADATA,
                    )
                    break
                except ConcurrencyError:
                    continue
            written.add(f"{result.stream_id}@{result.version}")
            if random.random() < 0.3:
                await asyncio.sleep(0)

    seen: list[RecordedEvent] = []

    async def reader() -> None:
        checkpoint = Checkpoint()
        while True:
            finished = done.is_set()
            batch = await store.read_all(checkpoint, limit=37)
            for record in batch:
                assert record.checkpoint > checkpoint, "the reader's order went backwards"
                checkpoint = record.checkpoint
            seen.extend(batch)
            if finished and not batch:
                return
            await asyncio.sleep(0.001)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(n) for n in range(writers)))
    done.set()
    await reading

    keys = [f"{r.stream_id}@{r.version}" for r in seen]
    assert len(keys) == writers * appends_each
    assert len(set(keys)) == len(keys), "an event was seen twice"
    assert set(keys) == written, "an event was skipped"


async def test_the_service_role_cannot_update_delete_or_truncate_events(store: EventStore, database: Database) -> None:
    await store.append(
        case_stream(examples.CASE_ID),
        [examples.case_reported()],
        expected_version=0,
        metadata=examples.METADATA,
    )
    conn = await asyncpg.connect(database.url)
    try:
        for statement in (
            "UPDATE events SET type = 'Forged'",
            "DELETE FROM events",
            "TRUNCATE events",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_even_the_owner_is_refused_by_the_trigger(store: EventStore, database: Database) -> None:
    await store.append(
        case_stream(examples.CASE_ID),
        [examples.case_reported()],
        expected_version=0,
        metadata=examples.METADATA,
    )
    conn = await asyncpg.connect(database.admin_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("UPDATE events SET type = 'Forged'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("DELETE FROM events")
    finally:
        await conn.close()


async def test_a_payload_changed_by_a_superuser_breaks_the_chain(store: EventStore, database: Database) -> None:
    stream = case_stream(examples.CASE_ID)
    await store.append(stream, examples.until_verifying(), expected_version=0, metadata=examples.METADATA)
    assert stream_findings(await store.read_stream(stream)) == []

    conn = await asyncpg.connect(database.admin_url)
    try:
        # A superuser can switch the trigger off for its session: the chain still tells.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(
            """UPDATE events SET data = replace(data::text, 'sanitation', 'police')::json
               WHERE stream_id = $1 AND version = 3""",
            stream,
        )
    finally:
        await conn.close()

    assert [(f.kind, f.version) for f in stream_findings(await store.read_stream(stream))] == [("edited", 3)]


async def test_a_head_remembered_from_a_rolled_back_append_is_only_a_hint(store: EventStore) -> None:
    stream = case_stream(examples.CASE_ID)
    await store.append(stream, [examples.case_reported()], expected_version=0, metadata=examples.METADATA)
    with contextlib.suppress(RuntimeError):
        async with store.transaction() as tx:  # remembers version 2 and its hash, then rolls back
            await tx.append(stream, [examples.case_dispatched()], expected_version=1, metadata=examples.METADATA)
            raise RuntimeError("abandon the transaction")
    other = EventStore(store.pool)  # another process: its version 2 has another hash
    await other.append(stream, [examples.case_dispatched()], expected_version=1, metadata=examples.METADATA)

    # The remembered (2, hash) is wrong: the guarded INSERT writes nothing, the head is read, and it appends.
    result = await store.append(stream, [examples.task_accepted()], expected_version=2, metadata=examples.METADATA)

    rows = await store.read_stream(stream)
    assert result.version == 3
    assert [r.version for r in rows] == [1, 2, 3]
    assert stream_findings(rows) == []


async def test_an_append_past_a_head_this_process_never_saw_reads_it_first(store: EventStore) -> None:
    stream = case_stream(examples.CASE_ID)
    writer = EventStore(store.pool)
    await writer.append(stream, [examples.case_reported()], expected_version=0, metadata=examples.METADATA)
    await writer.append(stream, [examples.case_dispatched()], expected_version=1, metadata=examples.METADATA)

    await store.append(stream, [examples.task_accepted()], expected_version=2, metadata=examples.METADATA)
    with pytest.raises(ConcurrencyError):  # remembered at 3 now; version 2 is stale
        await store.append(stream, [examples.task_accepted()], expected_version=2, metadata=examples.METADATA)
    with pytest.raises(ConcurrencyError):  # beyond the head: nothing to chain to
        await writer.append(stream, [examples.task_accepted()], expected_version=5, metadata=examples.METADATA)

    rows = await store.read_stream(stream)
    assert [r.version for r in rows] == [1, 2, 3]
    assert stream_findings(rows) == []


async def test_concurrent_lone_appends_share_commits_and_each_stream_chains(store: EventStore) -> None:
    case_ids = [uuid4() for _ in range(64)]
    results = await asyncio.gather(
        *(
            store.append(
                case_stream(c), [examples.case_reported(case_id=c)], expected_version=0, metadata=examples.METADATA
            )
            for c in case_ids
        )
    )
    assert [r.version for r in results] == [1] * 64
    assert store.group is not None and store.group.requests == 64
    assert store.group.batches < 64  # they queued behind each other and went together
    seconds = await asyncio.gather(
        *(
            store.append(case_stream(c), [examples.case_dispatched()], expected_version=1, metadata=examples.METADATA)
            for c in case_ids
        )
    )
    assert [r.version for r in seconds] == [2] * 64
    for c in case_ids:
        rows = await store.read_stream(case_stream(c))
        assert [r.version for r in rows] == [1, 2] and stream_findings(rows) == []


async def test_a_batch_with_a_stale_a_repeated_and_a_good_append_settles_each_alone(store: EventStore) -> None:
    stale, repeated, good = (case_stream(uuid4()) for _ in range(3))
    await store.append(stale, [examples.case_reported()], expected_version=0, metadata=examples.METADATA)
    event_id = uuid4()
    first = await store.append(
        repeated, [examples.case_reported()], expected_version=0, metadata=examples.METADATA, event_ids=[event_id]
    )

    outcomes = await asyncio.gather(
        store.append(stale, [examples.case_reported()], expected_version=0, metadata=examples.METADATA),
        store.append(
            repeated, [examples.case_reported()], expected_version=0, metadata=examples.METADATA, event_ids=[event_id]
        ),
        store.append(good, [examples.case_reported()], expected_version=0, metadata=examples.METADATA),
        return_exceptions=True,
    )

    assert isinstance(outcomes[0], ConcurrencyError)
    assert outcomes[1] == msgspec.structs.replace(first, duplicate=True)
    assert [r.version for r in await store.read_stream(good)] == [1]
    assert [r.version for r in await store.read_stream(repeated)] == [1]


async def test_a_writer_elsewhere_racing_a_batch_loses_or_wins_whole(store: EventStore) -> None:
    streams = [case_stream(uuid4()) for _ in range(8)]
    other = EventStore(store.pool, group_commit=False)  # another process, one append at a time

    outcomes = await asyncio.gather(
        *(store.append(s, [examples.case_reported()], expected_version=0, metadata=examples.METADATA) for s in streams),
        *(other.append(s, [examples.case_reported()], expected_version=0, metadata=examples.METADATA) for s in streams),
        return_exceptions=True,
    )

    assert all(not isinstance(o, Exception) or isinstance(o, ConcurrencyError) for o in outcomes)
    for stream in streams:
        rows = await store.read_stream(stream)
        assert [r.version for r in rows] == [1] and stream_findings(rows) == []
    assert sum(not isinstance(o, Exception) for o in outcomes) == len(streams)  # one winner per stream


async def test_replay_gives_read_alls_events_in_the_same_order(store: EventStore) -> None:
    for case_id in (uuid4(), uuid4()):
        stream = case_stream(case_id)
        await store.append(
            stream, [examples.case_reported(case_id=case_id)], expected_version=0, metadata=examples.METADATA
        )
        await store.append(stream, [examples.case_dispatched()], expected_version=1, metadata=examples.METADATA)

    replayed, checkpoint = [], Checkpoint()
    while batch := await store.replay(checkpoint, limit=3):
        replayed += batch
        checkpoint = batch[-1].checkpoint
    records = await store.read_all(Checkpoint(), limit=100)

    assert [(r.checkpoint, r.stream_id, r.version, r.event) for r in replayed] == [
        (r.checkpoint, r.stream_id, r.version, r.event()) for r in records
    ]
    assert len(replayed) == 4


async def test_begin_handling_reads_inbox_and_case_at_once_and_an_append_drops_that_read(store: EventStore) -> None:
    case_id = uuid4()
    stream = case_stream(case_id)
    await store.append(
        stream, [examples.case_reported(case_id=case_id)], expected_version=0, metadata=examples.METADATA
    )
    event_id = uuid4()
    queries: list[str] = []
    # Markers between the steps: the logger runs soon after each query (not during it), in order, so
    # once it has the last marker it has every query before, and the markers show whose each one was.
    after_begin, after_load = "SELECT 'after begin_handling'", "SELECT 'after load'"
    async with store.transaction() as tx:
        tx.conn.add_query_logger(lambda record: queries.append(record.query))
        assert await tx.begin_handling("tester", event_id, case_id) is False
        await tx.conn.fetchval(after_begin)
        _, version = await tx.load(case_id)  # answered from begin_handling's read
        await tx.conn.fetchval(after_load)
        await eventually(lambda: after_load in queries)
        asked = queries.index(after_begin)
        assert (asked, version, len(queries)) == (1, 1, 3), queries  # one query, then none for the load
        await tx.append(stream, [examples.case_dispatched()], expected_version=1, metadata=examples.METADATA)
        assert [r.version for r in await tx.read_stream(stream)] == [1, 2]  # read again, own append included
        tx.inbox_on_commit = ("tester", event_id)

    async with store.transaction() as tx:
        assert await tx.begin_handling("tester", event_id, case_id) is True


async def test_a_twins_inbox_row_at_commit_undoes_the_whole_transaction(store: EventStore) -> None:
    case_id = uuid4()
    stream = case_stream(case_id)
    await store.append(
        stream, [examples.case_reported(case_id=case_id)], expected_version=0, metadata=examples.METADATA
    )
    event_id = uuid4()
    async with store.transaction() as twin:
        twin.inbox_on_commit = ("tester", event_id)

    with pytest.raises(ConcurrencyError):
        async with store.transaction() as tx:
            await tx.append(stream, [examples.case_dispatched()], expected_version=1, metadata=examples.METADATA)
            tx.inbox_on_commit = ("tester", event_id)

    assert [r.version for r in await store.read_stream(stream)] == [1]
    async with store.pool.acquire() as conn:
        assert not conn.is_in_transaction()
