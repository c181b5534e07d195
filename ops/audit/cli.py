"""`caseloop audit …`: timelines, verification of the log, exports, checkpoints and KPIs, for auditors.

Reads the database directly as `caseloop_auditor` (AUDITOR_DATABASE_URL, else DATABASE_URL /
ADMIN_DATABASE_URL, each or its _FILE; else the local stack: --root, CASELOOP_HOME, or the nearest
.caseloop/ folder here or above). Times are RFC 3339; one without a zone is Asia/Shanghai time.
"""

from __future__ import annotations

import asyncio
import csv
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from uuid import UUID

import msgspec
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ops.audit import store
from ops.audit.cases import all_facts, case_rows, export_case
from ops.audit.kpi_output import kpi_csv, kpi_tables
from ops.cli_options import RootOption, time_option
from shared.audit import export
from shared.audit.checkpointer import load_checkpoints
from shared.audit.checkpoints import SignedCheckpoint, key_id, parse_public_key, public_key_text
from shared.audit.kpi import kpis
from shared.audit.timeline import Timeline, timeline
from shared.store.records import RecordedEvent

audit_app = typer.Typer(help="Auditors: timelines, tamper checks, exports, checkpoints, KPIs.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
PublicKey = Annotated[str | None, typer.Option(help="the checkpoint signer's public key (base64) you trust")]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    )


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _took(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@audit_app.command()
def history(
    case_id: UUID,
    as_of: Annotated[datetime | None, time_option(help="only what had been recorded by then")] = None,
    format: Annotated[str, typer.Option(help="table | json | csv")] = "table",
    root: RootOption = None,
) -> None:
    """A case's timeline: every step, the time each stage took, and whether each deadline was met."""
    rows = asyncio.run(case_rows(store.auditor_url(root), case_id, as_of))
    if not rows:
        err.print(f"[red]no case {case_id}{' by then' if as_of else ''}[/]")
        raise typer.Exit(1)
    line = timeline(rows, as_of or datetime.now(UTC))
    if format == "json":
        sys.stdout.write(msgspec.json.encode(line).decode() + "\n")
    elif format == "csv":
        _history_csv(line)
    else:
        _history_table(line)


def _history_table(line: Timeline) -> None:
    steps = Table(title=f"case {line.case_id}: {line.status} at version {line.version}")
    for column in ("v", "position", "recorded", "happened", "event", "actor", "after"):
        steps.add_column(column)
    for s in line.steps:
        after = _took(s.since_previous.total_seconds()) if s.since_previous else ""
        steps.add_row(
            str(s.version), str(s.position), _when(s.recorded_at), _when(s.happened_at), s.type, s.actor, after
        )
    console.print(steps)
    spans = Table(title="stages")
    for column in ("stage", "from", "to", "took", "due", "deadline"):
        spans.add_column(column)
    for span in line.spans:
        met = {True: "[green]met[/]", False: "[red]missed[/]", None: ""}[span.met]
        took = _took(span.took.total_seconds()) if span.took else "[yellow]open[/]"
        spans.add_row(span.name, _when(span.start), _when(span.end), took, _when(span.due), met)
    console.print(spans)


def _history_csv(line: Timeline) -> None:
    out = csv.writer(sys.stdout)
    out.writerow(["kind", "name", "version", "start", "end", "seconds", "due", "met", "actor"])
    for s in line.steps:
        since = s.since_previous.total_seconds() if s.since_previous else ""
        out.writerow(["step", s.type, s.version, s.recorded_at.isoformat(), "", since, "", "", s.actor])
    for span in line.spans:
        took = span.took.total_seconds() if span.took else ""
        end, due = span.end.isoformat() if span.end else "", span.due.isoformat() if span.due else ""
        met = "" if span.met is None else str(span.met).lower()
        out.writerow(["stage", span.name, "", span.start.isoformat(), end, took, due, met, ""])


def _report(report: store.Report, what: str) -> None:
    if not report.signatures_checked:
        err.print("[yellow]no public key found: checkpoint signatures were not checked (use --public-key)[/]")
    if report.ok:
        console.print(
            f"[green]OK[/]: {what}: {report.events} events in {report.streams} streams; "
            f"{report.checkpoints} checkpoints, the last covering {report.covered} events"
        )
        return
    table = Table(title=f"[red]TAMPERED[/]: {len(report.findings)} findings")
    for column in ("kind", "stream", "version", "position", "what differs"):
        table.add_column(column, overflow="fold")
    for f in report.findings:
        table.add_row(f.kind, f.stream_id, str(f.version or ""), str(f.position or ""), f.detail)
    console.print(table)
    raise typer.Exit(2)


@audit_app.command()
def verify(
    case: Annotated[UUID | None, typer.Option(help="only this case's stream")] = None,
    against: Annotated[
        Path | None, typer.Option(help="a checkpoint you kept (caseloop audit checkpoints --save)")
    ] = None,
    public_key: PublicKey = None,
    root: RootOption = None,
) -> None:
    """Recompute every stream's hash chain and the whole log's head at each checkpoint; exit 2 on tampering."""
    public = store.trusted_public_key(public_key, root)
    url = store.auditor_url(root)
    if against is not None:
        kept = msgspec.json.decode(against.read_bytes(), type=store.KeptCheckpoint)
        public = public or _embedded_key(kept.public_key)
        rows = asyncio.run(_read_with_progress(url))
        _report(store.verify_against(rows, kept, public), f"everything checkpoint #{kept.checkpoint.seq} covered")
        return
    with _progress() as bar:
        task = bar.add_task("reading the log", total=None)
        report = asyncio.run(
            store.verify_database(url, public, str(case) if case else None, lambda n: bar.advance(task, n))
        )
    _report(report, f"case {case}" if case else "the whole log")


def _embedded_key(text: str) -> bytes:
    err.print("[yellow]using the public key written in the file itself: pin your own with --public-key[/]")
    return parse_public_key(text)


async def _read_with_progress(url: str) -> list[RecordedEvent]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        with _progress() as bar:
            task = bar.add_task("reading the log", total=await store.count_events(conn))
            return await store.read_log(conn, progress=lambda n: bar.advance(task, n))
    finally:
        await conn.close()


@audit_app.command("export")
def export_(case_id: UUID, root: RootOption = None) -> None:
    """Print a case as a self-contained JSON document (events, hashes, the checkpoint covering them)."""
    public = store.trusted_public_key(None, root)
    if public is None:
        err.print("[red]no public key: set CHECKPOINT_PUBLIC_KEY[/]")
        raise typer.Exit(1)
    doc = asyncio.run(export_case(store.auditor_url(root), case_id, public, datetime.now(UTC)))
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(doc).decode(), indent=2) + "\n")
    if doc.checkpoint is None:
        err.print("[yellow]no checkpoint covers this case yet: the export proves its chain only[/]")


@audit_app.command("verify-export")
def verify_export(path: Path, public_key: PublicKey = None, root: RootOption = None) -> None:
    """Check an export with no database: its chain, the checkpoint's signature, the Merkle proof."""
    doc = msgspec.json.decode(path.read_bytes(), type=export.CaseExport)
    public = store.trusted_public_key(public_key, root) or _embedded_key(doc.public_key)
    check = export.verify(doc, public)
    if check.ok:
        console.print(
            f"[green]OK[/]: case {doc.case_id}: {check.events} events, chain intact; versions 1..{check.covered} "
            f"covered by checkpoint #{doc.checkpoint.seq if doc.checkpoint else '-'} signed by key {check.key_id}"
        )
        return
    for f in check.findings:
        console.print(f"[red]{f.kind}[/] {f.stream_id} v{f.version or ''}: {f.detail}")
    raise typer.Exit(2)


@audit_app.command()
def checkpoints(
    limit: Annotated[int, typer.Option(help="the last N")] = 20,
    save: Annotated[Path | None, typer.Option(help="write the latest checkpoint to keep, for verify --against")] = None,
    root: RootOption = None,
) -> None:
    """The signed checkpoints over the whole log."""
    url = store.auditor_url(root)
    if save is not None:
        public = store.trusted_public_key(None, root)
        if public is None:
            err.print("[red]no public key: set CHECKPOINT_PUBLIC_KEY[/]")
            raise typer.Exit(1)
        kept = asyncio.run(store.kept_checkpoint(url, public))
        save.write_bytes(msgspec.json.encode(kept))
        console.print(f"kept checkpoint #{kept.checkpoint.seq} ({kept.checkpoint.count} events) in {save}")
        return
    rows = asyncio.run(_checkpoints(url))
    table = Table(title="log checkpoints")
    for column in ("#", "at", "tx", "position", "events", "head", "streams root", "key", "moved streams"):
        table.add_column(column)
    for cp in rows[-limit:]:
        table.add_row(
            str(cp.seq),
            _when(cp.at),
            str(cp.tx),
            str(cp.position),
            str(cp.count),
            cp.head[:16],
            cp.streams_root[:16],
            cp.key_id[:12],
            str(len(cp.streams)),
        )
    console.print(table)


async def _checkpoints(url: str) -> list[SignedCheckpoint]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await load_checkpoints(conn)
    finally:
        await conn.close()


@audit_app.command("public-key")
def public_key(root: RootOption = None) -> None:
    """Print the checkpoint signer's public key (base64) and its fingerprint: keep them apart from the database."""
    public = store.trusted_public_key(None, root)
    if public is None:
        err.print("[red]no key file: set CHECKPOINT_KEY_FILE (caseloop up makes .caseloop/checkpoint.key)[/]")
        raise typer.Exit(1)
    typer.echo(public_key_text(public))
    err.print(f"key id {key_id(public)}")


@audit_app.command()
def kpi(
    from_: Annotated[datetime | None, time_option("--from", help="cases reported from then on")] = None,
    to: Annotated[datetime | None, time_option(help="cases reported before; also the moment judged")] = None,
    format: Annotated[str, typer.Option(help="table | csv")] = "table",
    root: RootOption = None,
) -> None:
    """On-time close rate, rework, returns per case, time to close per category and department, satisfaction."""
    start, end = from_, to
    with _progress() as bar:
        task = bar.add_task("reading the log", total=None)
        found = asyncio.run(all_facts(store.auditor_url(root), lambda n: bar.advance(task, n)))
    result = kpis(found, start=start, end=end, as_of=end or datetime.now(UTC))
    if format == "csv":
        kpi_csv(result, sys.stdout)
    else:
        for table in kpi_tables(result):
            console.print(table)
