"""EventStore over asyncpg: append with an expected version, read a stream, read the whole log.

Ordering of the whole log (`read_all`). PostgreSQL hands out identity values when a row
is inserted but the row becomes visible when its transaction commits, so two writers can
commit positions 101 and 102 in the other order, and a reader polling
"position > last seen" skips 101 for ever. We use the transaction-id horizon
(eugene-khyst/postgresql-event-sourcing §4.7; ../shared/reference/eventstore.md, Part 2,
technique 4): each row stores `pg_current_xact_id()`, readers take only rows whose
transaction is below `pg_snapshot_xmin(pg_current_snapshot())` — every transaction below
that horizon has finished, so no row can still appear there — order by `(tx, position)`
and checkpoint the pair. Ordering or checkpointing by position alone still skips (the
dba.stackexchange 342896 case). Writers never wait for each other, so group commit
survives.

One rule follows for writers: the events INSERT must be the first write of its
transaction (its xid is taken then, after the stream was read), or a later version of a
stream could sort before an earlier one. `Transaction.append` therefore comes before the
inbox row and read-model writes in every transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import msgspec

from shared.case import NO_CASE, Case, replay
from shared.clock import Clock, system_clock
from shared.events import SCHEMA_VERSION, CaseEvent, Event, decode, encode, type_name

GENESIS = bytes(32)
_json = msgspec.json.Encoder()


class ConcurrencyError(Exception):
    """The stream moved on since it was read: reload, decide again, retry."""


class IdempotencyConflict(Exception):
    """Some, not all, of the event ids were stored before: a caller reused ids."""


class Metadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    correlation_id: UUID
    causation_id: UUID | None = None
    actor: str = ""


_metadata_decoder = msgspec.json.Decoder(Metadata)


class Checkpoint(msgspec.Struct, frozen=True, order=True):
    tx: int = 0
    position: int = 0


ORIGIN = Checkpoint()


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    tx: int
    event_id: UUID
    stream_id: str
    version: int
    type: str
    schema_version: int
    data: str  # the exact stored JSON text
    metadata: Metadata
    recorded_at: datetime
    hash: bytes

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.tx, self.position)

    def event(self) -> CaseEvent:
        return decode(self.data, self.schema_version)


class AppendResult(msgspec.Struct, frozen=True):
    stream_id: str
    version: int  # the stream's version after the append
    positions: tuple[int, ...]
    duplicate: bool = False  # every event id was stored before: nothing written


def case_stream(case_id: UUID) -> str:
    return f"case-{case_id}"


def event_hash(
    prev: bytes,
    *,
    stream_id: str,
    version: int,
    event_id: UUID,
    type: str,
    schema_version: int,
    data: str,
    metadata: str,
    recorded_at: datetime,
) -> bytes:
    """SHA-256 over the previous hash and the stored bytes of one event (the chain link)."""
    body = _json.encode(
        [stream_id, version, str(event_id), type, schema_version, data, metadata, recorded_at.isoformat()]
    )
    return hashlib.sha256(prev + body).digest()


def recorded_hash(prev: bytes, row: RecordedEvent) -> bytes:
    """The chain link a stored row should carry, recomputed from its stored bytes."""
    return event_hash(
        prev,
        stream_id=row.stream_id,
        version=row.version,
        event_id=row.event_id,
        type=row.type,
        schema_version=row.schema_version,
        data=row.data,
        metadata=_json.encode(row.metadata).decode(),
        recorded_at=row.recorded_at,
    )


def chain_breaks(rows: Sequence[RecordedEvent]) -> list[str]:
    """Recompute one stream's chain (rows in version order); describe every break found."""
    problems: list[str] = []
    prev = GENESIS
    for expected_version, row in enumerate(rows, start=1):
        if row.version != expected_version:
            problems.append(f"{row.stream_id}: version {expected_version} missing, found {row.version}")
            return problems
        if recorded_hash(prev, row) != row.hash:
            problems.append(f"{row.stream_id}@{row.version}: stored hash does not match its bytes")
        prev = row.hash
    return problems


_COLUMNS = (
    "position, tx::text::bigint AS tx, event_id, stream_id, version, type, schema_version, "
    "data::text AS data, metadata::text AS metadata, recorded_at, hash"
)


def _recorded(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        position=row["position"],
        tx=row["tx"],
        event_id=row["event_id"],
        stream_id=row["stream_id"],
        version=row["version"],
        type=row["type"],
        schema_version=row["schema_version"],
        data=row["data"],
        metadata=_metadata_decoder.decode(row["metadata"]),
        recorded_at=row["recorded_at"],
        hash=bytes(row["hash"]),
    )


class Transaction:
    """One PostgreSQL transaction: appends, reads and inbox rows commit together."""

    def __init__(self, conn: Any, clock: Clock) -> None:
        self.conn = conn
        self._clock = clock

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
        """
        ids = list(event_ids) if event_ids is not None else [uuid4() for _ in events]
        if len(ids) != len(events):
            raise ValueError("one event id per event")
        if not events:
            return AppendResult(stream_id, expected_version, ())
        head = await self.conn.fetchrow(
            """SELECT (SELECT count(*) FROM events WHERE event_id = ANY($2::uuid[])) AS stored,
                      h.version, h.hash
               FROM (SELECT 1) AS one
               LEFT JOIN LATERAL (SELECT version, hash FROM events WHERE stream_id = $1
                                  ORDER BY version DESC LIMIT 1) AS h ON true""",
            stream_id,
            ids,
        )
        if head["stored"]:
            return await self._stored_result(stream_id, ids)
        current = head["version"] or 0
        if current != expected_version:
            raise ConcurrencyError(f"{stream_id} is at version {current}, expected {expected_version}")
        prev = bytes(head["hash"]) if head["hash"] is not None else GENESIS
        now = self._clock()
        meta = _json.encode(metadata).decode()
        versions, types, datas, hashes = [], [], [], []
        for offset, (event, event_id) in enumerate(zip(events, ids, strict=True), start=1):
            version = expected_version + offset
            data = encode(event).decode()
            prev = event_hash(
                prev,
                stream_id=stream_id,
                version=version,
                event_id=event_id,
                type=type_name(event),
                schema_version=SCHEMA_VERSION,
                data=data,
                metadata=meta,
                recorded_at=now,
            )
            versions.append(version)
            types.append(type_name(event))
            datas.append(data)
            hashes.append(prev)
        try:
            rows = await self.conn.fetch(
                """INSERT INTO events (event_id, stream_id, version, type, schema_version,
                                       data, metadata, recorded_at, hash)
                   SELECT e.id, $2, e.version, e.type, $3, e.data::json, $4::json, $5, e.hash
                   FROM unnest($1::uuid[], $6::int[], $7::text[], $8::text[], $9::bytea[])
                        AS e(id, version, type, data, hash)
                   RETURNING position""",
                ids,
                stream_id,
                SCHEMA_VERSION,
                meta,
                now,
                versions,
                types,
                datas,
                hashes,
            )
        except asyncpg.UniqueViolationError as exc:
            # A racing writer took the version, or appended the same event id first.
            raise ConcurrencyError(f"{stream_id}: {exc.constraint_name}") from exc
        return AppendResult(stream_id, versions[-1], tuple(sorted(r["position"] for r in rows)))

    async def _stored_result(self, stream_id: str, ids: list[UUID]) -> AppendResult:
        rows = await self.conn.fetch(
            "SELECT stream_id, version, position FROM events WHERE event_id = ANY($1::uuid[])", ids
        )
        if len(rows) != len(set(ids)) or any(r["stream_id"] != stream_id for r in rows):
            raise IdempotencyConflict(f"{stream_id}: event ids partly stored, or stored on another stream")
        return AppendResult(
            stream_id,
            max(r["version"] for r in rows),
            tuple(sorted(r["position"] for r in rows)),
            duplicate=True,
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
        rows = await self.conn.fetch(
            f"""SELECT {_COLUMNS} FROM events
                WHERE stream_id = $1 AND version >= $2
                  AND ($3::int IS NULL OR version <= $3)
                  AND ($4::timestamptz IS NULL OR recorded_at <= $4)
                ORDER BY version""",
            stream_id,
            from_version,
            to_version,
            until,
        )
        return [_recorded(r) for r in rows]

    async def load(self, case_id: UUID) -> tuple[Case, int]:
        """The case folded from its events, and the version it reflects (0: no such case)."""
        rows = await self.read_stream(case_stream(case_id))
        if not rows:
            return NO_CASE, 0
        return replay(r.event() for r in rows), rows[-1].version

    async def processed(self, consumer: str, event_id: UUID) -> bool:
        return bool(
            await self.conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND event_id = $2)",
                consumer,
                event_id,
            )
        )

    async def mark_processed(self, consumer: str, event_id: UUID) -> None:
        """Record the message as handled; a concurrent twin that got here first aborts us."""
        inserted = await self.conn.fetchval(
            """INSERT INTO inbox (consumer, event_id) VALUES ($1, $2)
               ON CONFLICT DO NOTHING RETURNING true""",
            consumer,
            event_id,
        )
        if not inserted:
            raise ConcurrencyError(f"{consumer} handled {event_id} concurrently")


class EventStore:
    """The append-only log. Every method runs in its own transaction unless given one."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock = system_clock) -> None:
        self.pool = pool
        self.clock = clock

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield Transaction(conn, self.clock)

    async def append(
        self,
        stream_id: str,
        events: Sequence[Event],
        *,
        expected_version: int,
        metadata: Metadata,
        event_ids: Sequence[UUID] | None = None,
    ) -> AppendResult:
        # One INSERT … SELECT FROM unnest is atomic by itself, and the (stream_id, version) key
        # catches a racing writer, so a lone append needs no BEGIN/COMMIT round trips.
        async with self.pool.acquire() as conn:
            return await Transaction(conn, self.clock).append(
                stream_id, events, expected_version=expected_version, metadata=metadata, event_ids=event_ids
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
            return await Transaction(conn, self.clock).read_stream(
                stream_id, from_version=from_version, to_version=to_version, until=until
            )

    async def load(self, case_id: UUID) -> tuple[Case, int]:
        async with self.pool.acquire() as conn:
            return await Transaction(conn, self.clock).load(case_id)

    async def read_all(self, after: Checkpoint = ORIGIN, limit: int = 500) -> list[RecordedEvent]:
        """Committed events past `after`, in (tx, position) order, never skipping a late commit."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"""SELECT {_COLUMNS} FROM events
                    WHERE (tx, position) > ($1::text::xid8, $2::bigint)
                      AND tx < pg_snapshot_xmin(pg_current_snapshot())
                    ORDER BY events.tx, events.position  -- qualified: a bare name would sort by the cast alias
                    LIMIT $3""",
                str(after.tx),
                after.position,
                limit,
            )
        return [_recorded(r) for r in rows]

    async def head(self) -> Checkpoint:
        """The (tx, position) of the last event readers can see now."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                """SELECT tx::text::bigint AS tx, position FROM events
                   WHERE tx < pg_snapshot_xmin(pg_current_snapshot())
                   ORDER BY events.tx DESC, events.position DESC LIMIT 1"""
            )
        return Checkpoint(row["tx"], row["position"]) if row else Checkpoint()
