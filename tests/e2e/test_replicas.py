"""Two relays, two routing and two handling replicas as separate processes.

Replicas share their service's durable pull consumer: each event is handled by one of them, and
a SIGKILLed replica's unacked messages go to the other after ack_wait (5 s here). The relay and
routing's deadline watcher run on one replica at a time; killing it hands the work over.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ops.servers import NatsServer, Postgres
from ops.stack import Process, Stack
from tests.e2e.scale import (
    api_for,
    leaders,
    logged,
    logged_event_count,
    past,
    scaled_stack,
    stream_last_seq,
    stream_messages,
)
from tests.e2e.watcher import whole_round
from tests.eventually import eventually

pytestmark = pytest.mark.e2e
REPLICAS = {"relay": 2, "routing": 2, "handling": 2}


@pytest.fixture(scope="module")
def replicated(postgres: Postgres, nats_server: NatsServer) -> Iterator[Stack]:
    with scaled_stack(postgres, REPLICAS, nats_url=nats_server.url) as stack:
        yield stack


def decisions(process: Process) -> int:
    return len(logged(process, "routing_decided"))


async def test_two_routing_and_two_handling_replicas_handle_each_event_once_through_a_sigkill(
    replicated: Stack,
) -> None:
    stack = replicated
    routing, handling = stack.replicas_of("routing"), stack.replicas_of("handling")

    async def kill_one_of_each() -> None:
        await eventually(lambda: decisions(routing[1]) > 0, timeout=60)  # it has taken a share
        routing[1].kill()  # its unacked messages go to routing (1) after ack_wait
        handling[0].kill()  # the Api talks to handling (1): a load balancer would now send to handling-2

    async with api_for(stack) as api:
        api.info.urls["handling"] = handling[1].url
        kills = asyncio.ensure_future(kill_one_of_each())
        case_ids = await api.feed(32, kills)
        assert len(case_ids) >= 25
        await api.assert_each_step_once(case_ids)
    assert decisions(routing[0]) > 0 and decisions(routing[1]) > 0, "both routing replicas took a share"
    for process in (routing[1], handling[0]):  # back for the next test
        await asyncio.to_thread(stack.restart, process.name)


async def test_relay_standby_takes_over_and_nothing_is_published_twice_or_out_of_order(replicated: Stack) -> None:
    stack = replicated
    relays = stack.replicas_of("relay")
    relaying = {"role": "relay"}  # a relay process leads two loops: the relay and the checkpointer
    [first] = await eventually(lambda: leaders(relays, "leader_active", "leader_standby", **relaying), timeout=10)

    stream, nats_url = stack.env["NATS_STREAM"], stack.env["NATS_URL"]
    before = await stream_last_seq(nats_url, stream)

    async def kill_the_active_relay() -> None:
        # Once it relays this run's cases.
        await eventually(lambda: past(stream_last_seq(nats_url, stream), before), timeout=60)
        first.kill()
        [second] = await eventually(lambda: leaders(relays, "leader_active", "leader_standby", **relaying), timeout=10)
        assert second is not first

    async with api_for(stack) as api:
        api.info.urls["handling"] = stack.replicas_of("handling")[1].url
        case_ids = await api.feed(20, asyncio.ensure_future(kill_the_active_relay()))
        await api.assert_each_step_once(case_ids)

    # Every logged event is in the stream exactly once, and each case's events in version order.
    logged_count = await logged_event_count(stack.env["ADMIN_DATABASE_URL"])

    async def all_relayed() -> list[tuple[int, dict[str, str], str]] | None:
        messages = await stream_messages(nats_url, stream)
        return messages if len(messages) >= logged_count else None

    messages = await eventually(all_relayed, timeout=30, interval=0.5)
    ids = [headers["Nats-Msg-Id"] for _, headers, _ in messages]
    assert len(ids) == len(set(ids)) == logged_count
    versions: dict[str, list[int]] = defaultdict(list)
    for _, headers, _ in messages:
        versions[headers["ce-subject"]].append(int(headers["ce-sequence"]))
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())
    await asyncio.to_thread(stack.restart, first.name)


async def test_deadline_watcher_runs_on_one_replica_and_the_other_takes_over(replicated: Stack) -> None:
    stack = replicated
    routing = stack.replicas_of("routing")
    watching = {"role": "deadline_watcher"}
    [watcher] = await eventually(lambda: leaders(routing, "leader_active", "leader_standby", **watching), timeout=10)
    async with api_for(stack) as api:
        case_id = await api.report("pothole")
        [task] = await api.open_tasks(case_id, 1)

        async def steps() -> Counter[str]:
            kinds = ("DeadlineWarned", "TaskOverdue", "CaseEscalated")
            return Counter(t for t in await api.types(case_id) if t in kinds)

        api.move_clock(_seconds_until(task["accept_warn_at"]) + 60)
        await eventually(lambda: _has(steps, "DeadlineWarned"), timeout=15)
        canary = await api.report("pothole")  # reported now, no deadline of its own comes due in this test
        await api.open_tasks(canary, 1)
        watcher.kill()
        api.move_clock(_seconds_until(task["accept_by"]) + 60)
        [heir] = await eventually(lambda: leaders(routing, "leader_active", "leader_standby", **watching), timeout=10)
        assert heir is not watcher
        await eventually(lambda: _has(steps, "CaseEscalated"), timeout=15)
        await asyncio.to_thread(stack.restart, watcher.name)  # back, as a standby
        await eventually(lambda: leaders(routing, "leader_active", "leader_standby", **watching) == [heir])
        await whole_round(stack.env["ADMIN_DATABASE_URL"], canary)  # the heir has checked every due case
        assert await steps() == Counter({"DeadlineWarned": 1, "TaskOverdue": 1, "CaseEscalated": 1})
        fired = [e for p in routing for e in logged(p, "deadline_fired", case_id=case_id)]
        assert Counter(e["step"] for e in fired) == Counter({"DeadlineWarned": 1, "TaskOverdue": 1, "CaseEscalated": 1})


def _seconds_until(moment: str) -> float:
    return (datetime.fromisoformat(moment) - datetime.now(UTC)).total_seconds()


async def _has(steps: object, name: str) -> bool:
    return bool((await steps())[name] >= 1)  # type: ignore[operator]
