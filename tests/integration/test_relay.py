"""The relay against real PostgreSQL and nats-server: log order, exactly once, outages, standby."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from ops.servers import NatsServer
from shared.base.config import Settings
from shared.messaging.bus import connect, delivered_from, ensure_stream
from shared.messaging.relay import Relay
from shared.store.eventstore import EventStore, case_stream
from tests import examples
from tests.eventually import eventually
from tests.relaying import Relaying, relaying


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server this test may stop and restart (same port, same store)."""
    tmp_path.chmod(0o755)
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.kill()


@pytest.fixture
async def relay_settings(settings: Settings, own_nats: NatsServer) -> Settings:
    from msgspec.structs import replace

    return replace(settings, nats_url=own_nats.url)


async def stream_messages(settings: Settings) -> list[nats.aio.msg.Msg]:
    nc = await nats.connect(settings.nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(settings.nats_stream)
        return [await js.get_msg(settings.nats_stream, seq) for seq in range(1, info.state.last_seq + 1)]
    finally:
        await nc.close()


@pytest.fixture
async def running(relay_settings: Settings, store: EventStore) -> AsyncIterator[Relaying]:
    async with relaying(relay_settings, store, "relay-test") as running:
        yield running


@pytest.fixture
def running_relay(running: Relaying) -> Relay:
    return running.relay


async def append_cases(store: EventStore, count: int) -> None:
    from uuid import uuid4

    for _ in range(count):
        case_id = uuid4()
        await store.append(
            case_stream(case_id),
            [examples.case_reported(case_id=case_id), examples.case_dispatched(case_id=case_id)],
            expected_version=0,
            metadata=examples.METADATA,
        )


async def test_events_are_published_once_in_log_order_as_cloudevents(
    running_relay: Relay, relay_settings: Settings, store: EventStore
) -> None:
    await append_cases(store, 5)

    await eventually(lambda: running_relay.published == 10)
    msgs = await stream_messages(relay_settings)

    log = await store.read_all(limit=100)
    assert [m.headers["Nats-Msg-Id"] for m in msgs] == [str(r.event_id) for r in log]
    first = msgs[0]
    assert first.headers["ce-specversion"] == "1.0"
    assert first.headers["ce-type"] == "caseloop.CaseReported.v1"
    assert first.subject == f"{relay_settings.subject_prefix}.CaseReported._.{log[0].stream_id[5:]}"
    assert delivered_from(first).event == log[0].event()


async def test_events_appended_while_nats_is_down_arrive_once_after_it_restarts(
    running: Relaying, relay_settings: Settings, store: EventStore, own_nats: NatsServer
) -> None:
    running_relay = running.relay
    await append_cases(store, 3)
    await eventually(lambda: running_relay.published == 6)

    own_nats.stop()
    await eventually(lambda: running.nc.is_reconnecting)  # the relay's connection knows NATS is gone
    await append_cases(store, 4)
    # The relay has tried: its batch waits in its connection (nats-py holds publishes while reconnecting)
    # with no PubAck, so nothing more counts as published (nor moves the checkpoint).
    await eventually(lambda: running.nc.pending_data_size > 0)
    assert running_relay.published == 6
    own_nats.start()

    await eventually(lambda: running_relay.published == 14, timeout=30)
    msgs = await stream_messages(relay_settings)
    ids = [m.headers["Nats-Msg-Id"] for m in msgs]
    assert len(ids) == len(set(ids)) == 14
    assert ids == [str(r.event_id) for r in await store.read_all(limit=100)]


async def test_a_standby_relay_takes_over_without_publishing_twice(relay_settings: Settings, store: EventStore) -> None:
    nc = await connect(relay_settings, "relay-test")
    js = nc.jetstream()
    await ensure_stream(js, relay_settings)
    first, second = (
        Relay(store, js, stream=relay_settings.nats_stream, subject_prefix=relay_settings.subject_prefix)
        for _ in range(2)
    )
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    task_first = asyncio.create_task(first.run(stop_first))
    await eventually(lambda: first.active)
    task_second = asyncio.create_task(second.run(stop_second))
    await append_cases(store, 3)
    await eventually(lambda: first.published == 6)
    assert not second.active

    stop_first.set()
    await task_first
    await eventually(lambda: second.active)
    await append_cases(store, 2)
    await eventually(lambda: second.published == 4)

    stop_second.set()
    await task_second
    await nc.close()
    ids = [m.headers["Nats-Msg-Id"] for m in await stream_messages(relay_settings)]
    assert len(ids) == len(set(ids)) == 10


async def test_a_department_filter_sees_only_its_own_tasks(
    running_relay: Relay, relay_settings: Settings, store: EventStore
) -> None:
    await store.append(
        case_stream(examples.CASE_ID),
        [
            examples.case_reported(),
            examples.case_dispatched("sanitation", "water"),
            examples.task_dispatched(examples.TASK_ID, "sanitation"),
            examples.task_dispatched(examples.TASK_ID_2, "water"),
        ],
        expected_version=0,
        metadata=examples.METADATA,
    )
    await eventually(lambda: running_relay.published == 4)
    nc = await nats.connect(relay_settings.nats_url)
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        f"{relay_settings.subject_prefix}.*.water.>",
        durable="water-dept",
        stream=relay_settings.nats_stream,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    msgs = await sub.fetch(10, timeout=2)
    await nc.close()
    assert [delivered_from(m).event for m in msgs] == [examples.task_dispatched(examples.TASK_ID_2, "water")]
