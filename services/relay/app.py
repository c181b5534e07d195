"""The relay process: the log to JetStream, with health endpoints like every service."""

from __future__ import annotations

import asyncio

from aiohttp import web

from shared.config import Settings
from shared.relay import Relay
from shared.service import JS, SETTINGS, STORE, ServiceSpec


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


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(name="relay", access={}, routes=lambda app: None, loops=[relay_loop])
