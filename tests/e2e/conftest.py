"""The services as separate processes, started exactly as `caseloop up` starts them."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest

from ops.servers import Postgres, free_port
from ops.stack import SERVICES, Stack, service_database_env
from shared.store.db import OWNER_ROLE, SERVICE_ROLE, ensure_database, with_credentials
from tests import folders
from tests.conftest import OWNER_PASSWORD, SERVICE_PASSWORD, SERVICE_PASSWORDS, TEMPLATE
from tests.e2e.client import Api


@pytest.fixture(scope="module")
def stack(postgres: Postgres) -> Iterator[Stack]:
    root = folders.make("e2e")
    name = f"e2e_{os.getpid()}_{root.name[-8:].lower()}"
    asyncio.run(ensure_database(postgres.url(), name, template=TEMPLATE, owner=OWNER_ROLE))
    admin = postgres.url(name)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NATS_")},
        "DATABASE_URL": with_credentials(admin, SERVICE_ROLE, SERVICE_PASSWORD),
        "ADMIN_DATABASE_URL": with_credentials(admin, OWNER_ROLE, OWNER_PASSWORD),
        **service_database_env(admin, SERVICE_PASSWORDS),  # each service as its own role
        "NATS_STREAM": name.upper(),
        "SUBJECT_PREFIX": name,
        "CLOCK_FILE": str(root / "clock"),
        "DEADLINE_INTERVAL": "0.2",
        "ACK_WAIT": "5",
        "NAK_DELAY": "0.2",
        "REPORTER_CONFIRM_HOURS": "1",
        # The test-only fault hook (X-Test-Fault: 500): test_secrets_in_logs looks for this value.
        "TEST_FAULT_CANARY": f"canary-{secrets.token_hex(16)}",
    }
    # Its own nats-server, as `caseloop up` runs it: a user per service and department.
    running = Stack(root, env=env, ports={service: free_port() for service in SERVICES}, nats_port=free_port())
    try:
        running.start_infrastructure()
        running.start_services()
        yield running
    finally:
        running.stop()
        folders.done(root)


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Api]:
    async with Api.at(stack.root, {name: stack.process(name).url for name in SERVICES}) as api:
        yield api
