"""A relay running for the length of a test, so appended events reach the stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NamedTuple

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from shared.base.config import Settings
from shared.messaging.bus import connect, ensure_stream
from shared.messaging.relay import Relay
from shared.store.eventstore import EventStore


class Relaying(NamedTuple):
    relay: Relay
    js: JetStreamContext
    nc: NATS  # the relay's own connection: what it knows of NATS, and what it holds back while NATS is gone


@asynccontextmanager
async def relaying(settings: Settings, store: EventStore, name: str = "test") -> AsyncIterator[Relaying]:
    nc = await connect(settings, name)
    js = nc.jetstream()
    await ensure_stream(js, settings)
    relay = Relay(store, js, stream=settings.nats_stream, subject_prefix=settings.subject_prefix)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield Relaying(relay, js, nc)
    finally:
        stop.set()
        await task
        await nc.close()
