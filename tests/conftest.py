"""Real servers for the whole session: PostgreSQL and nats-server, started from the wheels."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from ops.servers import NatsServer, Postgres
from shared.base.config import Settings
from shared.store.db import (
    AUDITOR_ROLE,
    OWNER_ROLE,
    SERVICE_ROLE,
    SERVICE_ROLES,
    bootstrap,
    create_pool,
    ensure_database,
    with_credentials,
)
from shared.store.eventstore import EventStore
from tests import folders

SERVICE_PASSWORD = "service-test-password"
AUDITOR_PASSWORD = "auditor-test-password"
OWNER_PASSWORD = "owner-test-password"
# Each service's own role (shared/sql/0008_service_roles.sql), by service name.
SERVICE_PASSWORDS = {service: f"{service}-test-password" for service in SERVICE_ROLES}
ROLE_PASSWORDS = {
    OWNER_ROLE: OWNER_PASSWORD,
    SERVICE_ROLE: SERVICE_PASSWORD,
    AUDITOR_ROLE: AUDITOR_PASSWORD,
    **{SERVICE_ROLES[service]: password for service, password in SERVICE_PASSWORDS.items()},
}
TEMPLATE = "caseloop_template"
_counter = itertools.count(1)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """Set up first, so torn down last: by then every folder this session made must be gone, root's
    PostgreSQL homes (outside the temporary folder) included."""
    homes_before = folders.postgres_homes()
    yield
    left = folders.left_behind() + folders.homes_left_behind(homes_before)
    assert not left, f"this session left folders behind: {', '.join(map(str, left))}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    if folders.kept or exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        terminalreporter.write_line(f"caseloop: {folders.last_line()}")


@pytest.fixture(scope="session")
def servers_dir() -> Iterator[Path]:
    folder = folders.make("test")
    yield folder
    folders.done(folder)


@pytest.fixture(scope="session")
def postgres(servers_dir: Path) -> Iterator[Postgres]:
    server = Postgres(servers_dir / "pg")
    try:
        server.start()
        asyncio.run(bootstrap(server.url(), TEMPLATE, ROLE_PASSWORDS))
        yield server
    finally:
        folders.done(postgres=server)  # stops it; as root, its data is outside servers_dir


@pytest.fixture(scope="session")
def nats_server(servers_dir: Path) -> Iterator[NatsServer]:
    server = NatsServer(servers_dir / "nats")
    try:
        yield server.start()
    finally:
        server.stop()


class Database:
    """A fresh database cloned from the migrated template: admin and service URLs."""

    def __init__(self, postgres: Postgres, name: str) -> None:
        self.name = name
        self.admin_url = postgres.url(name)  # the superuser: tests that inspect the server itself
        self.owner_url = with_credentials(self.admin_url, OWNER_ROLE, OWNER_PASSWORD)
        self.url = with_credentials(self.admin_url, SERVICE_ROLE, SERVICE_PASSWORD)
        self.auditor_url = with_credentials(self.admin_url, AUDITOR_ROLE, AUDITOR_PASSWORD)

    def service_url(self, service: str) -> str:
        """One service's own role (intake, routing, handling, verification, relay)."""
        return with_credentials(self.admin_url, SERVICE_ROLES[service], SERVICE_PASSWORDS[service])


@pytest.fixture
async def database(postgres: Postgres) -> Database:
    name = f"t{os.getpid()}_{next(_counter)}"
    await ensure_database(postgres.url(), name, template=TEMPLATE, owner=OWNER_ROLE)
    return Database(postgres, name)


@pytest.fixture
def settings(database: Database, nats_server: NatsServer) -> Settings:
    n = next(_counter)
    return Settings(
        database_url=database.url,
        admin_database_url=database.owner_url,
        nats_url=nats_server.url,
        nats_stream=f"T{os.getpid()}_{n}",
        subject_prefix=f"t{os.getpid()}_{n}",
        nak_delay=0.1,
    )


@pytest.fixture
async def pool(database: Database) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database.url, size=20)
    yield pool
    await pool.close()


@pytest.fixture
async def store(pool: asyncpg.Pool) -> EventStore:
    return EventStore(pool)
