"""PostgreSQL set-up: roles, the database, migrations, and the services' connection pools."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from shared.store.migrations import migrate

OWNER_ROLE = "caseloop_owner"  # owns the schema and runs migrations; not a superuser
SERVICE_ROLE = "caseloop_service"
AUDITOR_ROLE = "caseloop_auditor"
# Each service's own role (shared/sql/0008_service_roles.sql): the log, and only its own read models.
SERVICE_ROLES = {
    "intake": "caseloop_intake",
    "routing": "caseloop_routing",
    "handling": "caseloop_handling",
    "verification": "caseloop_verification",
    "relay": "caseloop_relay",
}


def database_url_variable(service: str) -> str:
    """The environment variable with one service's own connection, e.g. INTAKE_DATABASE_URL."""
    return f"{service.upper()}_DATABASE_URL"


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
    """Login roles (never superuser) for the owner, services and auditors; migrations grant rights."""
    for role, password in passwords.items():
        exists = await admin.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role)
        verb = "ALTER" if exists else "CREATE"
        # Identifiers and passwords cannot be bind parameters in role DDL.
        escaped = password.replace("'", "''")
        await admin.execute(
            f"{verb} ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD '{escaped}'"
        )


async def ensure_database(admin_url: str, name: str, template: str | None = None, owner: str | None = None) -> bool:
    """Create database `name` (optionally from a template) unless it exists; True if created."""
    conn = await asyncpg.connect(with_database(admin_url, "postgres"))
    try:
        if await conn.fetchval("SELECT true FROM pg_database WHERE datname = $1", name):
            return False
        suffix = (f" TEMPLATE {template}" if template else "") + (f" OWNER {owner}" if owner else "")
        await conn.execute(f'CREATE DATABASE "{name}"{suffix}')
        return True
    finally:
        await conn.close()


async def bootstrap(admin_url: str, database: str, passwords: dict[str, str]) -> list[str]:
    """Roles, database and migrations, idempotently: safe on every start.

    With a password for OWNER_ROLE, the database and every object in it belong to that role
    and the migrations run as it, so no service or migration ever needs a superuser.
    """
    conn = await asyncpg.connect(with_database(admin_url, "postgres"))
    try:
        await ensure_roles(conn, passwords)
    finally:
        await conn.close()
    owner = OWNER_ROLE if OWNER_ROLE in passwords else None
    created = await ensure_database(admin_url, database, owner=owner)
    if owner is None:
        return await run_migrations(with_database(admin_url, database))
    if not created:
        await _adopt(with_database(admin_url, database), owner)
    return await run_migrations(with_credentials(admin_url, owner, passwords[owner], database))


async def _adopt(admin_url: str, owner: str) -> None:
    """Hand a database made before the owner role existed (and its objects) to that role."""
    conn = await asyncpg.connect(admin_url)
    try:
        database = await conn.fetchval("SELECT current_database()")
        await conn.execute(f'ALTER DATABASE "{database}" OWNER TO {owner}')
        for (name,) in await conn.fetch(
            """SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v') AND c.relowner <> $1::regrole""",
            owner,
        ):
            await conn.execute(f"ALTER TABLE {name} OWNER TO {owner}")
        for (name,) in await conn.fetch(
            """SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname = 'public' AND p.proowner <> $1::regrole""",
            owner,
        ):
            await conn.execute(f"ALTER FUNCTION {name} OWNER TO {owner}")
    finally:
        await conn.close()


async def run_migrations(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a pooled connection needs on release beyond asyncpg's own rollback: nothing.

    asyncpg's default reset sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`
    on every release — one more round trip per pool use, 9–12 % of intake's time under load.
    No caseloop code changes session settings, opens cursors outside a transaction or LISTENs
    on a pooled connection, nor takes a session advisory lock on one: leader locks live on a
    dedicated connection each (the leader mechanism in shared/runtime), which ends with its lock.
    """


async def create_pool(url: str, *, size: int = 10, statement_timeout_ms: int = 10_000) -> asyncpg.Pool:
    """A pool whose every statement has a timeout, so one stuck query cannot hold a worker."""
    pool = await asyncpg.create_pool(
        url,
        min_size=1,
        max_size=size,
        reset=_keep_session,
        command_timeout=statement_timeout_ms / 1000 + 5,
        server_settings={
            "statement_timeout": str(statement_timeout_ms),
            "idle_in_transaction_session_timeout": "60000",
        },
    )
    assert pool is not None
    return pool
