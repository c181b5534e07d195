"""The relay process: the log to JetStream, with health endpoints like every service."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from shared.audit.checkpointer import Checkpointer
from shared.audit.checkpoints import load_key
from shared.base.config import Settings
from shared.messaging.relay import Relay
from shared.runtime.service import CLOCK, JS, SETTINGS, STORE, ServiceSpec


async def relay_loop(app: web.Application, stop: asyncio.Event) -> None:
    settings = app[SETTINGS]
    relay = Relay(
        app[STORE],
        app[JS],
        stream=settings.nats_stream,
        subject_prefix=settings.subject_prefix,
        interval=settings.relay_interval,
    )
    await relay.run(stop)


async def checkpoint_loop(app: web.Application, stop: asyncio.Event) -> None:
    """Sign the whole log's head every N events or M seconds (only the active checkpointer signs)."""
    settings = app[SETTINGS]
    checkpointer = Checkpointer(
        app[STORE],
        load_key(Path(settings.checkpoint_key_file)),
        every_events=settings.checkpoint_events,
        every_seconds=settings.checkpoint_seconds,
        clock=app[CLOCK],
    )
    await checkpointer.run(stop)


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="relay",
        loops=[relay_loop, checkpoint_loop],
        # The relay's checkpointer signs the log's head: a deployment without a key proves nothing.
        requires=("database_url", "checkpoint_key_file"),
    )
