"""Leadership by session advisory lock, against a real PostgreSQL: one active, a standby takes over."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from shared.runtime.leader import Leadership, lock_connector
from tests.conftest import Database
from tests.eventually import eventually

KEY = 0x7465_7374  # "test"


async def test_one_of_three_leads_and_a_standby_takes_over_when_its_session_dies(database: Database) -> None:
    stop = asyncio.Event()
    ticks = {0: 0, 1: 0, 2: 0}
    leaders = [
        Leadership(lock_connector(database.url, f"test-{i}"), KEY, f"test-{i}", poll=0.1, check=0.2) for i in range(3)
    ]

    def body_for(i: int) -> object:
        async def body(resign: asyncio.Event) -> None:
            while not resign.is_set():
                ticks[i] += 1
                await asyncio.sleep(0.02)

        return body

    tasks = [asyncio.create_task(leader.run(body_for(i), stop)) for i, leader in enumerate(leaders)]  # type: ignore[arg-type]
    try:
        first = await eventually(lambda: [i for i, leader in enumerate(leaders) if leader.active], timeout=10)
        assert len(first) == 1
        [active] = first
        await eventually(lambda: standbys_asked(database, active), timeout=10)  # and were refused
        assert [i for i in ticks if ticks[i]] == [active], "only the leader works"

        # The leader's session is ended from outside (as when its process or host dies).
        admin = await asyncpg.connect(database.admin_url)
        try:
            killed = await admin.fetchval(
                """SELECT pg_terminate_backend(l.pid) FROM pg_locks l
                   JOIN pg_stat_activity a ON a.pid = l.pid
                   WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE $1""",
                f"caseloop:test-{active}:%",
            )
        finally:
            await admin.close()
        assert killed

        async def another_leads() -> list[int]:
            return [i for i, leader in enumerate(leaders) if leader.active and leader.terms and i != active]

        took_over = await eventually(another_leads, timeout=5)
        assert len(took_over) == 1
        await eventually(lambda: not leaders[active].active, timeout=5)
        before = dict(ticks)
        [heir] = took_over
        await eventually(lambda: ticks[heir] >= before[heir] + 5)  # the new leader has worked a while since
        working = [i for i in ticks if ticks[i] > before[i]]
        assert working == took_over, "the old leader stopped; only the new one works"
        # The old leader reconnects and waits as a standby.
        assert sum(leader.active for leader in leaders) == 1
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)


async def standbys_asked(database: Database, leader: int) -> bool:
    """Both other sessions have asked for the lock (their last query) while the leader holds it."""
    admin = await asyncpg.connect(database.admin_url)
    try:
        asked = await admin.fetchval(
            """SELECT count(*) FROM pg_stat_activity
               WHERE application_name LIKE 'caseloop:test-%' AND application_name NOT LIKE $1
               AND query LIKE '%pg_try_advisory_lock%' AND state = 'idle'""",
            f"caseloop:test-{leader}:%",
        )
    finally:
        await admin.close()
    return bool(asked == 2)
