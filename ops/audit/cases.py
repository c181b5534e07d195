"""Reading cases for auditors: a stream as of a moment, an export, the KPI facts of every case."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from ops.audit.store import Progress, read_log
from shared.audit import export
from shared.audit.chain import StreamHeads, by_stream
from shared.audit.checkpointer import load_checkpoints
from shared.audit.checkpoints import SignedCheckpoint
from shared.audit.kpi import CaseFacts, facts
from shared.store.records import RecordedEvent, case_stream


async def case_rows(url: str, case_id: UUID, as_of: datetime | None = None) -> list[RecordedEvent]:
    """A case's events in version order, optionally only those recorded by `as_of`."""
    conn = await asyncpg.connect(url)
    try:
        rows = await read_log(conn, stream_id=case_stream(case_id))
    finally:
        await conn.close()
    rows.sort(key=lambda r: r.version)
    return [r for r in rows if as_of is None or r.recorded_at <= as_of]


def covering(checkpoints: list[SignedCheckpoint], stream_id: str, version: int) -> tuple[SignedCheckpoint, StreamHeads]:
    """The first checkpoint that recorded the stream at `version` (else the last that saw it at all),
    with every stream head as of that checkpoint."""
    heads: StreamHeads = {}
    best: tuple[SignedCheckpoint, StreamHeads] | None = None
    for cp in checkpoints:
        heads.update(cp.streams)
        if stream_id in cp.streams:
            best = (cp, dict(heads))
            if cp.streams[stream_id][0] >= version:
                return best
    if best is None:
        raise LookupError("no checkpoint covers this case yet")
    return best


async def export_case(url: str, case_id: UUID, public: bytes, now: datetime) -> export.CaseExport:
    conn = await asyncpg.connect(url)
    try:
        rows = sorted(await read_log(conn, stream_id=case_stream(case_id)), key=lambda r: r.version)
        checkpoints = await load_checkpoints(conn)
    finally:
        await conn.close()
    if not rows:
        raise LookupError(f"no case {case_id}")
    try:
        checkpoint, heads = covering(checkpoints, rows[0].stream_id, rows[-1].version)
    except LookupError:
        return export.build(case_id, rows, None, {}, public, now)
    return export.build(case_id, rows, checkpoint, heads, public, now)


async def all_facts(url: str, progress: Progress | None = None) -> list[CaseFacts]:
    """The KPI facts of every case in the log."""
    conn = await asyncpg.connect(url)
    try:
        rows = await read_log(conn, progress=progress)
    finally:
        await conn.close()
    found = (facts(stream_rows) for stream_id, stream_rows in by_stream(rows).items() if stream_id.startswith("case-"))
    return [f for f in found if f is not None]
