"""The checkpointer: every N events or M seconds, sign the whole log's head and store it in log_checkpoints.

It runs in the relay process. `Checkpointer.run` signs until told to stop; keeping it to one
active signer among replicas is the caller's business (the relay service runs it under the
leader lock every leader loop uses), and a second signer at once would only find its sequence
number taken and take up from the stored checkpoint. It reads the log with `read_all` (below
the transaction horizon, in (tx, position) order), so a checkpoint always covers a prefix of
the log that can no longer grow in the middle.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

import msgspec
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.audit.chain import StreamHeads, next_head, streams_root
from shared.audit.checkpoints import SignedCheckpoint, key_id, public_bytes, sign
from shared.base.clock import Clock, system_clock
from shared.store.eventstore import GENESIS, Checkpoint, EventStore

log = structlog.get_logger()
_streams_decoder = msgspec.json.Decoder(StreamHeads)


async def load_checkpoints(conn: Any, upto: int | None = None) -> list[SignedCheckpoint]:
    """Every stored checkpoint (optionally up to a seq), oldest first."""
    rows = await conn.fetch(
        """SELECT seq, tx::text::bigint AS tx, position, count, head, streams_root, streams::text AS streams,
                  at, key_id, signature
           FROM log_checkpoints WHERE $1::bigint IS NULL OR seq <= $1 ORDER BY seq""",
        upto,
    )
    return [
        SignedCheckpoint(
            seq=r["seq"],
            tx=r["tx"],
            position=r["position"],
            count=r["count"],
            head=bytes(r["head"]).hex(),
            streams_root=bytes(r["streams_root"]).hex(),
            at=r["at"],
            key_id=r["key_id"],
            signature=bytes(r["signature"]).hex(),
            streams=_streams_decoder.decode(r["streams"]),
        )
        for r in rows
    ]


class Checkpointer:
    def __init__(
        self,
        store: EventStore,
        key: Ed25519PrivateKey,
        *,
        every_events: int = 1000,
        every_seconds: float = 60.0,
        clock: Clock = system_clock,
        batch: int = 2000,
    ) -> None:
        self.store = store
        self.key = key
        self.key_id = key_id(public_bytes(key.public_key()))
        self.every_events = every_events
        self.every_seconds = every_seconds
        self.clock = clock
        self.batch = batch
        self.last: SignedCheckpoint | None = None
        self._reset()

    def _reset(self) -> None:
        self.head, self.count, self.read_to = GENESIS, 0, Checkpoint()
        self.heads: StreamHeads = {}
        self.moved: StreamHeads = {}

    async def load(self) -> None:
        """Take up from the last stored checkpoint (its signed head, count and stream heads)."""
        self._reset()
        async with self.store.pool.acquire() as conn:
            stored = await load_checkpoints(conn)
        for cp in stored:
            self.heads.update(cp.streams)
        self.last = stored[-1] if stored else None
        if self.last is not None:
            self.head, self.count = bytes.fromhex(self.last.head), self.last.count
            self.read_to = self.last.covers

    async def read(self) -> int:
        """Fold events past what was read into the running head; the number read."""
        rows = await self.store.read_all(self.read_to, limit=self.batch)
        for row in rows:
            self.head = next_head(self.head, row.hash)
            self.moved[row.stream_id] = (row.version, row.hash.hex())
        if rows:
            self.count += len(rows)
            self.read_to = rows[-1].checkpoint
        return len(rows)

    @property
    def pending(self) -> int:
        return self.count - (self.last.count if self.last else 0)

    def due(self, now: datetime) -> bool:
        if self.pending <= 0:
            return False
        if self.pending >= self.every_events or self.last is None:
            return True
        return (now - self.last.at).total_seconds() >= self.every_seconds

    async def seal(self) -> SignedCheckpoint | None:
        """Sign and store a checkpoint over everything read; None if another signer got there first."""
        heads = {**self.heads, **self.moved}
        checkpoint = sign(
            self.key,
            SignedCheckpoint(
                seq=(self.last.seq if self.last else 0) + 1,
                tx=self.read_to.tx,
                position=self.read_to.position,
                count=self.count,
                head=self.head.hex(),
                streams_root=streams_root(heads).hex(),
                at=self.clock(),
                key_id=self.key_id,
                streams=dict(self.moved),
            ),
        )
        stored = await self.store.pool.fetchval(
            """INSERT INTO log_checkpoints (seq, tx, position, count, head, streams_root, streams, at, key_id,
                                            signature)
               VALUES ($1, $2::text::xid8, $3, $4, $5, $6, $7::jsonb, $8, $9, $10)
               ON CONFLICT (seq) DO NOTHING RETURNING true""",
            checkpoint.seq,
            str(checkpoint.tx),
            checkpoint.position,
            checkpoint.count,
            bytes.fromhex(checkpoint.head),
            bytes.fromhex(checkpoint.streams_root),
            msgspec.json.encode(checkpoint.streams).decode(),
            checkpoint.at,
            checkpoint.key_id,
            bytes.fromhex(checkpoint.signature),
        )
        if not stored:
            await self.load()
            return None
        self.heads, self.moved, self.last = heads, {}, checkpoint
        log.info("checkpoint_signed", seq=checkpoint.seq, position=checkpoint.position, count=checkpoint.count)
        return checkpoint

    async def checkpoint_now(self) -> SignedCheckpoint | None:
        """Read the whole committed log and sign it, if anything is new (tests, the CLI)."""
        await self.load()
        while await self.read():
            pass
        return await self.seal() if self.pending > 0 else None

    async def run(self, stop: asyncio.Event, interval: float = 0.5) -> None:
        """Take up from the last stored checkpoint, then checkpoint until `stop` is set."""
        await self.load()
        while not stop.is_set():
            while await self.read() and not self.due(self.clock()):
                pass
            if self.due(self.clock()):
                await self.seal()
                continue
            await _sleep(stop, interval)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
