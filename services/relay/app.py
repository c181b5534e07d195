"""The relay process: the log to JetStream, with health endpoints like every service.

Its two loops, the relay and the checkpointer, each run on one replica at a time under a leader
lock of their own (`led`, the one election mechanism); the others wait as standbys.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from shared.audit.checkpointer import Checkpointer
from shared.audit.checkpoints import load_key
from shared.base.config import Settings
from shared.messaging.relay import Relay
from shared.runtime.leader import CHECKPOINTER_LOCK, RELAY_LOCK, led
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
    """Sign the whole log's head every N events or M seconds."""
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
        loops=[led(relay_loop, RELAY_LOCK, "relay"), led(checkpoint_loop, CHECKPOINTER_LOCK, "checkpointer")],
        # The relay's checkpointer signs the log's head: a deployment without a key proves nothing.
        requires=("database_url", "checkpoint_key_file"),
    )
