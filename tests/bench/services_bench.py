"""The figures that need the running services (intake, the full loop) and the outside reference
(the eventsourcing library), each in a database of its own on the bench's server."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from ops.stack import Stack
from shared.store.db import SERVICE_ROLE, bootstrap, with_credentials, with_database
from tests.bench import eventsourcing_bench, intake_bench, loop_bench
from tests.bench.eventstore_bench import Figure

LOOP_DATABASE = f"caseloop_bench_loop_{os.getpid()}"
INTAKE_DATABASE = f"caseloop_bench_intake_{os.getpid()}"
OURS_DATABASE = f"caseloop_bench_ours_{os.getpid()}"
ES_DATABASE = f"caseloop_bench_es_{os.getpid()}"
DATABASES = (LOOP_DATABASE, INTAKE_DATABASE, OURS_DATABASE, ES_DATABASE)


async def run(admin_url: str, nats_url: str, password: str, status: Any) -> list[Figure]:
    figures: list[Figure] = []
    await bootstrap(admin_url, OURS_DATABASE, {SERVICE_ROLE: password})
    ours = with_database(admin_url, OURS_DATABASE)
    with status("append and replay beside the eventsourcing library"):
        figures += await eventsourcing_bench.run(ours, with_credentials(ours, SERVICE_ROLE, password), ES_DATABASE)
    # Intake alone, in a database of its own: its figures are the front door's, and the thousands
    # of cases its peak run reports must not sit as a backlog in front of the full loop's.
    await bootstrap(admin_url, INTAKE_DATABASE, {SERVICE_ROLE: password})
    admin = with_database(admin_url, INTAKE_DATABASE)
    service = with_credentials(admin, SERVICE_ROLE, password)
    async with running(admin, service, nats_url, f"benchintake{os.getpid()}", ("intake",)) as stack:
        with status(f"intake alone: {intake_bench.CLIENTS} clients, then half the peak rate"):
            intake, raw_rate = await intake_bench.run(stack, admin, service)
    figures += intake
    await bootstrap(admin_url, LOOP_DATABASE, {SERVICE_ROLE: password})
    admin = with_database(admin_url, LOOP_DATABASE)
    service = with_credentials(admin, SERVICE_ROLE, password)
    async with running(admin, service, nats_url, f"benchloop{os.getpid()}") as stack:
        with status(f"full loop: {loop_bench.CASES} cases, then half the rate"):
            raw, close = await intake_bench.raw_insert(admin, service)
            try:
                figures += await loop_bench.run(stack, service, raw, raw_rate)
            finally:
                await close()
    return figures


@contextlib.asynccontextmanager
async def running(
    admin: str, service: str, nats_url: str, name: str, services: tuple[str, ...] | None = None
) -> AsyncIterator[Stack]:
    """The stack's processes (default: every service) for the length of an `async with`."""
    context = intake_bench.running_stack(admin, service, nats_url, name, services)
    stack = await asyncio.to_thread(context.__enter__)
    try:
        yield stack
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(context.__exit__, None, None, None)
