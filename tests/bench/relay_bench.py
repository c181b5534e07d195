"""Relay figure: events/s the relay publishes to JetStream beside raw pipelined publish_async."""

from __future__ import annotations

import asyncio
from time import perf_counter
from uuid import uuid4

import asyncpg
import nats
from msgspec.structs import replace
from nats.js import JetStreamContext

from shared.base.config import Settings
from shared.messaging.bus import ensure_stream, headers_for, subject_for
from shared.messaging.relay import Relay
from shared.store.db import create_pool
from shared.store.eventstore import ORIGIN, EventStore, RecordedEvent, case_stream
from tests import examples
from tests.bench.eventstore_bench import ROUNDS, Figure

CASES = 1_500  # 7 events each
APPEND_CONCURRENCY = 8
TIMEOUT = 120.0


async def fill_log(store: EventStore) -> list[RecordedEvent]:
    """CASES cases of seven events (one append each), and the whole log as read back."""
    queue = list(range(CASES))

    async def writer() -> None:
        while queue:
            queue.pop()
            case_id = uuid4()
            events = [replace(e, case_id=case_id) for e in examples.until_verifying()]
            await store.append(case_stream(case_id), events, expected_version=0, metadata=examples.METADATA)

    await asyncio.gather(*(writer() for _ in range(APPEND_CONCURRENCY)))
    records: list[RecordedEvent] = []
    while batch := await store.read_all(records[-1].checkpoint if records else ORIGIN):
        records += batch
    return records


async def stream_for(js: JetStreamContext, name: str) -> Settings:
    """A fresh JetStream stream configured as the services configure theirs."""
    settings = Settings(nats_stream=name.upper(), subject_prefix=name.lower())
    await ensure_stream(js, settings)
    return settings


async def relay_rate(store: EventStore, js: JetStreamContext, total: int, name: str) -> float:
    """Start a relay with no checkpoint and time it until it has published the whole log."""
    settings = await stream_for(js, name)
    relay = Relay(store, js, stream=settings.nats_stream, subject_prefix=settings.subject_prefix, name=name)
    stop = asyncio.Event()
    start = perf_counter()
    task = asyncio.create_task(relay.run(stop))
    try:
        while relay.published < total:
            if task.done():
                task.result()
                raise RuntimeError("relay stopped early")
            if perf_counter() - start > TIMEOUT:
                raise TimeoutError(f"relay published {relay.published} of {total} in {TIMEOUT}s")
            await asyncio.sleep(0.002)
        return total / (perf_counter() - start)
    finally:
        stop.set()
        await task


async def raw_rate(js: JetStreamContext, records: list[RecordedEvent], name: str) -> float:
    """The same subjects, payloads and headers (Nats-Msg-Id included), all pipelined at once."""
    settings = await stream_for(js, name)
    messages = [(subject_for(settings.subject_prefix, r, r.event()), r.data.encode(), headers_for(r)) for r in records]
    start = perf_counter()
    futures = [
        await js.publish_async(subject, payload, stream=settings.nats_stream, headers=headers)
        for subject, payload, headers in messages
    ]
    acks = await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT)
    elapsed = perf_counter() - start
    if any(ack.duplicate for ack in acks):
        raise RuntimeError("raw publishing hit the duplicate window: the stream was not fresh")
    return len(records) / elapsed


async def run(service_url: str, nats_url: str) -> list[Figure]:
    pool: asyncpg.Pool = await create_pool(service_url, size=APPEND_CONCURRENCY + 2)
    nc = await nats.connect(nats_url)
    try:
        store = EventStore(pool)
        records = await fill_log(store)
        js = nc.jetstream()
        raw, ours = 0.0, 0.0
        for n in range(ROUNDS):
            raw = max(raw, await raw_rate(js, records, f"bench_raw_{n}"))
            ours = max(ours, await relay_rate(store, js, len(records), f"bench_relay_{n}"))
        return [
            Figure(
                f"relay to JetStream, {len(records):,} events",
                ours,
                raw,
                "raw pipelined publish_async",
                0.5,
            )
        ]
    finally:
        await nc.close()
        await pool.close()
