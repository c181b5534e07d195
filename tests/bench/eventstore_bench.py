"""Event store figures: append and read_all throughput beside raw asyncpg INSERT and SELECT."""

from __future__ import annotations

import asyncio
import os
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from time import perf_counter
from uuid import UUID, uuid4

import asyncpg
import msgspec
from msgspec.structs import replace

from shared.domain.case import NO_CASE, Case, evolve
from shared.domain.events import encode, type_name
from shared.store.db import SERVICE_ROLE, create_pool
from shared.store.eventstore import ORIGIN, EventStore, case_stream
from shared.store.records import COLUMNS
from tests import examples

SECONDS = 1.5  # per append measurement
WARMUP = 0.5
ROUNDS = 5  # the median of, the ops taking turns: a shared VM's disk drifts by 2× within a minute
WRITERS = (1, 16)
STREAMS_PER_WRITER = 32  # the existing-streams variant cycles through these
BATCH = 500


@dataclass(frozen=True)
class Figure:
    """One measured figure beside its baseline (both in events/s, same run, same server)."""

    name: str
    ours: float
    baseline: float
    baseline_name: str
    target: float | None = None  # the lowest acceptable ours/baseline, where one is set
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.ratio >= self.target


Op = Callable[[int], Awaitable[int]]  # writer index -> events written


async def throughput(writers: int, seconds: float, op: Op) -> float:
    """Events/s of `writers` concurrent loops calling `op` until the deadline."""
    deadline = perf_counter() + seconds

    async def loop(writer: int) -> int:
        count = 0
        while perf_counter() < deadline:
            count += await op(writer)
        return count

    start = perf_counter()
    counts = await asyncio.gather(*(loop(w) for w in range(writers)))
    return sum(counts) / (perf_counter() - start)


async def interleaved(writers: int, ops: list[Op], seconds: float = SECONDS) -> list[float]:
    """The median of ROUNDS for each op, the ops taking turns so that drift hits them alike."""
    for op in ops:
        await throughput(writers, WARMUP, op)
    rates: list[list[float]] = [[] for _ in ops]
    for _ in range(ROUNDS):
        for i, op in enumerate(ops):
            rates[i].append(await throughput(writers, seconds, op))
    return [statistics.median(r) for r in rates]


async def create_raw_table(admin_url: str) -> None:
    """`bench_raw`: the events table's columns, defaults, identity, keys and indexes; no triggers."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute("DROP TABLE IF EXISTS bench_raw")
        await conn.execute("CREATE TABLE bench_raw (LIKE events INCLUDING ALL)")
        await conn.execute(f"GRANT SELECT, INSERT ON bench_raw TO {SERVICE_ROLE}")
    finally:
        await conn.close()


class Appenders:
    """The three ways of writing one event per commit that the append figures compare."""

    def __init__(self, pool: asyncpg.Pool, store: EventStore) -> None:
        self.pool = pool
        self.store = store
        self.alone = EventStore(pool, group_commit=False)  # each append its own statement and commit
        self.data = encode(examples.case_reported()).decode()
        self.type = type_name(examples.case_reported())
        self.metadata = msgspec.json.encode(examples.METADATA).decode()
        self.hash = os.urandom(32)
        self.streams: list[list[tuple[UUID, int]]] = []

    async def raw(self, _: int) -> int:
        """One autocommit single-row INSERT of precomputed values into `bench_raw`."""
        await self.pool.execute(
            """INSERT INTO bench_raw (event_id, stream_id, version, type, schema_version,
                                      data, metadata, recorded_at, hash)
               VALUES ($1, $2, 1, $3, 1, $4::json, $5::json, $6, $7)""",
            uuid4(),
            f"case-{uuid4()}",
            self.type,
            self.data,
            self.metadata,
            datetime.now(UTC),
            self.hash,
        )
        return 1

    async def new_stream(self, _: int) -> int:
        case_id = uuid4()
        await self.store.append(
            case_stream(case_id),
            [examples.case_reported(case_id=case_id)],
            expected_version=0,
            metadata=examples.METADATA,
        )
        return 1

    async def new_stream_alone(self, _: int) -> int:
        case_id = uuid4()
        await self.alone.append(
            case_stream(case_id),
            [examples.case_reported(case_id=case_id)],
            expected_version=0,
            metadata=examples.METADATA,
        )
        return 1

    async def create_streams(self, writers: int) -> None:
        async def one() -> tuple[UUID, int]:
            case_id = uuid4()
            result = await self.store.append(
                case_stream(case_id),
                [examples.case_reported(case_id=case_id)],
                expected_version=0,
                metadata=examples.METADATA,
            )
            return case_id, result.version

        self.streams = [list(await asyncio.gather(*(one() for _ in range(STREAMS_PER_WRITER)))) for _ in range(writers)]
        self._next = [0] * writers

    async def existing_stream(self, writer: int) -> int:
        """Append to one of this writer's own streams at its known version (no conflicts)."""
        streams = self.streams[writer]
        index = self._next[writer] = (self._next[writer] + 1) % len(streams)
        case_id, version = streams[index]
        result = await self.store.append(
            case_stream(case_id),
            [replace(examples.task_accepted(), case_id=case_id)],
            expected_version=version,
            metadata=examples.METADATA,
        )
        streams[index] = (case_id, result.version)
        return 1


async def append_figures(pool: asyncpg.Pool, store: EventStore) -> list[Figure]:
    appenders = Appenders(pool, store)
    await appenders.create_streams(max(WRITERS))
    figures: list[Figure] = []
    for writers in WRITERS:
        raw, new, existing, alone = await interleaved(
            writers, [appenders.raw, appenders.new_stream, appenders.existing_stream, appenders.new_stream_alone]
        )
        target = 0.6 if writers == max(WRITERS) else None
        baseline = f"raw INSERT, {writers} conn"
        figures += [
            Figure(f"append, new stream, {writers} writer(s)", new, raw, baseline, target),
            Figure(f"append, existing stream, {writers} writer(s)", existing, raw, baseline, target),
            Figure(
                f"  diagnostic: new stream, {writers} writer(s), no group commit",
                alone,
                raw,
                baseline,
                note="every append its own INSERT and commit, like the baseline",
            ),
        ]
    return figures


Reader = Callable[[], Awaitable[int]]  # reads the whole log once, returns the events read


async def timed_read(reader: Reader) -> tuple[float, int]:
    start = perf_counter()
    count = await reader()
    return count / (perf_counter() - start), count


async def read_figures(pool: asyncpg.Pool, store: EventStore) -> list[Figure]:
    async def read_all(decode: bool) -> int:
        count, checkpoint = 0, ORIGIN
        while batch := await store.read_all(checkpoint, limit=BATCH):
            if decode:
                for record in batch:
                    record.event()
            count += len(batch)
            checkpoint = batch[-1].checkpoint
        return count

    async def raw_select() -> int:
        count, position = 0, 0
        while rows := await pool.fetch(
            "SELECT * FROM events WHERE position > $1 ORDER BY position LIMIT $2", position, BATCH
        ):
            count += len(rows)
            position = rows[-1]["position"]
        return count

    async def sql_only(order_by: str) -> int:
        count, tx, position = 0, "0", 0
        while rows := await pool.fetch(
            f"""SELECT {COLUMNS} FROM events
                WHERE (tx, position) > ($1::text::xid8, $2::bigint)
                  AND tx < pg_snapshot_xmin(pg_current_snapshot())
                ORDER BY {order_by} LIMIT $3""",
            tx,
            position,
            BATCH,
        ):
            count += len(rows)
            tx, position = str(rows[-1]["tx"]), rows[-1]["position"]
        return count

    async def store_sql() -> int:
        return await sql_only("events.tx, events.position")  # as read_all has it: the index order

    async def decoded() -> int:
        return await read_all(decode=True)

    async def folded() -> int:
        """The replay figure: every event read, decoded and folded into its case's state."""
        cases: dict[str, Case] = {}
        count, checkpoint = 0, ORIGIN
        while batch := await store.replay(checkpoint, limit=BATCH):
            for item in batch:
                cases[item.stream_id] = evolve(cases.get(item.stream_id, NO_CASE), item.event)
            count += len(batch)
            checkpoint = batch[-1].checkpoint
        return count

    async def records_only() -> int:
        return await read_all(decode=False)

    async def replayed() -> int:
        count, checkpoint = 0, ORIGIN
        while batch := await store.replay(checkpoint, limit=BATCH):
            count += len(batch)
            checkpoint = batch[-1].checkpoint
        return count

    readers: dict[str, Reader] = {
        "folded": folded,
        "replayed": replayed,
        "decoded": decoded,
        "records": records_only,
        "sql": store_sql,
        "raw": raw_select,
    }
    rates: dict[str, float] = {}
    counts: set[int] = set()
    for reader in readers.values():  # warm the cache and the statement caches
        await reader()
    for _ in range(ROUNDS + 1):
        for name, reader in readers.items():
            rate, count = await timed_read(reader)
            counts.add(count)
            rates[name] = max(rates.get(name, 0.0), rate)
    if len(counts) != 1:
        raise RuntimeError(f"the readers saw different logs: {counts}")
    size = counts.pop()
    baseline = f"raw SELECT by position, batches of {BATCH}"
    return [
        Figure(f"replay into state (read, decode, fold), {size:,} ev.", rates["folded"], rates["raw"], baseline, 0.5),
        Figure("  diagnostic: replay, read + decode, no fold", rates["replayed"], rates["raw"], baseline),
        Figure("  diagnostic: read_all + event() decode (every column)", rates["decoded"], rates["raw"], baseline),
        Figure("  diagnostic: read_all, RecordedEvent only", rates["records"], rates["raw"], baseline),
        Figure("  diagnostic: read_all's SQL, rows only", rates["sql"], rates["raw"], baseline),
    ]


async def run(admin_url: str, service_url: str) -> list[Figure]:
    await create_raw_table(admin_url)
    pool = await create_pool(service_url, size=max(WRITERS))
    try:
        store = EventStore(pool)
        return [*await append_figures(pool, store), *await read_figures(pool, store)]
    finally:
        await pool.close()
