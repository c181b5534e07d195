"""The consumer kit against real servers: idempotence, dead letters, crash between commit and ack."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import asyncpg
import pytest
from nats.js import JetStreamContext

from shared.base.config import Settings
from shared.domain.events import CaseClosed
from shared.messaging.bus import Delivered, delivered_from
from shared.messaging.consumer import Consumer, ConsumerSpec, ensure_consumer
from shared.store.eventstore import EventStore, Metadata, Transaction, case_stream
from tests import examples
from tests.eventually import eventually
from tests.relaying import relaying


@pytest.fixture
async def js(settings: Settings, store: EventStore) -> AsyncIterator[JetStreamContext]:
    """A JetStream context with the relay running, so appended events reach the stream."""
    async with relaying(settings, store, "consumer-test") as running:
        yield running.js


async def effects_of(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT stream_id FROM events WHERE stream_id LIKE 'effect-%' ORDER BY position")
    return [r["stream_id"] for r in rows]


async def record_effect(tx: Transaction, msg: Delivered) -> None:
    """A handler with one visible effect per event handled: an event on an `effect-` stream."""
    stream = f"effect-{msg.event_id}"
    head = await tx.read_stream(stream)
    await tx.append(
        stream,
        [CaseClosed(case_id=msg.case_id)],
        expected_version=len(head),
        metadata=Metadata(correlation_id=msg.metadata.correlation_id, causation_id=msg.event_id),
    )


def spec(settings: Settings, **overrides: object) -> ConsumerSpec:
    base = {
        "durable": "tester",
        "filter_subjects": (f"{settings.subject_prefix}.CaseReported.>",),
        "max_deliver": 3,
        "ack_wait": 2.0,
        "nak_delay": 0.05,
        "workers": 1,
    }
    base.update(overrides)
    return ConsumerSpec(**base)  # type: ignore[arg-type]


async def report(store: EventStore, description: str = "") -> UUID:
    case_id = uuid4()
    await store.append(
        case_stream(case_id),
        [examples.case_reported(case_id=case_id, description=description or "ok")],
        expected_version=0,
        metadata=examples.METADATA,
    )
    return case_id


async def run_consumer(consumer: Consumer) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(consumer.run(stop))


async def test_each_event_is_handled_once(
    js: JetStreamContext, settings: Settings, store: EventStore, pool: asyncpg.Pool
) -> None:
    consumer = Consumer(js, store, settings.nats_stream, spec(settings), record_effect)
    stop, task = await run_consumer(consumer)
    for _ in range(5):
        await report(store)

    await eventually(lambda: consumer.handled == 5)
    stop.set()
    await task
    assert len(await effects_of(pool)) == 5


async def test_a_poison_message_is_dead_lettered_and_the_ones_behind_it_are_handled(
    js: JetStreamContext, settings: Settings, store: EventStore, pool: asyncpg.Pool
) -> None:
    async def handler(tx: Transaction, msg: Delivered) -> None:
        if getattr(msg.event, "description", "") == "poison":
            raise RuntimeError("this handler always fails on poison")
        await record_effect(tx, msg)

    consumer = Consumer(js, store, settings.nats_stream, spec(settings), handler)
    stop, task = await run_consumer(consumer)
    await report(store)
    poison = await report(store, "poison")
    for _ in range(3):
        await report(store)

    await eventually(lambda: consumer.handled == 4 and consumer.dead_lettered == 1, timeout=30)
    stop.set()
    await task

    dead = await pool.fetch("SELECT consumer, deliveries, error, payload FROM dead_letters")
    assert len(dead) == 1
    assert dead[0]["consumer"] == "tester"
    assert dead[0]["deliveries"] == 3
    assert "always fails" in dead[0]["error"]
    assert str(poison).encode() in dead[0]["payload"]
    assert len(await effects_of(pool)) == 4


async def test_an_undecodable_message_is_dead_lettered_at_once(
    js: JetStreamContext, settings: Settings, store: EventStore, pool: asyncpg.Pool
) -> None:
    consumer = Consumer(js, store, settings.nats_stream, spec(settings), record_effect)
    stop, task = await run_consumer(consumer)
    await js.publish(
        f"{settings.subject_prefix}.CaseReported._.x",
        b'{"type":"CaseReported","case_id":"not-a-uuid"}',
        headers={"ce-type": "caseloop.CaseReported.v1", "ce-id": str(uuid4())},
    )
    await report(store)

    await eventually(lambda: consumer.dead_lettered == 1 and consumer.handled == 1)
    stop.set()
    await task
    assert await pool.fetchval("SELECT deliveries FROM dead_letters") == 1


async def test_a_crash_after_commit_before_ack_has_no_second_effect(
    js: JetStreamContext, settings: Settings, store: EventStore, pool: asyncpg.Pool
) -> None:
    the_spec = spec(settings)
    await ensure_consumer(js, settings.nats_stream, the_spec)
    await report(store)

    # The first delivery: the handler's work and the inbox row commit, then the process
    # dies before its ack reaches the server (the message is simply never acked).
    sub = await js.pull_subscribe_bind(durable=the_spec.durable, stream=settings.nats_stream)
    [msg] = await sub.fetch(1, timeout=5)
    delivered = delivered_from(msg)
    async with store.transaction() as tx:
        await record_effect(tx, delivered)
        tx.inbox_on_commit = (the_spec.durable, delivered.event_id)
    await sub.unsubscribe()

    # After ack_wait the server redelivers to the restarted consumer.
    consumer = Consumer(js, store, settings.nats_stream, the_spec, record_effect)
    stop, task = await run_consumer(consumer)
    await eventually(lambda: consumer.handled == 1, timeout=20)
    stop.set()
    await task

    assert len(await effects_of(pool)) == 1
    info = await js.consumer_info(settings.nats_stream, the_spec.durable)
    assert consumer.duplicates == 1, "the redelivery should have been absorbed by the inbox"
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_a_batchs_cases_are_handled_side_by_side_and_each_cases_events_in_order(
    js: JetStreamContext, settings: Settings, store: EventStore
) -> None:
    seen: dict[UUID, list[int]] = {}
    running = peak = 0
    overlapped = asyncio.Event()

    async def slow_handler(tx: Transaction, msg: Delivered) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running > 1:
            overlapped.set()
        # Held until another case's handler has started too: one case at a time never gets there,
        # and the cap only keeps such a consumer from hanging the test (it then fails below).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(overlapped.wait(), timeout=10)
        running -= 1
        seen.setdefault(msg.case_id, []).append(int(msg.event.description))  # type: ignore[union-attr]

    cases = [uuid4() for _ in range(4)]
    for n in range(3):  # three reports a case (the handler does not care that they repeat)
        for case_id in cases:
            await store.append(
                case_stream(case_id),
                [examples.case_reported(case_id=case_id, description=str(n))],
                expected_version=n,
                metadata=examples.METADATA,
            )
    await eventually(lambda: _stored(js, settings.nats_stream, 12))  # so one fetch can bring the whole batch
    consumer = Consumer(js, store, settings.nats_stream, spec(settings, durable="batcher", batch=32), slow_handler)
    stop, task = await run_consumer(consumer)
    try:
        await eventually(lambda: consumer.handled == 12, timeout=20)
    finally:
        stop.set()
        await task

    assert seen == {case_id: [0, 1, 2] for case_id in cases}
    assert peak > 1  # different cases overlapped


async def _stored(js: JetStreamContext, stream: str, count: int) -> bool:
    return (await js.stream_info(stream)).state.messages >= count
