"""A relay running for the length of a test, so appended events reach the stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from nats.js import JetStreamContext

from shared.base.config import Settings
from shared.messaging.bus import connect, ensure_stream
from shared.messaging.relay import Relay
from shared.store.eventstore import EventStore


@asynccontextmanager
async def relaying(
    settings: Settings, store: EventStore, name: str = "test"
) -> AsyncIterator[tuple[Relay, JetStreamContext]]:
    nc = await connect(settings, name)
    js = nc.jetstream()
    await ensure_stream(js, settings)
    relay = Relay(store, js, stream=settings.nats_stream, subject_prefix=settings.subject_prefix)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield relay, js
    finally:
        stop.set()
        await task
        await nc.close()
