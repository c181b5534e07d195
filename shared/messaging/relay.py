"""The relay: the log, past its checkpoint, published to JetStream in log order.

One relay is active at a time: it holds a PostgreSQL advisory lock on a connection of its
own; a second relay waits for that lock as a standby and takes over when the first dies
(its connection closes, the lock is released). The checkpoint moves only after every
PubAck of a batch; a duplicate ack (the event was published before a crash) is success.
When NATS is down the relay retries the same batch, with the same message ids, until it
is back, and then drains the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import structlog
from nats.js import JetStreamContext

from shared.messaging.bus import headers_for, subject_for
from shared.store.db import release_session_lock
from shared.store.eventstore import Checkpoint, EventStore

log = structlog.get_logger()

_RELAY_LOCK = 0x72_656C_6179  # "relay"
BATCH = 500


async def load_checkpoint(pool: asyncpg.Pool, name: str) -> Checkpoint:
    row = await pool.fetchrow("SELECT tx::text::bigint AS tx, position FROM checkpoints WHERE name = $1", name)
    return Checkpoint(row["tx"], row["position"]) if row else Checkpoint()


async def save_checkpoint(pool: asyncpg.Pool, name: str, checkpoint: Checkpoint) -> None:
    await pool.execute(
        """INSERT INTO checkpoints (name, tx, position, updated_at)
           VALUES ($1, $2::text::xid8, $3, now())
           ON CONFLICT (name) DO UPDATE SET tx = excluded.tx, position = excluded.position,
                                            updated_at = excluded.updated_at""",
        name,
        str(checkpoint.tx),
        checkpoint.position,
    )


class Relay:
    def __init__(
        self,
        store: EventStore,
        js: JetStreamContext,
        *,
        stream: str,
        subject_prefix: str,
        name: str = "relay",
        interval: float = 0.02,
        ack_timeout: float = 10.0,
    ) -> None:
        self.store = store
        self.js = js
        self.stream = stream
        self.prefix = subject_prefix
        self.name = name
        self.interval = interval
        self.ack_timeout = ack_timeout
        self.active = False
        self.published = 0
        self.checkpoint = Checkpoint()

    async def run(self, stop: asyncio.Event) -> None:
        """Wait to become the active relay, then publish until `stop` is set."""
        while not stop.is_set():
            try:
                async with self.store.pool.acquire() as lock_conn:
                    if not await self._lead(lock_conn, stop):
                        return
                    try:
                        await self._publish_loop(lock_conn, stop)
                    finally:
                        self.active = False
                        with contextlib.suppress(Exception):
                            await release_session_lock(lock_conn, _RELAY_LOCK)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("relay_database_unavailable", error=str(exc))
                await _sleep(stop, 1.0)

    async def _lead(self, conn: Any, stop: asyncio.Event) -> bool:
        waiting_logged = False
        while not stop.is_set():
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", _RELAY_LOCK):
                self.active = True
                log.info("relay_active", relay=self.name)
                return True
            if not waiting_logged:
                log.info("relay_standby", relay=self.name)
                waiting_logged = True
            await _sleep(stop, 0.5)
        return False

    async def _publish_loop(self, lock_conn: Any, stop: asyncio.Event) -> None:
        self.checkpoint = await load_checkpoint(self.store.pool, self.name)
        idle_checks = 0
        while not stop.is_set():
            batch = await self.store.read_all(self.checkpoint, limit=BATCH)
            if not batch:
                idle_checks += 1
                if idle_checks % 50 == 0:  # still leading? (the lock lives on this connection)
                    await lock_conn.fetchval("SELECT 1")
                await _sleep(stop, self.interval)
                continue
            idle_checks = 0
            if not await self._publish(batch):
                await _sleep(stop, 1.0)
                continue
            self.checkpoint = batch[-1].checkpoint
            await save_checkpoint(self.store.pool, self.name, self.checkpoint)
            self.published += len(batch)
            log.debug("relay_published", count=len(batch), position=batch[-1].position)

    async def _publish(self, batch: list[Any]) -> bool:
        """Publish in order, pipelined; True only when every event has its PubAck."""
        futures = []
        try:
            for record in batch:
                event = record.event()
                futures.append(
                    await self.js.publish_async(
                        subject_for(self.prefix, record, event),
                        record.data.encode(),
                        stream=self.stream,
                        headers=headers_for(record),
                    )
                )
            # publish_async futures carry no timeout of their own.
            await asyncio.wait_for(asyncio.gather(*futures), timeout=self.ack_timeout)
            return True
        except Exception as exc:  # NATS down, timeouts, a full stream: retry the batch
            for future in futures:
                future.cancel()
            log.warning("relay_publish_failed", error=str(exc) or type(exc).__name__, batch=len(batch))
            return False


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
