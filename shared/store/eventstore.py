"""EventStore over asyncpg: append with an expected version, read a stream, read the whole log.

Ordering of the whole log (`read_all`). PostgreSQL hands out identity values when a row
is inserted but the row becomes visible when its transaction commits, so two writers can
commit positions 101 and 102 in the other order, and a reader polling
"position > last seen" skips 101 for ever. We use the transaction-id horizon
(eugene-khyst/postgresql-event-sourcing §4.7): each row stores `pg_current_xact_id()`, readers take only rows whose
transaction is below `pg_snapshot_xmin(pg_current_snapshot())` — every transaction below
that horizon has finished, so no row can still appear there — order by `(tx, position)`
and checkpoint the pair. Ordering or checkpointing by position alone still skips (the
dba.stackexchange 342896 case). Writers never wait for each other, so group commit
survives.

One rule follows for writers: the events INSERT must be the first write of its
transaction (its xid is taken then, after the stream was read), or a later version of a
stream could sort before an earlier one. `Transaction.append` therefore comes before the
inbox row and read-model writes in every transaction.

The rows, positions and errors are in shared/store/records.py, the hash chain in
shared/store/hashchain.py, the guarded INSERTs and group commit in shared/store/append.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from shared.base.clock import Clock, system_clock
from shared.domain.case import NO_CASE, Case, replay
from shared.domain.events import Event, decode
from shared.store.append import HeadHints, Rows, append_checked, chained_rows, grouped_appends, ids_for
from shared.store.groupcommit import GroupCommit
from shared.store.hashchain import GENESIS, event_hash, recorded_hash
from shared.store.records import (
    COLUMNS,
    ORIGIN,
    AppendResult,
    Checkpoint,
    ConcurrencyError,
    IdempotencyConflict,
    Metadata,
    RecordedEvent,
    Replayed,
    case_stream,
    from_row,
)

# The store's names, as callers have always imported them from here.
__all__ = [
    "GENESIS",
    "ORIGIN",
    "AppendResult",
    "Checkpoint",
    "ConcurrencyError",
    "EventStore",
    "HeadHints",
    "IdempotencyConflict",
    "Metadata",
    "RecordedEvent",
    "Replayed",
    "Transaction",
    "case_stream",
    "event_hash",
    "recorded_hash",
]


class Transaction:
    """One PostgreSQL transaction: appends, reads and inbox rows commit together."""

    def __init__(self, conn: Any, clock: Clock, heads: HeadHints | None = None) -> None:
        self.conn = conn
        self._clock = clock
        self._heads = heads if heads is not None else HeadHints()
        self._read: dict[str, list[RecordedEvent]] = {}  # whole streams read by `begin_handling`
        self.inbox_on_commit: tuple[str, UUID] | None = None  # written by EventStore.transaction's COMMIT
        # With the inbox row, that COMMIT also deletes the consumer's failure count for the event
        # (a redelivery that may have failed before; never the first delivery's round trip).
        self.clear_failures_on_commit = False

    async def append(
        self,
        stream_id: str,
        events: Sequence[Event],
        *,
        expected_version: int,
        metadata: Metadata,
        event_ids: Sequence[UUID] | None = None,
    ) -> AppendResult:
        """Append after `expected_version`; atomic with the rest of this transaction.

        Raises ConcurrencyError when the stream is not at `expected_version`. Appending
        event ids that are all stored already writes nothing and returns what was stored.
        One round trip when the head is known (a new stream, or one this process just read
        or wrote); two otherwise.
        """
        ids = ids_for(events, event_ids)
        if not events:
            return AppendResult(stream_id, expected_version, ())
        self._read.pop(stream_id, None)
        return await append_checked(
            self.conn,
            self._heads,
            self._clock,
            stream_id,
            events,
            ids,
            expected_version=expected_version,
            metadata=metadata,
        )

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        until: datetime | None = None,
    ) -> list[RecordedEvent]:
        """A stream's events in version order, optionally up to a version or a recorded time."""
        if from_version == 1 and to_version is None and until is None and stream_id in self._read:
            return list(self._read[stream_id])
        rows = await self.conn.fetch(
            f"""SELECT {COLUMNS} FROM events
                WHERE stream_id = $1 AND version >= $2
                  AND ($3::int IS NULL OR version <= $3)
                  AND ($4::timestamptz IS NULL OR recorded_at <= $4)
                ORDER BY version""",
            stream_id,
            from_version,
            to_version,
            until,
        )
        records = [from_row(r) for r in rows]
        if records and to_version is None and until is None:
            self._heads.put(stream_id, records[-1].version, records[-1].hash)
        return records

    async def load(self, case_id: UUID) -> tuple[Case, int]:
        """The case folded from its events, and the version it reflects (0: no such case)."""
        rows = await self.read_stream(case_stream(case_id))
        if not rows:
            return NO_CASE, 0
        return replay(r.event() for r in rows), rows[-1].version

    async def begin_handling(self, consumer: str, event_id: UUID, case_id: UUID) -> bool:
        """Whether `consumer` handled `event_id` already; if not, the case's stream is read too.

        One round trip for what a consumer asks first: the inbox, and the case it will load.
        The handler's `load`/`read_stream` of that case then answer from this read (as of this
        statement, as a read of their own would be in READ COMMITTED); an append drops it.
        """
        stream_id = case_stream(case_id)
        rows = await self.conn.fetch(
            f"""SELECT d.done, e.* FROM (SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND event_id = $2)
                                         AS done) AS d
                LEFT JOIN LATERAL (SELECT {COLUMNS} FROM events WHERE stream_id = $3 ORDER BY version) AS e
                       ON NOT d.done""",
            consumer,
            event_id,
            stream_id,
        )
        if rows[0]["done"]:
            return True
        records = [RecordedEvent(*row[1:]) for row in rows if row["position"] is not None]
        if records:
            self._heads.put(stream_id, records[-1].version, records[-1].hash)
        self._read[stream_id] = records
        return False


def _commit_sql(inbox: tuple[str, UUID] | None, clear_failures: bool = False) -> str:
    """COMMIT, after the consumer's inbox row if there is one (literals: no parameters in a script)."""
    if inbox is None:
        return "COMMIT"
    consumer, event_id = inbox
    if not isinstance(event_id, UUID):
        raise TypeError("an inbox event id is a UUID")
    literal = consumer.replace("'", "''")
    script = f"INSERT INTO inbox (consumer, event_id) VALUES ('{literal}', '{event_id}'); "
    if clear_failures:
        script += f"DELETE FROM consumer_failures WHERE consumer = '{literal}' AND event_id = '{event_id}'; "
    return script + "COMMIT"


class EventStore:
    """The append-only log. Every method runs in its own transaction unless given one."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock = system_clock, *, group_commit: bool = True) -> None:
        self.pool = pool
        self.clock = clock
        self.heads = HeadHints()
        self.group: GroupCommit[Rows, AppendResult | None] | None = (
            grouped_appends(pool, self.heads) if group_commit else None
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """BEGIN … COMMIT; a consumer's inbox row (`inbox_on_commit`) rides with the COMMIT.

        Begun and committed by hand, not with asyncpg's transaction(), so that the inbox
        INSERT and the COMMIT go in one round trip (a simple-protocol query of two
        statements: if the INSERT fails, PostgreSQL skips the COMMIT). An exception rolls
        back; if even that fails, the pool's release rolls back what is left.
        """
        async with self.pool.acquire() as conn:
            await conn.execute("BEGIN")
            tx = Transaction(conn, self.clock, self.heads)
            try:
                yield tx
                try:
                    await conn.execute(_commit_sql(tx.inbox_on_commit, tx.clear_failures_on_commit))
                except asyncpg.UniqueViolationError as exc:  # the inbox row: a twin handled it first
                    raise ConcurrencyError(f"handled concurrently: {exc.constraint_name}") from exc
            except BaseException:
                with contextlib.suppress(Exception):
                    await conn.execute("ROLLBACK")  # after a failed COMMIT script too: it skipped the COMMIT
                raise

    async def append(
        self,
        stream_id: str,
        events: Sequence[Event],
        *,
        expected_version: int,
        metadata: Metadata,
        event_ids: Sequence[UUID] | None = None,
    ) -> AppendResult:
        """Append in a transaction of its own: group-committed with the appends that queue beside it.

        One INSERT is atomic by itself, and the (stream_id, version) key catches a racing writer,
        so a lone append needs no BEGIN/COMMIT. Concurrent lone appends (to distinct streams)
        share one INSERT and one commit (shared/store/groupcommit.py). An append whose head this
        process does not know, or whose guard fails in the batch, takes the one-stream path.
        """
        ids = ids_for(events, event_ids)
        prev = GENESIS if expected_version == 0 else self.heads.get(stream_id, expected_version)
        if self.group is not None and events and prev is not None:
            rows = chained_rows(stream_id, events, ids, expected_version, prev, metadata, self.clock())
            if (result := await self.group.submit(rows)) is not None:
                return result
        async with self.pool.acquire() as conn:
            return await Transaction(conn, self.clock, self.heads).append(
                stream_id, events, expected_version=expected_version, metadata=metadata, event_ids=ids
            )

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        until: datetime | None = None,
    ) -> list[RecordedEvent]:
        async with self.pool.acquire() as conn:
            return await Transaction(conn, self.clock, self.heads).read_stream(
                stream_id, from_version=from_version, to_version=to_version, until=until
            )

    async def load(self, case_id: UUID) -> tuple[Case, int]:
        async with self.pool.acquire() as conn:
            return await Transaction(conn, self.clock, self.heads).load(case_id)

    async def read_all(self, after: Checkpoint = ORIGIN, limit: int = 500) -> list[RecordedEvent]:
        """Committed events past `after`, in (tx, position) order, never skipping a late commit."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"""SELECT {COLUMNS} FROM events
                    WHERE (tx, position) > ($1::text::xid8, $2::bigint)
                      AND tx < pg_snapshot_xmin(pg_current_snapshot())
                    ORDER BY events.tx, events.position  -- qualified: a bare name would sort by the cast alias
                    LIMIT $3""",
                str(after.tx),
                after.position,
                limit,
            )
        return [from_row(r) for r in rows]

    async def replay(self, after: Checkpoint = ORIGIN, limit: int = 500) -> list[Replayed]:
        """`read_all`'s events decoded, without the columns only relaying and auditing need.

        Rebuilding state reads the whole log: the hash, ids, metadata and times of each row
        would cost more to fetch and build than the event itself costs to decode.
        """
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT tx::text::bigint, position, stream_id, version, schema_version, data::text
                   FROM events
                   WHERE (tx, position) > ($1::text::xid8, $2::bigint)
                     AND tx < pg_snapshot_xmin(pg_current_snapshot())
                   ORDER BY events.tx, events.position
                   LIMIT $3""",
                str(after.tx),
                after.position,
                limit,
            )
        return [
            Replayed(tx, position, stream, version, decode(data, schema))
            for tx, position, stream, version, schema, data in rows
        ]

    async def head(self) -> Checkpoint:
        """The (tx, position) of the last event readers can see now."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                """SELECT tx::text::bigint AS tx, position FROM events
                   WHERE tx < pg_snapshot_xmin(pg_current_snapshot())
                   ORDER BY events.tx DESC, events.position DESC LIMIT 1"""
            )
        return Checkpoint(row["tx"], row["position"]) if row else Checkpoint()
