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

import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import msgspec

from shared.base.clock import Clock, system_clock
from shared.domain.case import NO_CASE, Case, replay
from shared.domain.events import CaseEvent, Event, decode, encode, type_name
from shared.store.groupcommit import GroupCommit

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


class RecordedEvent(msgspec.Struct, frozen=True):
    """One stored row. Fields in `_COLUMNS` order: a row is built positionally, the hot path of replay."""

    position: int
    tx: int
    event_id: UUID
    stream_id: str
    version: int
    type: str
    schema_version: int
    data: str  # the exact stored JSON text
    metadata_json: str  # likewise; decoded on demand by `metadata`
    recorded_at: datetime
    hash: bytes

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.tx, self.position)

    @property
    def metadata(self) -> Metadata:
        return _metadata_decoder.decode(self.metadata_json)

    def event(self) -> CaseEvent:
        return decode(self.data, self.schema_version)


class Replayed(msgspec.Struct, frozen=True, array_like=True):
    """What folding the log into state needs of one event: where it sits, whose it is, what it says."""

    tx: int
    position: int
    stream_id: str
    version: int
    event: CaseEvent

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.tx, self.position)


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
        metadata=row.metadata_json,
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
    return RecordedEvent(*row)  # _COLUMNS order; asyncpg gives bytea as bytes


class HeadHints:
    """A bounded memo of each stream's last (version, hash) this process saw: a hint, never trusted.

    It spares an append the round trip that reads the head: the INSERT itself checks, in the
    same statement, that the stream's head is still the one remembered, and writes nothing
    otherwise (then the slow path reads the head and tells a stale hint from a moved stream).
    """

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._heads: dict[str, tuple[int, bytes]] = {}

    def get(self, stream_id: str, version: int) -> bytes | None:
        head = self._heads.get(stream_id)
        return head[1] if head is not None and head[0] == version else None

    def put(self, stream_id: str, version: int, hash: bytes) -> None:
        heads = self._heads
        heads.pop(stream_id, None)
        heads[stream_id] = (version, hash)
        if len(heads) > self.size:
            del heads[next(iter(heads))]  # the least recently written


# One stream's append, guarded in the statement itself: the head is still ($10, $11) and none of
# the event ids is stored; otherwise nothing is written and the caller reads the head to see why.
_APPEND = """
    WITH head AS (SELECT version, hash FROM events WHERE stream_id = $2 ORDER BY version DESC LIMIT 1)
    INSERT INTO events (event_id, stream_id, version, type, schema_version, data, metadata, recorded_at, hash)
    SELECT e.id, $2, e.version, e.type, e.schema_version, e.data::json, $4::json, $5, e.hash
    FROM unnest($1::uuid[], $6::int[], $7::text[], $8::text[], $9::bytea[], $3::smallint[])
         AS e(id, version, type, data, hash, schema_version)
    WHERE coalesce((SELECT version FROM head), 0) = $10
      AND (SELECT hash FROM head) IS NOT DISTINCT FROM $11::bytea
      AND NOT EXISTS (SELECT 1 FROM events WHERE event_id = ANY($1::uuid[]))
    RETURNING position"""

# Many streams' appends in one statement (group commit), each stream with _APPEND's guard; a
# stream whose guard fails is left out. Not used for a single append: run by 16 concurrent
# one-append writers it was half as fast as _APPEND (bench: "no group commit", 33 % vs 62 %).
_APPEND_MANY = """
    WITH e AS (
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[],
                             $7::timestamptz[], $8::bytea[], $12::smallint[]) WITH ORDINALITY
                      AS e(id, stream_id, version, type, data, metadata, recorded_at, hash, schema_version, n)
    ), s AS (
        SELECT * FROM unnest($9::text[], $10::int[], $11::bytea[]) AS s(stream_id, expected, head_hash)
    ), stored AS (  -- streams some of whose event ids are stored already (the index on event_id)
        SELECT DISTINCT e.stream_id FROM events x JOIN e ON e.id = x.event_id WHERE x.event_id = ANY($1::uuid[])
    ), ok AS (
        SELECT s.stream_id FROM s
        LEFT JOIN LATERAL (SELECT version, hash FROM events WHERE events.stream_id = s.stream_id
                           ORDER BY version DESC LIMIT 1) AS h ON true
        WHERE coalesce(h.version, 0) = s.expected AND h.hash IS NOT DISTINCT FROM s.head_hash
          AND s.stream_id NOT IN (SELECT stream_id FROM stored)
    )
    INSERT INTO events (event_id, stream_id, version, type, schema_version, data, metadata, recorded_at, hash)
    SELECT e.id, e.stream_id, e.version, e.type, e.schema_version, e.data::json, e.metadata::json, e.recorded_at,
           e.hash
    FROM e JOIN ok USING (stream_id) ORDER BY e.n
    RETURNING stream_id, version, position"""


class _Rows(msgspec.Struct):
    """One append's rows, chained and ready to insert: the same bytes whichever path writes them."""

    stream_id: str
    expected_version: int
    head_hash: bytes | None  # the hash of version expected_version; None for a new stream
    ids: list[UUID]
    versions: list[int]
    types: list[str]
    schema_versions: list[int]
    datas: list[str]
    metadata: str
    recorded_at: datetime
    hashes: list[bytes]

    def result(self, positions: Sequence[int]) -> AppendResult:
        return AppendResult(self.stream_id, self.versions[-1], tuple(sorted(positions)))


def _append_args(batch: Sequence[_Rows]) -> tuple[Any, ...]:
    """_APPEND_MANY's parameters for appends to distinct streams."""
    ids: list[UUID] = []
    streams: list[str] = []
    versions: list[int] = []
    types: list[str] = []
    schema_versions: list[int] = []
    datas: list[str] = []
    metas: list[str] = []
    times: list[datetime] = []
    hashes: list[bytes] = []
    for rows in batch:
        count = len(rows.ids)
        ids += rows.ids
        streams += [rows.stream_id] * count
        versions += rows.versions
        types += rows.types
        schema_versions += rows.schema_versions
        datas += rows.datas
        metas += [rows.metadata] * count
        times += [rows.recorded_at] * count
        hashes += rows.hashes
    heads = ([r.stream_id for r in batch], [r.expected_version for r in batch], [r.head_hash for r in batch])
    return (ids, streams, versions, types, datas, metas, times, hashes, *heads, schema_versions)


def _positions(written: Sequence[asyncpg.Record]) -> dict[str, list[int]]:
    """_APPEND_MANY's returned rows: the positions written, by stream."""
    positions: dict[str, list[int]] = {}
    for row in written:
        positions.setdefault(row["stream_id"], []).append(row["position"])
    return positions


def _rows(
    stream_id: str,
    events: Sequence[Event],
    ids: list[UUID],
    expected_version: int,
    prev: bytes,
    metadata: Metadata,
    now: datetime,
) -> _Rows:
    meta = _json.encode(metadata).decode()
    rows = _Rows(
        stream_id, expected_version, None if expected_version == 0 else prev, ids, [], [], [], [], meta, now, []
    )
    for offset, (event, event_id) in enumerate(zip(events, ids, strict=True), start=1):
        version = expected_version + offset
        data = encode(event).decode()
        kind = type_name(event)
        prev = event_hash(
            prev,
            stream_id=stream_id,
            version=version,
            event_id=event_id,
            type=kind,
            schema_version=event.schema_version,
            data=data,
            metadata=meta,
            recorded_at=now,
        )
        rows.versions.append(version)
        rows.types.append(kind)
        rows.schema_versions.append(event.schema_version)
        rows.datas.append(data)
        rows.hashes.append(prev)
    return rows


def _event_ids(events: Sequence[Event], event_ids: Sequence[UUID] | None) -> list[UUID]:
    ids = list(event_ids) if event_ids is not None else [uuid4() for _ in events]
    if len(ids) != len(events):
        raise ValueError("one event id per event")
    return ids


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
        ids = _event_ids(events, event_ids)
        if not events:
            return AppendResult(stream_id, expected_version, ())
        self._read.pop(stream_id, None)
        prev = GENESIS if expected_version == 0 else self._heads.get(stream_id, expected_version)
        for _ in range(2):
            if prev is None:
                checked = await self._check_head(stream_id, ids, expected_version)
                if isinstance(checked, AppendResult):
                    return checked
                prev = checked
            result = await self._insert(stream_id, events, ids, expected_version, prev, metadata)
            if result is not None:
                return result
            prev = None  # nothing written: stored ids, a moved stream, or a stale hint; look
        raise ConcurrencyError(f"{stream_id} moved while appending at version {expected_version}")

    async def _check_head(self, stream_id: str, ids: list[UUID], expected_version: int) -> bytes | AppendResult:
        """The head's hash if the stream is at `expected_version`; what was stored if the ids were."""
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
        return bytes(head["hash"]) if head["hash"] is not None else GENESIS

    async def _insert(
        self,
        stream_id: str,
        events: Sequence[Event],
        ids: list[UUID],
        expected_version: int,
        prev: bytes,
        metadata: Metadata,
    ) -> AppendResult | None:
        """The guarded INSERT: None when the head is not (expected_version, prev) or an id is stored."""
        rows = _rows(stream_id, events, ids, expected_version, prev, metadata, self._clock())
        try:
            written = await self.conn.fetch(
                _APPEND,
                ids,
                stream_id,
                rows.schema_versions,
                rows.metadata,
                rows.recorded_at,
                rows.versions,
                rows.types,
                rows.datas,
                rows.hashes,
                expected_version,
                rows.head_hash,
            )
        except asyncpg.UniqueViolationError as exc:
            # A racing writer took the version, or appended the same event id first.
            raise ConcurrencyError(f"{stream_id}: {exc.constraint_name}") from exc
        if not written:
            return None
        self._heads.put(stream_id, rows.versions[-1], rows.hashes[-1])
        return rows.result([r["position"] for r in written])

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
        if from_version == 1 and to_version is None and until is None and stream_id in self._read:
            return list(self._read[stream_id])
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
        records = [_recorded(r) for r in rows]
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
                LEFT JOIN LATERAL (SELECT {_COLUMNS} FROM events WHERE stream_id = $3 ORDER BY version) AS e
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
        self.group: GroupCommit[_Rows, AppendResult | None] | None = (
            GroupCommit(self._append_many, key=lambda rows: rows.stream_id) if group_commit else None
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
        share one INSERT and one commit (shared/groupcommit.py). An append whose head this
        process does not know, or whose guard fails in the batch, takes the one-stream path.
        """
        ids = _event_ids(events, event_ids)
        prev = GENESIS if expected_version == 0 else self.heads.get(stream_id, expected_version)
        if self.group is not None and events and prev is not None:
            rows = _rows(stream_id, events, ids, expected_version, prev, metadata, self.clock())
            if (result := await self.group.submit(rows)) is not None:
                return result
        async with self.pool.acquire() as conn:
            return await Transaction(conn, self.clock, self.heads).append(
                stream_id, events, expected_version=expected_version, metadata=metadata, event_ids=ids
            )

    async def _append_many(self, batch: list[_Rows]) -> list[AppendResult | None]:
        """One statement, one commit for a batch of appends to distinct streams.

        None for an append left out (its guard failed); None for all of them when a racing
        writer elsewhere took a version (the statement fails whole): each then goes alone.
        """
        try:
            async with self.pool.acquire() as conn:
                written = await conn.fetch(_APPEND_MANY, *_append_args(batch))
        except asyncpg.UniqueViolationError:
            return [None] * len(batch)
        positions = _positions(written)
        results: list[AppendResult | None] = []
        for rows in batch:
            if stream_positions := positions.get(rows.stream_id):
                self.heads.put(rows.stream_id, rows.versions[-1], rows.hashes[-1])
                results.append(rows.result(stream_positions))
            else:
                results.append(None)
        return results

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
