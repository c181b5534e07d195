"""Numbered plain-SQL migrations, applied once each under an advisory lock."""

from __future__ import annotations

import hashlib
from importlib import resources

import asyncpg
import structlog

log = structlog.get_logger()

# An arbitrary constant: only one migrator at a time, whichever process starts first.
_LOCK_KEY = 0x6361_7365_6C6F_6F70 & 0x7FFF_FFFF_FFFF_FFFF  # "caseloop"


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) for every file in shared/sql, in order of their number."""
    folder = resources.files("shared.store") / "sql"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, (folder / name).read_text(encoding="utf-8")) for name in names]


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations not yet recorded; returns the names applied now."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   name text PRIMARY KEY,
                   sha256 text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["name"]: r["sha256"] for r in await conn.fetch("SELECT name, sha256 FROM schema_migrations")}
        for name, sql in migration_files():
            digest = hashlib.sha256(sql.encode()).hexdigest()
            if name in done:
                if done[name] != digest:
                    log.warning("migration_changed_after_apply", migration=name)
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (name, sha256) VALUES ($1, $2)", name, digest)
            applied_now.append(name)
            log.info("migration_applied", migration=name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now
