"""Stacks with replicas (and a NATS cluster) for the scale-out tests, and what they look at."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import nats

from ops.servers import Postgres, free_port
from ops.stack import SERVICES, Process, Stack, load_secrets, service_database_env
from shared.store.db import SERVICE_ROLE, ensure_database, with_credentials
from tests import folders
from tests.conftest import SERVICE_PASSWORD, SERVICE_PASSWORDS, TEMPLATE
from tests.e2e.client import Api, StackInfo


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
    info = StackInfo(
        urls={name: stack.process(name).url for name in SERVICES},
        jwt_secret=load_secrets(stack.root).jwt_secret,
        clock_file=stack.root / "clock",
        **_signing(stack.root),
    )
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield PatientApi(session, info)


class PatientApi(Api):
    """Waits and retries when told 429 (rate limited), as a well-behaved client does."""

    async def call(self, method: str, service: str, path: str, **options: Any) -> tuple[int, Any]:
        for attempt in range(50):
            status, answer = await super().call(method, service, path, **options)
            if status != 429:
                break
            await asyncio.sleep(min(0.2 * (attempt + 1), 1.0))
        return status, answer


def _signing(root: Path) -> dict[str, Any]:
    """The development backend's signing key, where reporter_backend calls must be signed (RFC 9421)."""
    try:
        from ops.devsetup import load_dev_backend  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # before signed calls
        return {}
    return {"backend_key": load_dev_backend(root)}


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


async def stream_messages(nats_url: str, stream: str) -> list[tuple[int, dict[str, str], str]]:
    """Every message of the stream in order: (sequence, headers, subject)."""
    nc = await nats.connect(servers=[u for u in nats_url.split(",") if u])
    try:
        js = nc.jetstream(timeout=10)
        info = await js.stream_info(stream)
        messages: list[tuple[int, dict[str, str], str]] = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            messages.append((seq, dict(msg.headers or {}), str(msg.subject)))
        return messages
    finally:
        await nc.close()


async def logged_event_count(database_url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()
