"""The outside reference: the same append and replay workloads with the `eventsourcing` library.

eventsourcing 9.x with its PostgreSQL persistence (psycopg 3, a connection pool, one table per
application, `LOCK TABLE … IN EXCLUSIVE MODE` inside each insert so its notification ids commit
in order). Its API is synchronous, so its writers are threads; ours are asyncio tasks on one
pool. Each side writes one CaseReported-sized event per commit to a new aggregate (stream),
then replays its whole log in batches of 500 and decodes every event into its domain object.
The ratio is ours / eventsourcing's.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import threading
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import msgspec

from shared.store.db import create_pool
from shared.store.eventstore import ORIGIN, EventStore
from tests import examples
from tests.bench.eventstore_bench import ROUNDS, SECONDS, WARMUP, Appenders, Figure, throughput

WRITERS = 16
BATCH = 500
PAYLOAD = msgspec.to_builtins(examples.case_reported())


def _application(admin_url: str, database: str, pool: int) -> Any:
    from eventsourcing.application import Application

    url = urlsplit(admin_url)
    return Application(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": database,
            "POSTGRES_HOST": url.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_USER": url.username or "postgres",
            "POSTGRES_PASSWORD": url.password or "",
            "POSTGRES_POOL_SIZE": str(pool),
            "POSTGRES_MAX_OVERFLOW": "0",
        }
    )


@functools.cache
def _reported_class() -> Any:
    from eventsourcing.domain import Aggregate, event

    class Reported(Aggregate):
        """A case with the same payload as our CaseReported."""

        @event("CaseReported")
        def __init__(self, data: dict[str, Any]) -> None:
            self.data = data

    return Reported


def es_append_rate(app: Any, writers: int, seconds: float) -> float:
    """New aggregates saved per second by `writers` threads (one event per commit)."""
    reported = _reported_class()
    deadline = perf_counter() + seconds
    counts = [0] * writers
    start = threading.Barrier(writers + 1)

    def loop(i: int) -> None:
        start.wait()
        while perf_counter() < deadline:
            app.save(reported(data=PAYLOAD))
            counts[i] += 1

    with ThreadPoolExecutor(writers) as pool:
        futures = [pool.submit(loop, i) for i in range(writers)]
        begin = perf_counter()
        start.wait()
        for f in futures:
            f.result()
    return sum(counts) / (perf_counter() - begin)


def es_replay_rate(app: Any) -> tuple[float, int]:
    """Every notification read in batches of BATCH and turned back into its domain event."""
    begin, count, start = perf_counter(), 0, 1
    while notifications := app.recorder.select_notifications(start, BATCH):
        for notification in notifications:
            app.mapper.to_domain_event(notification)
        count += len(notifications)
        start = notifications[-1].id + 1
    return count / (perf_counter() - begin), count


async def ours_replay_rate(store: EventStore) -> tuple[float, int]:
    """Every event read in batches of BATCH and decoded into its event struct (store.replay)."""
    begin, count, checkpoint = perf_counter(), 0, ORIGIN
    while batch := await store.replay(checkpoint, limit=BATCH):
        count += len(batch)
        checkpoint = batch[-1].checkpoint
    return count / (perf_counter() - begin), count


async def run(admin_url: str, service_url: str, es_database: str) -> list[Figure]:
    """`service_url`: our store's database; `es_database` on the same server: eventsourcing's."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{es_database}"')
    finally:
        await conn.close()
    app = await asyncio.to_thread(_application, admin_url, es_database, WRITERS)
    pool = await create_pool(service_url, size=WRITERS)
    try:
        store = EventStore(pool)
        appenders = Appenders(pool, store)
        await asyncio.to_thread(es_append_rate, app, WRITERS, WARMUP)
        await throughput(WRITERS, WARMUP, appenders.new_stream)
        es_rates: list[float] = []
        our_rates: list[float] = []
        for _ in range(ROUNDS):  # the median of, taking turns
            es_rates.append(await asyncio.to_thread(es_append_rate, app, WRITERS, SECONDS))
            our_rates.append(await throughput(WRITERS, SECONDS, appenders.new_stream))
        es_append, ours_append = statistics.median(es_rates), statistics.median(our_rates)
        es_replay = ours_replay = 0.0
        for _ in range(3):
            rate, es_events = await asyncio.to_thread(es_replay_rate, app)
            es_replay = max(es_replay, rate)
            rate, our_events = await ours_replay_rate(store)
            ours_replay = max(ours_replay, rate)
    finally:
        await pool.close()
        await asyncio.to_thread(app.close)
    return [
        Figure(
            f"append vs eventsourcing, {WRITERS} writers",
            ours_append,
            es_append,
            f"eventsourcing 9 + psycopg, {WRITERS} threads",
            10.0,
            note="one event per commit, new stream each",
        ),
        Figure(
            f"replay vs eventsourcing ({our_events:,} / {es_events:,} events)",
            ours_replay,
            es_replay,
            "eventsourcing select_notifications + mapper",
            10.0,
        ),
    ]
