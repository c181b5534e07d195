"""DATABASE_URL with several hosts: asyncpg tries them in order and keeps the one that accepts writes.

A primary with a synchronous standby is configured as
`postgresql://u:p@primary:5432,standby:5432/caseloop?target_session_attrs=read-write`; after a
failover the pool's new connections find the promoted server. Here the first host is down (as a
dead primary is) and the second is the writable server.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg
import pytest

from ops.servers import free_port
from shared.store.db import create_pool
from tests.conftest import Database


def multi_host(url: str, attrs: str) -> str:
    parts = urlsplit(url)
    credentials, _, _ = parts.netloc.rpartition("@")
    hosts = f"127.0.0.1:{free_port()},{parts.hostname}:{parts.port}"
    return f"{parts.scheme}://{credentials}@{hosts}{parts.path}?target_session_attrs={attrs}"


async def test_a_pool_on_a_multi_host_url_connects_to_the_writable_server_past_a_dead_one(database: Database) -> None:
    pool = await create_pool(multi_host(database.url, "read-write"), size=2)
    try:
        assert await pool.fetchval("SHOW transaction_read_only") == "off"
        assert await pool.fetchval("SELECT count(*) FROM events") == 0
    finally:
        await pool.close()


async def test_readers_that_prefer_a_standby_fall_back_to_the_primary_and_read_only_insists(database: Database) -> None:
    conn = await asyncpg.connect(multi_host(database.auditor_url, "prefer-standby"))
    try:
        assert await conn.fetchval("SELECT count(*) FROM events") == 0
    finally:
        await conn.close()
    with pytest.raises((asyncpg.TargetServerAttributeNotMatched, OSError)):
        await asyncpg.connect(multi_host(database.auditor_url, "standby"))
