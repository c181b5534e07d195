"""A three-node JetStream cluster (R3 stream, sync_interval always) losing the stream's leader mid-run.

The services and the relay have every node's URL; when the leader dies they reconnect to another
node, wait out the election (a few seconds without PubAcks or acks: the relay retries the batch
with the same ids, consumers back off), and carry on. The killed node comes back and catches up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import nats
import pytest

from ops.cluster import NatsCluster
from ops.servers import Postgres
from ops.stack import Stack
from tests.e2e.scale import api_for, logged_event_count, past, scaled_stack, stream_last_seq, stream_messages
from tests.eventually import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def clustered(postgres: Postgres) -> Iterator[Stack]:
    with scaled_stack(postgres, {"routing": 2, "handling": 2}, nats_cluster=3) as stack:
        yield stack


async def stream_leader(urls: list[str], stream: str) -> tuple[str, int, list[bool]]:
    """(leader's server_name, last sequence, each replica current?) as the cluster reports them."""
    nc = await nats.connect(servers=urls, connect_timeout=2, max_reconnect_attempts=3)
    try:
        info = await nc.jetstream(timeout=5).stream_info(stream)
        assert info.cluster is not None and info.config.num_replicas == 3
        replicas = [bool(peer.current) for peer in info.cluster.replicas or []]
        return str(info.cluster.leader), int(info.state.last_seq), replicas
    finally:
        await nc.close()


async def test_killing_the_stream_leader_loses_and_doubles_nothing_and_the_node_catches_up(clustered: Stack) -> None:
    stack = clustered
    cluster = stack.nats_cluster
    assert isinstance(cluster, NatsCluster)
    stream = stack.env["NATS_STREAM"]
    leader, _, _ = await stream_leader(cluster.urls, stream)
    killed = cluster.index(leader)

    urls = ",".join(cluster.urls)
    before = await stream_last_seq(urls, stream)

    async def kill_the_leader() -> None:
        # Once it stores this run's cases.
        await eventually(lambda: past(stream_last_seq(urls, stream), before), timeout=60)
        cluster.kill(killed)

    async with api_for(stack) as api:
        case_ids = await api.feed(32, asyncio.ensure_future(kill_the_leader()))
        assert len(case_ids) >= 25
        await api.assert_each_step_once(case_ids)

        alive = [url for i, url in enumerate(cluster.urls) if i != killed]
        new_leader, _, _ = await stream_leader(alive, stream)
        assert new_leader != leader, "a new leader was elected among the two left"

        # Everything logged was relayed exactly once (Nats-Msg-Id unique), on the two nodes left.
        logged = await logged_event_count(stack.env["ADMIN_DATABASE_URL"])
        messages = await eventually(
            lambda: _all(stream_messages(",".join(alive), stream), logged), timeout=30, interval=0.5
        )
        ids = [headers["Nats-Msg-Id"] for _, headers, _ in messages]
        assert len(ids) == len(set(ids)) == logged

        # The killed node comes back and catches up: its own copy has the same last sequence.
        await asyncio.to_thread(cluster.restart, killed)
        _, last_seq, _ = await stream_leader(cluster.urls, stream)

        async def caught_up() -> bool:
            own = cluster.stream_state(killed, stream)
            _, _, current = await stream_leader(cluster.urls, stream)
            return own is not None and own["last_seq"] == last_seq and all(current)

        await eventually(caught_up, timeout=30, interval=0.5)
        # And the system keeps working on the healed cluster.
        more = await api.feed(4)
        await api.assert_each_step_once(more)


async def _all(
    messages: asyncio.Future[list[tuple[int, dict[str, str], str]]] | object, count: int
) -> list[tuple[int, dict[str, str], str]] | None:
    got: list[tuple[int, dict[str, str], str]] = await messages  # type: ignore[misc]
    return got if len(got) >= count else None
