"""The relay: the log, past its checkpoint, published to JetStream in log order.

`Relay.run` publishes until told to stop; keeping it to one active relay among replicas is the
caller's business (the relay service runs it under the leader lock every leader loop uses), and
it reads its checkpoint afresh each time it starts, so a standby that takes over goes on from
where the last leader stopped. The checkpoint moves only after every PubAck of a batch; a
duplicate ack (the event was published before a crash, or by a leader that had not yet noticed
it lost its lock) is success. When NATS is down the relay retries the same batch, with the same
message ids, until it is back, and then drains the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import structlog
from nats.js import JetStreamContext

from shared.messaging.bus import headers_for, subject_for
from shared.store.eventstore import Checkpoint, EventStore

log = structlog.get_logger()

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
        self.published = 0
        self.checkpoint = Checkpoint()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish from the stored checkpoint on until `stop` is set."""
        self.checkpoint = await load_checkpoint(self.store.pool, self.name)
        while not stop.is_set():
            batch = await self.store.read_all(self.checkpoint, limit=BATCH)
            if not batch:
                await _sleep(stop, self.interval)
                continue
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
