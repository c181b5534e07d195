"""NATS with users and subject permissions: the relay alone publishes events, a service pulls
only its own durable, and a department's system receives its own tasks' events and nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS

from ops.servers import NatsServer
from shared.base.config import Settings
from shared.messaging.bus import inbox_of, stream_config
from shared.messaging.consumer import ConsumerSpec, ensure_consumer
from shared.messaging.natsauth import ADMIN, department_user, provision_departments, server_conf
from tests.eventually import eventually

STREAM, PREFIX = "CASES", "case"
USERS = [ADMIN, "relay", "intake", department_user("water"), department_user("city_management")]
PASSWORDS = {user: f"{user}-password" for user in USERS}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    folder: Path = tmp_path_factory.mktemp("nats-auth")
    running = NatsServer(folder, extra_conf=server_conf(PASSWORDS, STREAM, PREFIX)).start()
    yield running
    running.stop()


class Connection:
    def __init__(self, nc: NATS, errors: list[str]) -> None:
        self.nc = nc
        self.errors = errors


async def connect(server: NatsServer, user: str, password: str | None = None) -> Connection:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(
        server.url,
        user=user,
        password=password or PASSWORDS[user],
        inbox_prefix=inbox_of(user),
        error_cb=on_error,
        allow_reconnect=False,
    )
    return Connection(nc, errors)


@pytest.fixture
async def admin(server: NatsServer) -> AsyncIterator[Connection]:
    conn = await connect(server, ADMIN)
    js = conn.nc.jetstream()
    await js.add_stream(stream_config(Settings(nats_stream=STREAM, subject_prefix=PREFIX)))
    await provision_departments(js, STREAM, PREFIX, ["water", "city_management"])
    yield conn
    await js.delete_stream(STREAM)
    await conn.nc.close()


async def violated(conn: Connection) -> bool:
    """The server has told this connection of a permissions violation (it does so soon after, not at once)."""
    return bool(await eventually(lambda: any("permissions violation" in e.lower() for e in conn.errors)))


async def test_no_user_no_entry(server: NatsServer) -> None:
    with pytest.raises(Exception):  # noqa: B017 - nats-py raises its own or a timeout
        await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
    with pytest.raises(Exception):  # noqa: B017
        await connect(server, "relay", password="wrong")


async def test_a_department_gets_its_own_tasks_and_nothing_else(server: NatsServer, admin: Connection) -> None:
    relay = await connect(server, "relay")
    relay_js = relay.nc.jetstream()
    for subject in ("case.TaskDispatched.water.c1", "case.TaskDispatched.city_management.c2", "case.CaseReported._.c3"):
        await relay_js.publish(subject, b"{}")
    await relay.nc.close()

    water = await connect(server, department_user("water"))
    try:
        sub = await water.nc.jetstream().pull_subscribe_bind(durable=department_user("water"), stream=STREAM)
        msgs = await sub.fetch(10, timeout=2)
        assert [m.subject for m in msgs] == ["case.TaskDispatched.water.c1"]
        for m in msgs:
            await m.ack()
        assert not water.errors

        # Another department's durable: refused.
        other = await water.nc.jetstream().pull_subscribe_bind(
            durable=department_user("city_management"), stream=STREAM
        )
        with pytest.raises(Exception):  # noqa: B017 - the request never gets an answer
            await other.fetch(1, timeout=1)
        assert await violated(water)
    finally:
        await water.nc.close()


@pytest.mark.parametrize(
    "action",
    ["subscribe_events", "subscribe_other_inbox", "publish_event", "read_stream_directly", "create_consumer"],
)
async def test_a_department_cannot_read_others_tasks_or_publish(
    server: NatsServer, admin: Connection, action: str
) -> None:
    water = await connect(server, department_user("water"))
    try:
        nc: Any = water.nc
        match action:
            case "subscribe_events":
                await nc.subscribe("case.*.city_management.>")
            case "subscribe_other_inbox":
                await nc.subscribe(f"{inbox_of(department_user('city_management'))}.>")
            case "publish_event":
                await nc.publish("case.TaskCompleted.water.c1", b"{}")
            case "read_stream_directly":
                with pytest.raises(Exception):  # noqa: B017
                    await nc.jetstream().get_msg(STREAM, 1)
            case "create_consumer":
                with pytest.raises(Exception):  # noqa: B017
                    await nc.jetstream().add_consumer(STREAM, durable_name="mine", filter_subject="case.>")
        await nc.flush()
        assert await violated(water), action
    finally:
        await water.nc.close()


async def test_a_service_pulls_its_own_durable_but_cannot_publish_events(server: NatsServer, admin: Connection) -> None:
    intake = await connect(server, "intake")
    try:
        js = intake.nc.jetstream()
        await ensure_consumer(js, STREAM, ConsumerSpec(durable="intake", filter_subjects=("case.>",)))
        relay = await connect(server, "relay")
        await relay.nc.jetstream().publish("case.CaseReported._.c9", b"{}")
        await relay.nc.close()
        sub = await js.pull_subscribe_bind(durable="intake", stream=STREAM)
        [msg] = await sub.fetch(1, timeout=2)
        await msg.ack()
        assert not intake.errors
        await intake.nc.publish("case.CaseReported._.forged", b"{}")
        await intake.nc.flush()
        assert await violated(intake)
        with pytest.raises(Exception):  # noqa: B017 - another service's durable
            await js.add_consumer(STREAM, durable_name="routing", filter_subject="case.>")
    finally:
        await intake.nc.close()
