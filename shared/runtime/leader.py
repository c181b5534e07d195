"""One active instance of a background loop among replicas: a PostgreSQL session advisory lock.

The one election mechanism of caseloop: the relay, the checkpointer, routing's deadline watcher
and verification's default-close timer are each wrapped by `led(...)` in their composition
root; the loops themselves hold no election code. Every replica runs the same wrapped loop: it
opens a connection of its own (not from the pool, so a busy pool never delays an election and
a lock never goes back into the pool with its connection), with TCP keepalives and the
`application_name` `caseloop:<role>:<pid>`, and tries `pg_try_advisory_lock(key)` every `poll`
seconds. The one that gets it runs the loop; the others wait. The leader checks its lock
session every `check` seconds; a leader that loses it stops its loop at once and goes back to
waiting. When the leader stops it closes the session, which gives the lock back; when it dies
PostgreSQL ends the session (at once for a clean exit, within the keepalive time for a
vanished host) and releases the lock, so a standby takes over within about `poll` seconds.

Correctness never depends on this: every event a leader appends has an id derived from what
caused it (task, kind, verification), relayed messages carry their event's id as
`Nats-Msg-Id`, and a checkpoint's sequence number is its primary key, so two leaders at once
still write each thing once. The lock only avoids doing the same work twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from shared.runtime.service import SETTINGS

log = structlog.get_logger()

# Lock keys: one per role (ASCII of a short name), distinct from the migrations' lock. The relay's
# and the checkpointer's keep the values they had before they moved here, so an instance of an
# older release and one of this release still exclude each other during a rolling update.
RELAY_LOCK = 0x72_656C_6179  # "relay"
CHECKPOINTER_LOCK = 0x636B_7074  # "ckpt"
DEADLINE_WATCHER_LOCK = 0x64_6561_646C  # "deadl"
DEFAULT_CLOSE_LOCK = 0x64_6566_636C  # "defcl"

Loop = Callable[[web.Application, asyncio.Event], Awaitable[None]]
Connect = Callable[[], Awaitable[Any]]
Body = Callable[[asyncio.Event], Coroutine[Any, Any, None]]

# The server drops a vanished leader's session (and so its lock) after ~5 + 2 * 3 s without
# TCP keepalive answers, instead of the kernel's two hours; a clean death releases it at once.
KEEPALIVES = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2", "tcp_keepalives_count": "3"}


def lock_connector(dsn: str, role: str) -> Connect:
    """A dedicated connection named after this process, so `pg_stat_activity` shows the leader."""
    settings = {**KEEPALIVES, "application_name": f"caseloop:{role}:{os.getpid()}"}
    return lambda: asyncpg.connect(dsn, server_settings=settings, timeout=10)


class Leadership:
    """Run `body(stop)` only while holding advisory lock `key`; wait as a standby otherwise."""

    def __init__(self, connect: Connect, key: int, role: str, *, poll: float = 0.5, check: float = 1.0) -> None:
        self.connect = connect
        self.key = key
        self.role = role
        self.poll = poll
        self.check = check
        self.active = False
        self.terms = 0  # how many times this instance became the leader

    async def run(self, body: Body, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                conn = await self.connect()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("leader_database_unavailable", role=self.role, error=str(exc) or type(exc).__name__)
                await _sleep(stop, 1.0)
                continue
            try:
                if await self._wait_for_lock(conn, stop):
                    await self._lead(conn, body, stop)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                # The lock session, or the leader's own work, lost the database: re-elect.
                log.warning("leader_database_error", role=self.role, error=str(exc) or type(exc).__name__)
                await _sleep(stop, self.poll)
            finally:
                self.active = False
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 5)  # ends the session: the lock goes with it

    async def _wait_for_lock(self, conn: Any, stop: asyncio.Event) -> bool:
        logged = False
        while not stop.is_set():
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key):
                return True
            if not logged:
                log.info("leader_standby", role=self.role)
                logged = True
            await _sleep(stop, self.poll)
        return False

    async def _lead(self, conn: Any, body: Body, stop: asyncio.Event) -> None:
        self.active = True
        self.terms += 1
        log.info("leader_active", role=self.role)
        resign = asyncio.Event()
        relay_stop = asyncio.create_task(_forward(stop, resign))
        work = asyncio.create_task(body(resign))
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=self.check)
                if work.done() or resign.is_set():
                    break
                # Still holding the lock? A failed check means the session (and the lock) is gone.
                try:
                    await conn.fetchval("SELECT 1", timeout=self.check * 3)
                except Exception:
                    log.warning("leader_lost", role=self.role)
                    resign.set()
                    raise
        finally:
            resign.set()
            relay_stop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(work, 10)
            log.info("leader_resigned", role=self.role)
        if work.done() and not work.cancelled() and work.exception() is not None:
            raise work.exception()  # type: ignore[misc]


def led(loop: Loop, key: int, role: str) -> Loop:
    """A service loop that only one replica runs at a time (see the module docstring)."""

    @functools.wraps(loop)
    async def wrapped(app: web.Application, stop: asyncio.Event) -> None:
        settings = app[SETTINGS]
        leadership = Leadership(lock_connector(settings.database_url.reveal(), role), key, role)

        async def body(resign: asyncio.Event) -> None:
            await loop(app, resign)

        await leadership.run(body, stop)

    return wrapped


async def _forward(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
