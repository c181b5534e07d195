"""PostgreSQL set-up: roles, the database, migrations, and the services' connection pools."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from shared.migrations import migrate

SERVICE_ROLE = "caseloop_service"
AUDITOR_ROLE = "caseloop_auditor"


def with_credentials(url: str, user: str, password: str, database: str | None = None) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user)}:{quote(password)}@{host}" + (f":{parts.port}" if parts.port else "")
    path = f"/{database}" if database else parts.path
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


async def ensure_roles(admin: asyncpg.Connection, passwords: dict[str, str]) -> None:
    """Login roles for the services and auditors; the migrations grant them their rights."""
    for role, password in passwords.items():
        exists = await admin.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role)
        verb = "ALTER" if exists else "CREATE"
        # Identifiers and passwords cannot be bind parameters in role DDL.
        escaped = password.replace("'", "''")
        await admin.execute(f"{verb} ROLE {role} LOGIN PASSWORD '{escaped}'")


async def ensure_database(admin_url: str, name: str, template: str | None = None) -> bool:
    """Create database `name` (optionally from a template) unless it exists; True if created."""
    conn = await asyncpg.connect(with_database(admin_url, "postgres"))
    try:
        if await conn.fetchval("SELECT true FROM pg_database WHERE datname = $1", name):
            return False
        suffix = f" TEMPLATE {template}" if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{suffix}')
        return True
    finally:
        await conn.close()


async def bootstrap(admin_url: str, database: str, passwords: dict[str, str]) -> list[str]:
    """Roles, database and migrations, idempotently: safe on every start."""
    conn = await asyncpg.connect(with_database(admin_url, "postgres"))
    try:
        await ensure_roles(conn, passwords)
    finally:
        await conn.close()
    await ensure_database(admin_url, database)
    return await run_migrations(with_database(admin_url, database))


async def run_migrations(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


async def create_pool(url: str, *, size: int = 10, statement_timeout_ms: int = 10_000) -> asyncpg.Pool:
    """A pool whose every statement has a timeout, so one stuck query cannot hold a worker."""
    pool = await asyncpg.create_pool(
        url,
        min_size=1,
        max_size=size,
        command_timeout=statement_timeout_ms / 1000 + 5,
        server_settings={
            "statement_timeout": str(statement_timeout_ms),
            "idle_in_transaction_session_timeout": "60000",
        },
    )
    assert pool is not None
    return pool
