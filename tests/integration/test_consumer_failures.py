"""Only the handler's own failures count towards dead-lettering; outages and restarts do not.

JetStream's delivery count also counts the redeliveries after an outage's naks and after a
consumer died holding a message, so the consumer keeps its own count (`consumer_failures`).
Here the database really goes away: the consumer's pool points at a PostgreSQL server of this
module's own, which the test stops and starts, or the handler's own session is terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from ops.servers import Postgres
from shared.base.config import Settings
from shared.messaging.bus import Delivered
from shared.messaging.consumer import Consumer, ensure_consumer
from shared.store.db import OWNER_ROLE, bootstrap, create_pool, ensure_database
from shared.store.eventstore import EventStore, Transaction, case_stream
from tests import folders
from tests.conftest import ROLE_PASSWORDS, TEMPLATE, Database
from tests.eventually import eventually
from tests.integration.test_consumer import effects_of, record_effect, report, run_consumer, spec
from tests.relaying import relaying

MAX_DELIVER = 3
# How many times the outage naks the message before the database comes back: more than
# MAX_DELIVER, so that counting deliveries would have dead-lettered it at its first failure.
OUTAGE_NAKS = MAX_DELIVER + 2


@pytest.fixture
async def js(settings: Settings, store: EventStore) -> AsyncIterator[JetStreamContext]:
    """The session's database feeds the stream (through the relay); the consumer uses another."""
    async with relaying(settings, store, "consumer-failures") as running:
        yield running.js


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A PostgreSQL server this module may stop, without taking the session's down with it."""
    folder = folders.make("own-pg")
    folder.chmod(0o755)
    server = Postgres(folder / "pg")
    try:
        server.start()
        asyncio.run(bootstrap(server.url(), TEMPLATE, ROLE_PASSWORDS))
        yield server
    finally:
        folders.done(folder, postgres=server)


@pytest.fixture
async def own_database(own_postgres: Postgres) -> Database:
    name = f"own{os.getpid()}_{uuid4().hex[:8]}"
    await ensure_database(own_postgres.url(), name, template=TEMPLATE, owner=OWNER_ROLE)
    return Database(own_postgres, name)


class Watched(Consumer):
    """The real consumer, noting the server's delivery count of each message it is given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deliveries: list[int] = []

    async def handle(self, msg: Msg) -> bool:
        self.deliveries.append(msg.metadata.num_delivered or 0)
        return await super().handle(msg)


class Script:
    """The handler: holds the message (its consumer is then killed), then fails `fail_times`, then works."""

    def __init__(self, fail_times: int) -> None:
        self.hold = True
        self.held = asyncio.Event()
        self.fail_times = fail_times
        self.failed = 0
        self.succeeded = 0

    async def __call__(self, tx: Transaction, msg: Delivered) -> None:
        if self.hold:
            self.held.set()
            await asyncio.Event().wait()  # until the consumer dies
        if self.failed < self.fail_times:
            self.failed += 1
            raise RuntimeError(f"the handler's own failure {self.failed}")
        await record_effect(tx, msg)
        self.succeeded += 1


async def kill(task: asyncio.Task[None]) -> None:
    """The consumer's process dies: no ack, no nak; the server redelivers after ack_wait."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("recovers", [True, False], ids=["fails-then-works", "always-fails"])
async def test_outage_naks_and_a_restart_are_not_counted_only_the_handlers_own_failures_are(
    js: JetStreamContext,
    settings: Settings,
    store: EventStore,
    own_postgres: Postgres,
    own_database: Database,
    recovers: bool,
) -> None:
    # The consumer connects as a service's own role, as it does in production.
    own_pool = await create_pool(own_database.service_url("intake"), size=4)
    own_store = EventStore(own_pool)
    admin: asyncpg.Connection | None = None
    the_spec = spec(settings, max_deliver=MAX_DELIVER, ack_wait=2.0, nak_delay=0.05)
    script = Script(fail_times=MAX_DELIVER - 1 if recovers else 10 * MAX_DELIVER)
    tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.to_thread(own_postgres.stop)  # the outage begins
        await report(store, "lives through an outage")
        first = Consumer(js, own_store, settings.nats_stream, the_spec, script)
        _, first_task = await run_consumer(first)
        tasks.append(first_task)
        await eventually(lambda: first.outages >= OUTAGE_NAKS, timeout=60)
        await asyncio.to_thread(own_postgres.start)  # the outage ends

        await asyncio.wait_for(script.held.wait(), 30)  # handed out again, now held mid-message
        admin = await asyncpg.connect(own_database.admin_url)
        assert await admin.fetchval("SELECT count(*) FROM consumer_failures") == 0, "an outage was counted"
        assert first.failures == 0 and first.dead_lettered == 0
        await kill(first_task)

        script.hold = False
        second = Watched(js, own_store, settings.nats_stream, the_spec, script)
        stop, second_task = await run_consumer(second)
        tasks.append(second_task)
        if recovers:
            await eventually(lambda: second.handled == 1, timeout=60)
        else:
            await eventually(lambda: second.dead_lettered == 1, timeout=60)
        stop.set()
        await second_task

        dead = await admin.fetch("SELECT deliveries, error FROM dead_letters")
        effects = await effects_of(own_pool)
        assert await admin.fetchval("SELECT count(*) FROM consumer_failures") == 0, "the count outlived the message"
    finally:
        for task in tasks:
            await kill(task)
        if own_postgres.proc is None:  # failed during the outage: the module's next test needs the server
            await asyncio.to_thread(own_postgres.start)
        if admin is not None:
            await admin.close()
        await own_pool.close()

    # The server had delivered it more than MAX_DELIVER times before the handler first failed.
    assert second.deliveries[0] > MAX_DELIVER
    if recovers:
        assert (script.failed, script.succeeded) == (MAX_DELIVER - 1, 1)
        assert dead == [] and len(effects) == 1
    else:
        assert (script.failed, script.succeeded) == (MAX_DELIVER, 0), "dead-lettered before its own last failure"
        assert len(dead) == 1 and effects == []
        assert dead[0]["deliveries"] == second.deliveries[-1] > MAX_DELIVER  # the server's count, as before
        assert f"own failure {MAX_DELIVER}" in dead[0]["error"]


async def test_an_outage_inside_the_handler_writes_no_failure_its_own_failure_writes_one(
    js: JetStreamContext, settings: Settings, store: EventStore, pool: asyncpg.Pool, database: Database
) -> None:
    # Every write to consumer_failures, noted by the database itself.
    admin = await asyncpg.connect(database.admin_url)
    try:
        await admin.execute(
            """CREATE TABLE failure_writes (op text, event_id uuid, failures int);
               CREATE FUNCTION note_failure_write() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
               BEGIN
                   INSERT INTO failure_writes VALUES (TG_OP, NEW.event_id, NEW.failures);
                   RETURN NEW;
               END $$;
               CREATE TRIGGER note AFTER INSERT OR UPDATE ON consumer_failures
                   FOR EACH ROW EXECUTE FUNCTION note_failure_write();"""
        )
    finally:
        await admin.close()
    calls: dict[str, int] = {}

    async def handler(tx: Transaction, msg: Delivered) -> None:
        kind = getattr(msg.event, "description", "")
        calls[kind] = calls.get(kind, 0) + 1
        if kind == "outage" and calls[kind] <= OUTAGE_NAKS:
            # The server ends this very session mid-transaction, as a restart or a failover does.
            await tx.conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        if kind == "flaky" and calls[kind] == 1:
            raise RuntimeError("the handler's own failure")
        await record_effect(tx, msg)

    consumer = Consumer(js, store, settings.nats_stream, spec(settings, max_deliver=MAX_DELIVER), handler)
    stop, task = await run_consumer(consumer)
    await report(store, "outage")
    flaky = await report(store, "flaky")
    try:
        await eventually(lambda: consumer.handled == 2, timeout=60)
    finally:
        stop.set()
        await task

    assert calls == {"outage": OUTAGE_NAKS + 1, "flaky": 2}
    assert (consumer.outages, consumer.failures, consumer.dead_lettered) == (OUTAGE_NAKS, 1, 0)
    admin = await asyncpg.connect(database.admin_url)
    try:
        writes = await admin.fetch("SELECT op, event_id, failures FROM failure_writes")
    finally:
        await admin.close()
    flaky_id = await pool.fetchval(
        "SELECT event_id FROM events WHERE stream_id = $1 AND type = 'CaseReported'", case_stream(flaky)
    )
    assert [tuple(w) for w in writes] == [("INSERT", flaky_id, 1)], "only the handler's own failure is written"
    assert await pool.fetchval("SELECT count(*) FROM consumer_failures") == 0, "success clears the count"
    assert await pool.fetchval("SELECT count(*) FROM inbox") == 2
    assert len(await effects_of(pool)) == 2


async def test_a_durable_made_with_a_delivery_limit_is_given_an_unlimited_one(
    js: JetStreamContext, settings: Settings
) -> None:
    """The server must never cut a message off before our own count says so."""
    the_spec = spec(settings, durable="old_limit")
    await js.add_consumer(  # as an earlier version made it
        settings.nats_stream,
        ConsumerConfig(
            durable_name=the_spec.durable,
            filter_subjects=list(the_spec.filter_subjects),
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=the_spec.ack_wait,
            max_deliver=5,
            max_ack_pending=the_spec.max_ack_pending,
        ),
    )
    assert (await js.consumer_info(settings.nats_stream, the_spec.durable)).config.max_deliver == 5

    await ensure_consumer(js, settings.nats_stream, the_spec)

    assert (await js.consumer_info(settings.nats_stream, the_spec.durable)).config.max_deliver == -1
