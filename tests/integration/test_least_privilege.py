"""The database roles: the owner migrates without being a superuser, services append and read,
auditors only read; nobody but the owner changes the schema, and nobody rewrites an event.
"""

from __future__ import annotations

from uuid import uuid4

import asyncpg
import pytest

from ops.servers import Postgres
from shared.store.db import OWNER_ROLE, SERVICE_ROLES, bootstrap, ensure_database, run_migrations
from shared.store.eventstore import EventStore, case_stream
from tests import examples
from tests.conftest import ROLE_PASSWORDS, Database

REFUSED = (asyncpg.InsufficientPrivilegeError,)


async def test_the_owner_owns_everything_and_is_not_a_superuser(database: Database) -> None:
    conn = await asyncpg.connect(database.owner_url)
    try:
        flags = await conn.fetchrow(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = $1", OWNER_ROLE
        )
        owners = await conn.fetch(
            """SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"""
        )
    finally:
        await conn.close()
    assert flags is not None and not any(flags.values())
    assert [r["owner"] for r in owners] == [OWNER_ROLE]


async def test_a_service_appends_and_reads_but_cannot_update_delete_or_truncate_events(
    database: Database, store: EventStore
) -> None:
    case_id = uuid4()
    await store.append(
        case_stream(case_id), [examples.case_reported(case_id=case_id)], expected_version=0, metadata=examples.METADATA
    )
    conn = await asyncpg.connect(database.url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM events") == 1
        for statement in (
            "UPDATE events SET type = 'Forged'",
            "DELETE FROM events",
            "TRUNCATE events",
            "CREATE TABLE mine (x int)",
            "ALTER TABLE events DISABLE TRIGGER ALL",
            "DROP TABLE case_view",
            "INSERT INTO backend_keys (keyid, sub, public_key) VALUES ('k', 'evil', '\\x00'::bytea)",
            "UPDATE pii_reads SET purpose = 'nothing'",
            "DELETE FROM pii_reads",
        ):
            with pytest.raises(REFUSED):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_an_auditor_reads_the_log_and_writes_nothing(database: Database, store: EventStore) -> None:
    case_id = uuid4()
    await store.append(
        case_stream(case_id), [examples.case_reported(case_id=case_id)], expected_version=0, metadata=examples.METADATA
    )
    conn = await asyncpg.connect(database.auditor_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM events") == 1
        assert await conn.fetchval("SELECT count(*) FROM pii_reads") == 0
        for statement in (
            "INSERT INTO pii_reads (actor, case_id, purpose) VALUES ('a', gen_random_uuid(), 'x')",
            "UPDATE case_view SET status = 'closed'",
            "DELETE FROM inbox",
            "SELECT wrapped_key FROM reporter_keys",
            "UPDATE events SET type = 'Forged'",
        ):
            with pytest.raises(REFUSED):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_a_database_made_before_the_owner_role_is_handed_to_it(postgres: Postgres) -> None:
    name = f"adopt_{uuid4().hex[:8]}"
    await ensure_database(postgres.url(), name)  # the old way: the superuser owns it all
    await run_migrations(postgres.url(name))
    await bootstrap(postgres.url(), name, ROLE_PASSWORDS)
    conn = await asyncpg.connect(postgres.url(name))
    try:
        owners = await conn.fetch(
            """SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"""
        )
        database_owner = await conn.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    assert [r["owner"] for r in owners] == [OWNER_ROLE] and database_owner == OWNER_ROLE


# Each service's own read models, and one write each into them that its role must be allowed.
OWN_WRITES = {
    "intake": "DELETE FROM case_view WHERE false",
    "routing": "DELETE FROM dispatch_queue WHERE false",
    "handling": "DELETE FROM task_view WHERE false",
    "verification": "DELETE FROM verification_view WHERE false",
    "relay": "UPDATE checkpoints SET position = position WHERE false",
}
# Writes into other services' read models: refused to every role but the owning one.
FOREIGN_WRITES = {
    "intake": ("UPDATE routing_tasks SET status = 'x'", "INSERT INTO log_checkpoints SELECT * FROM log_checkpoints"),
    "routing": ("UPDATE case_view SET status = 'closed'", "DELETE FROM task_view", "DELETE FROM reporter_keys"),
    "handling": (
        "INSERT INTO verification_view SELECT * FROM verification_view",
        "DELETE FROM dispatch_queue",
        "DELETE FROM open_alarms",
    ),
    "verification": (
        "UPDATE task_view SET status = 'x'",
        "UPDATE checkpoints SET position = 0",
        "DELETE FROM case_view",
    ),
    "relay": ("DELETE FROM case_view", "UPDATE verification_view SET outcome = 'x'", "DELETE FROM idempotency_keys"),
}


@pytest.mark.parametrize("service", sorted(OWN_WRITES))
async def test_each_service_role_writes_its_own_read_models_only(
    database: Database, store: EventStore, service: str
) -> None:
    case_id = uuid4()
    await store.append(
        case_stream(case_id), [examples.case_reported(case_id=case_id)], expected_version=0, metadata=examples.METADATA
    )
    conn = await asyncpg.connect(database.service_url(service))
    try:
        assert await conn.fetchval("SELECT current_user") == SERVICE_ROLES[service]
        assert await conn.fetchval("SELECT count(*) FROM events") == 1
        await conn.execute(OWN_WRITES[service])
        for statement in (
            *FOREIGN_WRITES[service],
            "UPDATE events SET type = 'Forged'",
            "DELETE FROM events",
            "TRUNCATE events",
            "INSERT INTO backend_keys (keyid, sub, public_key) VALUES ('k', 'evil', '\\x00'::bytea)",
            "UPDATE pii_reads SET purpose = 'nothing'",
        ):
            with pytest.raises(REFUSED):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_services_write_their_own_rows_as_the_running_code_does(database: Database) -> None:
    """The statements the services themselves run, as their own roles: nothing needs caseloop_service."""
    own = {
        "intake": "INSERT INTO open_alarms (device_key, case_id) VALUES ('d', gen_random_uuid())",
        "routing": """INSERT INTO routing_tasks (task_id, case_id, department, status, case_version)
                      VALUES (gen_random_uuid(), gen_random_uuid(), 'd', 'open', 1)""",
        "handling": """INSERT INTO task_view (task_id, case_id, department, round, lead, status, accept_by,
                           complete_by, category, case_version, updated_at)
                       VALUES (gen_random_uuid(), gen_random_uuid(), 'd', 1, true, 's', now(), now(), 'c', 1, now())""",
        "verification": """INSERT INTO verification_view (verification_id, case_id, round, kind, outcome, created_by,
                               category, case_version, requested_at, updated_at)
                           VALUES (gen_random_uuid(), gen_random_uuid(), 1, 'reporter', 'pending', 'b', 'c', 1,
                                   now(), now())""",
        "relay": "INSERT INTO checkpoints (name) VALUES ('relay-test')",
    }
    for service, statement in own.items():
        conn = await asyncpg.connect(database.service_url(service))
        try:
            await conn.execute(statement)
            await conn.execute("INSERT INTO signature_nonces VALUES ('k', $1, now())", service)
            if service != "relay":  # the relay reads the log; it appends nothing and consumes nothing
                await conn.execute("INSERT INTO inbox (consumer, event_id) VALUES ($1, gen_random_uuid())", service)
            else:
                with pytest.raises(REFUSED):
                    await conn.execute("INSERT INTO inbox (consumer, event_id) VALUES ('r', gen_random_uuid())")
        finally:
            await conn.close()
