"""Where auditors read from: connection URLs, the whole log in order, and the verification of it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from ops.cli_options import NoStack, find_root, stack_root
from ops.stack import DATABASE, load_secrets
from shared.audit.chain import Finding, StreamHeads, by_stream, stream_findings, stream_head_findings, streams_root
from shared.audit.checkpointer import load_checkpoints
from shared.audit.checkpoints import (
    SignedCheckpoint,
    checkpoint_findings,
    head_findings,
    load_key,
    parse_public_key,
    public_bytes,
    public_key_text,
    signature_valid,
)
from shared.base.config import env_value
from shared.store.db import AUDITOR_ROLE, with_credentials
from shared.store.records import COLUMNS, RecordedEvent, case_stream, from_row

Progress = Callable[[int], None]  # called with the number of rows just read
PG_PORT = 54329  # `caseloop up`'s default; the stack records the port it used in stack.json


def local_pg_port(root: Path) -> int:
    """CASELOOP_PG_PORT, else the port the stack in `root` runs PostgreSQL on, else the default."""
    if os.environ.get("CASELOOP_PG_PORT"):
        return int(os.environ["CASELOOP_PG_PORT"])
    stack_file = root / "stack.json"
    found = json.loads(stack_file.read_text()) if stack_file.is_file() else {}
    return int(found.get("pg_port", PG_PORT))


def _local_admin(root: Path) -> str:
    password = (root / "postgres" / "superuser-password").read_text().strip()
    return f"postgresql://postgres:{password}@127.0.0.1:{local_pg_port(root)}/{DATABASE}"


def auditor_url(root: Path | None) -> str:
    """AUDITOR_DATABASE_URL, else DATABASE_URL / ADMIN_DATABASE_URL (each or its _FILE), else the
    local stack (--root, CASELOOP_HOME or the nearest .caseloop/) as caseloop_auditor."""
    for name in ("AUDITOR_DATABASE_URL", "DATABASE_URL", "ADMIN_DATABASE_URL"):
        if url := env_value(name):
            return url
    found = stack_root(root)
    return with_credentials(_local_admin(found), AUDITOR_ROLE, load_secrets(found).auditor_password)


def admin_url(root: Path | None) -> str:
    """ADMIN_DATABASE_URL, else DATABASE_URL (each or its _FILE), else the local stack's owner."""
    return env_value("ADMIN_DATABASE_URL") or env_value("DATABASE_URL") or _local_admin(stack_root(root))


def trusted_public_key(text: str | None, root: Path | None) -> bytes | None:
    """The key checkpoints must be signed with: given, CHECKPOINT_PUBLIC_KEY, or the local key file's."""
    text = text or os.environ.get("CHECKPOINT_PUBLIC_KEY")
    if text:
        return parse_public_key(text)
    path = os.environ.get("CHECKPOINT_KEY_FILE")
    if not path:
        try:
            path = str(find_root(root) / "checkpoint.key")
        except NoStack:  # no stack here: the key must then be given
            return None
    return public_bytes(load_key(Path(path)).public_key()) if Path(path).exists() else None


async def read_log(conn: Any, *, stream_id: str | None = None, progress: Progress | None = None) -> list[RecordedEvent]:
    """Every event (or one stream's), in (tx, position) order, read in batches."""
    rows: list[RecordedEvent] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = await conn.cursor(
            f"""SELECT {COLUMNS} FROM events WHERE $1::text IS NULL OR stream_id = $1
                ORDER BY events.tx, events.position""",
            stream_id,
        )
        while batch := await cursor.fetch(5000):
            rows.extend(from_row(r) for r in batch)
            if progress:
                progress(len(batch))
    return rows


async def count_events(conn: Any) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM events"))


class Report(msgspec.Struct, kw_only=True):
    events: int
    streams: int
    checkpoints: int
    covered: int  # events covered by the last checkpoint
    findings: list[Finding]
    signatures_checked: bool

    @property
    def ok(self) -> bool:
        return not self.findings


def verify_rows(
    rows: list[RecordedEvent], checkpoints: list[SignedCheckpoint], public: bytes | None, *, whole_log: bool = True
) -> Report:
    """Streams' chains and order, checkpoints' signatures and stream roots, the log's head at each checkpoint."""
    streams = by_stream(rows)
    findings: list[Finding] = []
    for stream_rows in streams.values():
        findings += stream_findings(stream_rows)
    heads: StreamHeads = {}
    if public is not None:
        signed, heads = checkpoint_findings(checkpoints, public)
        findings += signed
    else:
        for cp in checkpoints:
            heads.update(cp.streams)
    if whole_log:
        findings += head_findings(rows, checkpoints)
    else:  # one case: only its own stream's head matters
        heads = {k: v for k, v in heads.items() if k in streams}
    findings += stream_head_findings(heads, streams)
    return Report(
        events=len(rows),
        streams=len(streams),
        checkpoints=len(checkpoints),
        covered=checkpoints[-1].count if checkpoints else 0,
        findings=findings,
        signatures_checked=public is not None,
    )


class KeptCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A checkpoint an auditor keeps: the signed statement and every stream head it covers."""

    format: str = "caseloop-kept-checkpoint-v1"
    public_key: str
    checkpoint: SignedCheckpoint  # its `streams` hold every stream's head, not just the moved ones


def verify_against(rows: list[RecordedEvent], kept: KeptCheckpoint, public: bytes) -> Report:
    """Is everything the kept checkpoint covered still in the log, unchanged, in the same order?"""
    cp = kept.checkpoint
    findings: list[Finding] = []
    if not signature_valid(public, cp):
        findings.append(Finding(kind="signature", detail=f"kept checkpoint #{cp.seq}: signature invalid"))
    if streams_root(cp.streams).hex() != cp.streams_root:
        findings.append(Finding(kind="signature", detail=f"kept checkpoint #{cp.seq}: stream heads do not give root"))
    covered = [r for r in rows if r.checkpoint <= cp.covers]
    findings += head_findings(covered, [cp])
    findings += stream_head_findings(cp.streams, by_stream(covered))
    return Report(
        events=len(rows),
        streams=len(cp.streams),
        checkpoints=1,
        covered=cp.count,
        findings=findings,
        signatures_checked=True,
    )


async def verify_database(url: str, public: bytes | None, case: str | None, progress: Progress | None) -> Report:
    conn = await asyncpg.connect(url)
    try:
        stream = case_stream(UUID(case)) if case else None
        rows = await read_log(conn, stream_id=stream, progress=progress)
        checkpoints = await load_checkpoints(conn)
    finally:
        await conn.close()
    return verify_rows(rows, checkpoints, public, whole_log=case is None)


async def kept_checkpoint(url: str, public: bytes, seq: int | None = None) -> KeptCheckpoint:
    """The latest (or `seq`) checkpoint with every stream head it covers, to keep outside the database."""
    conn = await asyncpg.connect(url)
    try:
        checkpoints = await load_checkpoints(conn, upto=seq)
    finally:
        await conn.close()
    if not checkpoints:
        raise LookupError("no checkpoint has been signed yet")
    heads: StreamHeads = {}
    for cp in checkpoints:
        heads.update(cp.streams)
    last = msgspec.structs.replace(checkpoints[-1], streams=heads)
    return KeptCheckpoint(public_key=public_key_text(public), checkpoint=last)
