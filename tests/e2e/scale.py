"""Stacks with replicas (and a NATS cluster) for the scale-out tests, and what they look at."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import nats
from nats.js import JetStreamContext

from ops.servers import Postgres, free_port
from ops.stack import SERVICES, Process, Stack, service_database_env
from shared.store.db import SERVICE_ROLE, ensure_database, with_credentials
from tests import folders
from tests.conftest import SERVICE_PASSWORD, SERVICE_PASSWORDS, TEMPLATE
from tests.e2e.client import Api


@contextmanager
def scaled_stack(
    postgres: Postgres, replicas: dict[str, int], *, nats_url: str = "", nats_cluster: int = 0
) -> Iterator[Stack]:
    """Like the e2e `stack` fixture, with several processes for some services."""
    root = folders.make("scale")
    name = f"scale_{os.getpid()}_{root.name[-8:].lower()}"
    asyncio.run(ensure_database(postgres.url(), name, template=TEMPLATE))
    admin = postgres.url(name)
    env = {
        **os.environ,
        "DATABASE_URL": with_credentials(admin, SERVICE_ROLE, SERVICE_PASSWORD),
        "ADMIN_DATABASE_URL": admin,
        **service_database_env(admin, SERVICE_PASSWORDS),  # each service as its own role
        "NATS_STREAM": name.upper(),
        "SUBJECT_PREFIX": name,
        "CLOCK_FILE": str(root / "clock"),
        "DEADLINE_INTERVAL": "0.2",
        "ACK_WAIT": "5",
        "NAK_DELAY": "0.2",
        "REPORTER_CONFIRM_HOURS": "1",
        "NATS_URL": nats_url,
    }
    ports = {service: free_port() for service in SERVICES}
    stack = Stack(root, env=env, ports=ports, replicas=replicas, nats_cluster=nats_cluster)
    try:
        stack.start_infrastructure()
        stack.start_services()
        yield stack
    finally:
        stack.stop()
        folders.done(root)


@asynccontextmanager
async def api_for(stack: Stack) -> AsyncIterator[Api]:
    """An Api whose calls reach the first replica of each service (a load balancer's job in production)."""
    async with PatientApi.at(stack.root, {name: stack.process(name).url for name in SERVICES}) as api:
        yield api


class PatientApi(Api):
    """Waits and retries when told 429 (rate limited), as a well-behaved client does."""

    async def call(self, method: str, service: str, path: str, **options: Any) -> tuple[int, Any]:
        for attempt in range(50):
            status, answer = await super().call(method, service, path, **options)
            if status != 429:
                break
            await asyncio.sleep(min(0.2 * (attempt + 1), 1.0))
        return status, answer


def logged(process: Process, event: str, **fields: str) -> list[dict[str, Any]]:
    """The JSON log lines of one process with this `event` (and these field values)."""
    found: list[dict[str, Any]] = []
    if not process.log_path.exists():
        return found
    for line in process.log_path.read_text(errors="replace").splitlines():
        if f'"{event}"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items()):
            found.append(entry)
    return found


def leaders(processes: list[Process], became: str, waits: str, **fields: str) -> list[Process]:
    """Running processes whose latest leadership line is `became` (leader_active), not `waits`."""
    found = []
    for process in processes:
        if process.proc is None or process.proc.poll() is not None:
            continue
        lines = logged(process, became, **fields) + logged(process, waits, **fields)
        lines.sort(key=lambda e: str(e["timestamp"]))
        if lines and lines[-1]["event"] == became:
            found.append(process)
    return found


@asynccontextmanager
async def _jetstream(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(servers=[u for u in nats_url.split(",") if u])
    try:
        yield nc.jetstream(timeout=10)
    finally:
        await nc.close()


async def stream_messages(nats_url: str, stream: str) -> list[tuple[int, dict[str, str], str]]:
    """Every message of the stream in order: (sequence, headers, subject)."""
    async with _jetstream(nats_url) as js:
        info = await js.stream_info(stream)
        messages: list[tuple[int, dict[str, str], str]] = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            messages.append((seq, dict(msg.headers or {}), str(msg.subject)))
        return messages


async def stream_last_seq(nats_url: str, stream: str) -> int:
    """The stream's last sequence: it grows as the relay publishes."""
    async with _jetstream(nats_url) as js:
        return int((await js.stream_info(stream)).state.last_seq)


async def past(count: Awaitable[int], mark: int) -> bool:
    """Whether a count (the stream's, the log's) has gone past `mark`: a sign of progress to wait for."""
    return await count > mark


async def logged_event_count(database_url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()
