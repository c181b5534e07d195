"""Tamper evidence against real PostgreSQL: a superuser's every kind of rewrite is found and named."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from msgspec.structs import replace

from ops.audit.store import kept_checkpoint, read_log, verify_against, verify_database
from shared.audit.checkpointer import Checkpointer
from shared.store.eventstore import EventStore, case_stream
from tests import examples
from tests.conftest import Database
from tests.unit.test_audit_chain import KEY, PUBLIC

A, B, C = (UUID(int=i) for i in (0xA, 0xB, 0xC))
EVENTS_PER_CASE = 7
CASELOOP = str(Path(sys.executable).parent / "caseloop")


async def seed(store: EventStore) -> None:
    """Three cases, their events interleaved in the log, then a signed checkpoint over all of them."""
    for i in range(EVENTS_PER_CASE):
        for case_id in (A, B, C):
            event = replace(examples.until_verifying()[i], case_id=case_id)
            await store.append(case_stream(case_id), [event], expected_version=i, metadata=examples.METADATA)
    assert await Checkpointer(store, KEY).checkpoint_now() is not None


async def tamper(database: Database, *statements: tuple[str, Any]) -> None:
    conn = await asyncpg.connect(database.admin_url)
    try:
        await conn.execute("SET session_replication_role = replica")  # the append-only triggers stop firing
        for sql, *args in statements:
            await conn.execute(sql, *args)
    finally:
        await conn.close()


def where(findings: list[Any]) -> list[tuple[str, str, int | None]]:
    return [(f.kind, f.stream_id, f.version) for f in findings]


async def test_an_untouched_log_verifies(store: EventStore, database: Database) -> None:
    await seed(store)
    report = await verify_database(database.auditor_url, PUBLIC, None, None)
    assert report.ok, report.findings
    assert (report.events, report.streams, report.checkpoints, report.covered) == (21, 3, 1, 21)


async def test_a_payload_edited_by_a_superuser_is_named_by_stream_and_version(
    store: EventStore, database: Database
) -> None:
    await seed(store)
    await tamper(
        database,
        (
            "UPDATE events SET data = replace(data::text, 'sanitation', 'water')::json "
            "WHERE stream_id = $1 AND version = 3",
            case_stream(A),
        ),
    )
    report = await verify_database(database.auditor_url, PUBLIC, None, None)
    assert where(report.findings) == [("edited", case_stream(A), 3)]


async def test_a_deleted_event_is_named_and_breaks_the_signed_head(store: EventStore, database: Database) -> None:
    await seed(store)
    await tamper(database, ("DELETE FROM events WHERE stream_id = $1 AND version = 4", case_stream(B)))
    report = await verify_database(database.auditor_url, PUBLIC, None, None)
    assert where(report.findings) == [("missing", case_stream(B), 4), ("head", "", None)]
    assert "20 with head" in report.findings[1].detail


async def test_a_whole_deleted_stream_is_named_by_the_checkpoint(store: EventStore, database: Database) -> None:
    await seed(store)
    await tamper(database, ("DELETE FROM events WHERE stream_id = $1", case_stream(C)))
    report = await verify_database(database.auditor_url, PUBLIC, None, None)
    assert where(report.findings) == [("head", "", None), ("stream", case_stream(C), 7)]
    assert "whole stream deleted" in report.findings[1].detail


async def test_two_swapped_events_are_found(store: EventStore, database: Database) -> None:
    await seed(store)
    stream = case_stream(A)
    await tamper(
        database,
        ("UPDATE events SET version = 1000 WHERE stream_id = $1 AND version = 3", stream),
        ("UPDATE events SET version = 3 WHERE stream_id = $1 AND version = 4", stream),
        ("UPDATE events SET version = 4 WHERE stream_id = $1 AND version = 1000", stream),
    )
    found = where((await verify_database(database.auditor_url, PUBLIC, None, None)).findings)
    assert ("edited", stream, 3) in found and ("order", stream, 4) in found
    assert all(stream_id in (stream, "") for _, stream_id, _ in found)


async def test_a_row_inserted_with_a_forged_hash_is_found(store: EventStore, database: Database) -> None:
    await seed(store)
    await tamper(
        database,
        (
            """INSERT INTO events (event_id, stream_id, version, type, data, metadata, recorded_at, hash)
               VALUES ($1, $2, 8, 'CaseClosed', $3::json, $4::json, now(), $5)""",
            uuid4(),
            case_stream(A),
            f'{{"type":"CaseClosed","case_id":"{A}"}}',
            f'{{"correlation_id":"{uuid4()}","actor":"forger"}}',
            os.urandom(32),
        ),
    )
    assert where((await verify_database(database.auditor_url, PUBLIC, None, None)).findings) == [
        ("edited", case_stream(A), 8)
    ]


async def test_a_kept_checkpoint_proves_a_stream_was_deleted(store: EventStore, database: Database) -> None:
    await seed(store)
    kept = await kept_checkpoint(database.auditor_url, PUBLIC)
    await tamper(database, ("DELETE FROM events WHERE stream_id = $1", case_stream(B)))
    conn = await asyncpg.connect(database.auditor_url)
    try:
        rows = await read_log(conn)
    finally:
        await conn.close()
    report = verify_against(rows, kept, PUBLIC)
    assert where(report.findings) == [("head", "", None), ("stream", case_stream(B), 7)]


async def caseloop(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        CASELOOP,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_the_cli_exports_a_case_that_verifies_with_no_database(
    store: EventStore, database: Database, tmp_path: Path
) -> None:
    await seed(store)
    public = base64.b64encode(PUBLIC).decode()
    base = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    base |= {"CASELOOP_HOME": str(tmp_path / "nothing-here"), "COLUMNS": "200"}
    online = {**base, "AUDITOR_DATABASE_URL": database.auditor_url, "CHECKPOINT_PUBLIC_KEY": public}

    code, out = await caseloop("audit", "verify", env=online)
    assert code == 0 and "OK" in out, out
    proc = await asyncio.create_subprocess_exec(
        CASELOOP, "audit", "export", str(A), env=online, stdout=asyncio.subprocess.PIPE
    )
    document, _ = await proc.communicate()
    (tmp_path / "case.json").write_bytes(document)

    code, out = await caseloop("audit", "verify-export", str(tmp_path / "case.json"), "--public-key", public, env=base)
    assert code == 0 and "OK" in out and "covered by checkpoint #1" in out, out
    (tmp_path / "edited.json").write_bytes(document.replace(b"sanitation", b"water", 1))
    code, out = await caseloop(
        "audit", "verify-export", str(tmp_path / "edited.json"), "--public-key", public, env=base
    )
    assert code == 2 and "edited" in out, out

    await tamper(database, ("DELETE FROM events WHERE stream_id = $1 AND version = 2", case_stream(C)))
    code, out = await caseloop("audit", "verify", env=online)
    assert code == 2 and case_stream(C) in out and "missing" in out, out
