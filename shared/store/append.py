"""The append paths: chained rows, the guarded INSERT of one stream, and many streams' INSERT in one batch.

Both paths write the same rows (`chained_rows`) with the same guard, checked in the statement
itself: the stream's head is still the one the writer chained to, and none of the event ids is
stored; otherwise nothing is written. The head comes from `HeadHints` when this process knows
it (no round trip), else from a read of the head (`append_checked`'s slow path).

`append_checked` runs on the caller's connection, inside its transaction, where the events
INSERT must be the first write (see shared/store/eventstore.py). `grouped_appends` batches
lone appends to distinct streams: one statement, one commit (shared/store/groupcommit.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import msgspec

from shared.domain.events import Event, encode, type_name
from shared.store.groupcommit import GroupCommit
from shared.store.hashchain import GENESIS, event_hash
from shared.store.records import AppendResult, ConcurrencyError, IdempotencyConflict, Metadata

_json = msgspec.json.Encoder()


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


class Rows(msgspec.Struct):
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


def _append_args(batch: Sequence[Rows]) -> tuple[Any, ...]:
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


def chained_rows(
    stream_id: str,
    events: Sequence[Event],
    ids: list[UUID],
    expected_version: int,
    prev: bytes,
    metadata: Metadata,
    now: datetime,
) -> Rows:
    meta = _json.encode(metadata).decode()
    rows = Rows(
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


def ids_for(events: Sequence[Event], event_ids: Sequence[UUID] | None) -> list[UUID]:
    """The given event ids (one per event), or fresh ones."""
    ids = list(event_ids) if event_ids is not None else [uuid4() for _ in events]
    if len(ids) != len(events):
        raise ValueError("one event id per event")
    return ids


async def append_checked(
    conn: Any,
    heads: HeadHints,
    clock: Callable[[], datetime],
    stream_id: str,
    events: Sequence[Event],
    ids: list[UUID],
    *,
    expected_version: int,
    metadata: Metadata,
) -> AppendResult:
    """One stream's append on `conn` (Transaction.append): the guarded INSERT, reading the head
    first when no hint has it, and once more if the INSERT wrote nothing."""
    prev = GENESIS if expected_version == 0 else heads.get(stream_id, expected_version)
    for _ in range(2):
        if prev is None:
            checked = await _check_head(conn, stream_id, ids, expected_version)
            if isinstance(checked, AppendResult):
                return checked
            prev = checked
        rows = chained_rows(stream_id, events, ids, expected_version, prev, metadata, clock())
        result = await _insert(conn, heads, rows)
        if result is not None:
            return result
        prev = None  # nothing written: stored ids, a moved stream, or a stale hint; look
    raise ConcurrencyError(f"{stream_id} moved while appending at version {expected_version}")


async def _check_head(conn: Any, stream_id: str, ids: list[UUID], expected_version: int) -> bytes | AppendResult:
    """The head's hash if the stream is at `expected_version`; what was stored if the ids were."""
    head = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM events WHERE event_id = ANY($2::uuid[])) AS stored,
                  h.version, h.hash
           FROM (SELECT 1) AS one
           LEFT JOIN LATERAL (SELECT version, hash FROM events WHERE stream_id = $1
                              ORDER BY version DESC LIMIT 1) AS h ON true""",
        stream_id,
        ids,
    )
    if head["stored"]:
        return await _stored_result(conn, stream_id, ids)
    current = head["version"] or 0
    if current != expected_version:
        raise ConcurrencyError(f"{stream_id} is at version {current}, expected {expected_version}")
    return bytes(head["hash"]) if head["hash"] is not None else GENESIS


async def _insert(conn: Any, heads: HeadHints, rows: Rows) -> AppendResult | None:
    """The guarded INSERT: None when the head is not the one `rows` chain to or an id is stored."""
    try:
        written = await conn.fetch(
            _APPEND,
            rows.ids,
            rows.stream_id,
            rows.schema_versions,
            rows.metadata,
            rows.recorded_at,
            rows.versions,
            rows.types,
            rows.datas,
            rows.hashes,
            rows.expected_version,
            rows.head_hash,
        )
    except asyncpg.UniqueViolationError as exc:
        # A racing writer took the version, or appended the same event id first.
        raise ConcurrencyError(f"{rows.stream_id}: {exc.constraint_name}") from exc
    if not written:
        return None
    heads.put(rows.stream_id, rows.versions[-1], rows.hashes[-1])
    return rows.result([r["position"] for r in written])


async def _stored_result(conn: Any, stream_id: str, ids: list[UUID]) -> AppendResult:
    rows = await conn.fetch("SELECT stream_id, version, position FROM events WHERE event_id = ANY($1::uuid[])", ids)
    if len(rows) != len(set(ids)) or any(r["stream_id"] != stream_id for r in rows):
        raise IdempotencyConflict(f"{stream_id}: event ids partly stored, or stored on another stream")
    return AppendResult(
        stream_id,
        max(r["version"] for r in rows),
        tuple(sorted(r["position"] for r in rows)),
        duplicate=True,
    )


async def append_many(pool: asyncpg.Pool, heads: HeadHints, batch: list[Rows]) -> list[AppendResult | None]:
    """One statement, one commit for a batch of appends to distinct streams.

    None for an append left out (its guard failed); None for all of them when a racing
    writer elsewhere took a version (the statement fails whole): each then goes alone.
    """
    try:
        async with pool.acquire() as conn:
            written = await conn.fetch(_APPEND_MANY, *_append_args(batch))
    except asyncpg.UniqueViolationError:
        return [None] * len(batch)
    positions = _positions(written)
    results: list[AppendResult | None] = []
    for rows in batch:
        if stream_positions := positions.get(rows.stream_id):
            heads.put(rows.stream_id, rows.versions[-1], rows.hashes[-1])
            results.append(rows.result(stream_positions))
        else:
            results.append(None)
    return results


def grouped_appends(pool: asyncpg.Pool, heads: HeadHints) -> GroupCommit[Rows, AppendResult | None]:
    """Lone appends queued while a batch is written go together in the next: at most one per stream."""
    return GroupCommit(partial(append_many, pool, heads), key=lambda rows: rows.stream_id)
