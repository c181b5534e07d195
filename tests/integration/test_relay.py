"""The relay against real PostgreSQL and nats-server: log order, exactly once, outages, standby."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import nats
import pytest
from aiohttp import web
from msgspec.structs import replace
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from ops.servers import NatsServer
from services.relay.app import spec as relay_service
from shared.audit.checkpointer import load_checkpoints
from shared.audit.checkpoints import new_key_file
from shared.base.clock import system_clock
from shared.base.config import Settings
from shared.messaging.bus import connect, delivered_from, ensure_stream
from shared.messaging.relay import Relay
from shared.runtime.leader import CHECKPOINTER_LOCK, RELAY_LOCK, Leadership, lock_connector
from shared.runtime.service import CLOCK, JS, SETTINGS, STORE
from shared.store.eventstore import EventStore, case_stream
from tests import examples
from tests.conftest import Database
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
    return replace(settings, nats_url=own_nats.url)


@pytest.fixture
async def js(relay_settings: Settings) -> AsyncIterator[JetStreamContext]:
    nc = await connect(relay_settings, "relay-test")
    js = nc.jetstream()
    await ensure_stream(js, relay_settings)
    yield js
    await nc.close()


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


def led_relay(
    store: EventStore, js: JetStreamContext, settings: Settings, poll: float = 0.5
) -> tuple[Leadership, Relay]:
    """A relay under the relay service's leader lock, as `led` runs it, with its leadership in reach."""
    relay = Relay(store, js, stream=settings.nats_stream, subject_prefix=settings.subject_prefix)
    return Leadership(lock_connector(settings.database_url.reveal(), "relay"), RELAY_LOCK, "relay", poll=poll), relay


async def lock_holders(database: Database, key: int) -> list[asyncpg.Record]:
    """The sessions holding advisory lock `key` in the test's database, as the server sees them."""
    conn = await asyncpg.connect(database.admin_url)
    try:
        return await conn.fetch(
            """SELECT a.pid, a.application_name, a.client_addr FROM pg_locks l
               JOIN pg_stat_activity a ON a.pid = l.pid
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.classid = $1 AND l.objid = $2
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
            key >> 32,
            key & 0xFFFF_FFFF,
        )
    finally:
        await conn.close()


async def test_a_stopped_relay_gives_its_lock_to_the_standby_and_nothing_is_published_twice(
    relay_settings: Settings, store: EventStore, js: JetStreamContext
) -> None:
    (first, first_relay), (second, second_relay) = (led_relay(store, js, relay_settings) for _ in range(2))
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    task_first = asyncio.create_task(first.run(first_relay.run, stop_first))
    await eventually(lambda: first.active)
    task_second = asyncio.create_task(second.run(second_relay.run, stop_second))
    await append_cases(store, 3)
    await eventually(lambda: first_relay.published == 6)
    assert not second.active

    stop_first.set()
    await task_first
    await eventually(lambda: second.active)
    await append_cases(store, 2)
    await eventually(lambda: second_relay.published == 4)

    stop_second.set()
    await task_second
    ids = [m.headers["Nats-Msg-Id"] for m in await stream_messages(relay_settings)]
    assert len(ids) == len(set(ids)) == 10


async def test_killing_the_leading_relays_session_hands_the_lead_to_the_standby_which_publishes(
    relay_settings: Settings, store: EventStore, js: JetStreamContext, database: Database
) -> None:
    # The first leader, once it has lost its session, waits longer before it asks for the lock
    # again, so the one that takes over is certainly the standby.
    first, first_relay = led_relay(store, js, relay_settings, poll=3.0)
    second, second_relay = led_relay(store, js, relay_settings)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(first.run(first_relay.run, stop))]
    await eventually(lambda: first.active)
    tasks.append(asyncio.create_task(second.run(second_relay.run, stop)))
    try:
        await append_cases(store, 3)
        await eventually(lambda: first_relay.published == 6)
        assert not second.active and second_relay.published == 0

        # The leader's session is ended from outside, as when its host vanishes.
        [holder] = await lock_holders(database, RELAY_LOCK)
        admin = await asyncpg.connect(database.admin_url)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", holder["pid"])
        finally:
            await admin.close()

        await eventually(lambda: second.active, timeout=10)
        await eventually(lambda: not first.active, timeout=10)
        await append_cases(store, 2)
        await eventually(lambda: second_relay.published == 4)
        assert first_relay.published == 6, "the old leader stopped publishing"
        [heir] = await lock_holders(database, RELAY_LOCK)
        assert heir["pid"] != holder["pid"]
        ids = [m.headers["Nats-Msg-Id"] for m in await stream_messages(relay_settings)]
        assert ids == [str(r.event_id) for r in await store.read_all(limit=100)]
        assert first.terms == 1 and not tasks[0].done(), "the old leader waits again, as a standby"
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_the_relay_and_the_checkpointer_hold_their_locks_on_dedicated_sessions_with_keepalives(
    relay_settings: Settings, store: EventStore, js: JetStreamContext, database: Database, tmp_path: Path
) -> None:
    new_key_file(tmp_path / "checkpoint.key")
    settings = replace(relay_settings, checkpoint_key_file=str(tmp_path / "checkpoint.key"), checkpoint_seconds=0.1)
    app = web.Application()
    app[SETTINGS], app[STORE], app[JS], app[CLOCK] = settings, store, js, system_clock
    stop = asyncio.Event()
    # The relay service's own loops, wrapped as its composition root wraps them.
    tasks = [asyncio.create_task(loop(app, stop)) for loop in relay_service(settings).loops]
    try:
        for key, role in ((RELAY_LOCK, "relay"), (CHECKPOINTER_LOCK, "checkpointer")):
            [holder] = await eventually(functools.partial(lock_holders, database, key), timeout=10)
            # Named by the leader connector: not one of the pool's connections, which have no name.
            assert holder["application_name"] == f"caseloop:{role}:{os.getpid()}"
            assert holder["client_addr"] is not None, "over TCP, where keepalives apply"
            conn = await lock_connector(settings.database_url.reveal(), role)()
            try:
                keepalives = [
                    await conn.fetchval(f"SHOW tcp_keepalives_{name}") for name in ("idle", "interval", "count")
                ]
            finally:
                await conn.close()
            assert keepalives == ["5", "2", "3"], "not the server's 0: the kernel's two hours"

        await append_cases(store, 2)

        async def relayed_and_signed() -> bool:
            async with store.pool.acquire() as conn:
                signed = max((c.count for c in await load_checkpoints(conn)), default=0)
            return len(await stream_messages(settings)) == 4 and signed == 4

        await eventually(relayed_and_signed, timeout=10)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    # Stopping closes each lock session, which gives the lock back.
    assert await lock_holders(database, RELAY_LOCK) == await lock_holders(database, CHECKPOINTER_LOCK) == []


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
