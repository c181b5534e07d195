"""After the faults: wait for quiet, then check the history against the log, the views and NATS."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import nats

from ops.audit.rebuild import VIEWS, rebuild
from ops.audit.store import verify_database
from ops.stack import Stack, load_secrets
from shared.audit.checkpoints import load_key, public_bytes
from shared.store.db import AUDITOR_ROLE, with_credentials
from tests.chaos import lifecycle, verdicts
from tests.chaos.actors import Attempt, Plan
from tests.chaos.faults import Poison, subject_matches
from tests.chaos.verdicts import Verdict
from tests.e2e.test_audit import caught_up, dump
from tests.secrets_scan import secrets_in_logs, stack_secrets

CONSUMERS = ("intake", "routing", "handling", "verification")


def step_of(row: asyncpg.Record) -> lifecycle.Step:
    data = json.loads(row["data"])
    assignment = data.get("task") or {}
    task = data.get("task_id") or assignment.get("task_id")
    moments: dict[str, dict[str, datetime]] = {"warn_at": {}, "due": {}}
    for kind in ("accept", "complete"):
        if f"{kind}_by" in assignment:
            moments["due"][kind] = datetime.fromisoformat(assignment[f"{kind}_by"])
            moments["warn_at"][kind] = datetime.fromisoformat(assignment[f"{kind}_warn_at"])
    return lifecycle.Step(
        row["version"],
        row["type"],
        task=task,
        kind=data.get("kind"),
        replaces=data.get("replaces"),
        at=row["recorded_at"],
        **moments,
    )


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await check():
                return True
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pass
        await asyncio.sleep(interval)
    return False


async def relay_at_head(conn: asyncpg.Connection) -> bool:
    row = await conn.fetchrow(
        """SELECT (SELECT tx::text::bigint FROM checkpoints WHERE name = 'relay') AS tx,
                  (SELECT position FROM checkpoints WHERE name = 'relay') AS position,
                  (SELECT max(tx::text::bigint) FROM events) AS head_tx,
                  (SELECT position FROM events ORDER BY tx DESC, position DESC LIMIT 1) AS head"""
    )
    return row is not None and (row["tx"], row["position"]) == (row["head_tx"], row["head"])


async def consumers_idle(stack: Stack) -> dict[str, list[str]]:
    """Each service durable's filter subjects, once none has a message pending or unacked; else {}."""
    nc = await nats.connect(stack.env["NATS_URL"], **stack.nats_admin, connect_timeout=5)
    try:
        js = nc.jetstream(timeout=10)
        filters = {}
        for durable in CONSUMERS:
            info = await js.consumer_info(stack.env.get("NATS_STREAM", "CASES"), durable)
            if info.num_pending or info.num_ack_pending:
                return {}
            config = info.config
            filters[durable] = list(
                config.filter_subjects or ([config.filter_subject] if config.filter_subject else [])
            )
        return filters
    finally:
        await nc.close()


async def stream_count(stack: Stack) -> int:
    nc = await nats.connect(stack.env["NATS_URL"], **stack.nats_admin, connect_timeout=5)
    try:
        info = await nc.jetstream(timeout=10).stream_info(stack.env.get("NATS_STREAM", "CASES"))
        return int(info.state.messages)
    finally:
        await nc.close()


async def quiet(stack: Stack, timeout: float) -> dict[str, list[str]]:
    """The relay at the log's head, every consumer caught up (inbox) and idle (NATS)."""
    filters: dict[str, list[str]] = {}

    async def settled() -> bool:
        nonlocal filters
        conn = await asyncpg.connect(stack.env["ADMIN_DATABASE_URL"])
        try:
            if not (await relay_at_head(conn) and await caught_up(conn)):
                return False
        finally:
            await conn.close()
        filters = await consumers_idle(stack)
        return bool(filters)

    await eventually(settled, timeout)
    return filters


async def check(
    stack: Stack, plans: list[Plan], attempts: list[Attempt], poisons: list[Poison], filters: dict[str, list[str]]
) -> tuple[list[Verdict], dict[str, Any]]:
    url = stack.env["ADMIN_DATABASE_URL"]
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT stream_id, version, type, data::text AS data, recorded_at FROM events ORDER BY stream_id, version"
        )
        relay_ok = await relay_at_head(conn)
        letters = await conn.fetch("SELECT consumer, event_id FROM dead_letters")
        keys = await conn.fetch("SELECT key, convert_from(body, 'UTF8') AS body FROM idempotency_keys")
    finally:
        await conn.close()
    streams: dict[str, list[lifecycle.Step]] = {}
    reported: dict[str, list[str]] = {}
    for row in rows:
        streams.setdefault(row["stream_id"], []).append(step_of(row))
        if row["type"] == "CaseReported":
            description = json.loads(row["data"]).get("description", "")
            reported.setdefault(description.removeprefix("chaos "), []).append(row["stream_id"].removeprefix("case-"))
    outcomes: dict[str, list[tuple[str, str | None]]] = {p.key: [] for p in plans}
    for a in attempts:
        outcomes[a.key].append((a.outcome, a.case_id))
    sent = {k: v for k, v in outcomes.items() if v}
    found: list[Verdict] = []
    problems = verdicts.reports(sent, reported)
    tally = verdicts.tally(sent)
    found.append(Verdict("reports: acked ⇒ exactly one case, unknown ⇒ at most one", not problems, _say(problems)))
    stored = {k["key"]: json.loads(k["body"])["case_id"] for k in keys}
    key_problems = [k for k, v in sent.items() if any(o == "ok" for o, _ in v) and stored.get(k) not in reported[k]]
    found.append(Verdict("idempotency_keys name the acked report's case", not key_problems, _say(key_problems)))

    by_design = {cid for p in plans if p.queue_by_design for cid in reported.get(p.key, [])}
    final = {sid.removeprefix("case-"): lifecycle.final_phase(steps) for sid, steps in streams.items()}
    problems = verdicts.statuses_at_rest(final, by_design)
    found.append(Verdict("every case terminal, or queued by design", not problems, _say(problems)))
    problems = [f"{sid}: {p}" for sid, steps in streams.items() for p in lifecycle.problems(steps)]
    found.append(Verdict("histories legal: none twice, none skipped, no gaps", not problems, _say(problems)))

    late = {cid for p in plans if p.late for cid in reported.get(p.key, [])}
    problems = []
    for case_id in late:
        first = next(s.task for s in streams[f"case-{case_id}"] if s.type == "TaskDispatched")
        fired = lifecycle.deadlines_fired(streams[f"case-{case_id}"]).get((str(first), "accept"), [])
        if fired.count("DeadlineWarned") != 1 or fired.count("TaskOverdue") != 1:
            problems.append(f"{case_id}: {fired}")
    fired_total = sum(len(v) for s in streams.values() for v in lifecycle.deadlines_fired(s).values())
    found.append(
        Verdict(
            f"late tasks: one warning, one overdue each ({len(late)} late)",
            bool(late) and not problems,
            _say(problems) if late else "no late case was reported",
        )
    )

    expected = [
        (c, p.id) for p in poisons for c, subs in filters.items() if any(subject_matches(s, p.subject) for s in subs)
    ]
    problems = verdicts.dead_letters(expected, [(r["consumer"], r["event_id"]) for r in letters])
    found.append(
        Verdict(
            f"dead letters = the {len(poisons)} poison messages",
            bool(poisons) and not problems,
            _say(problems) if poisons else "no poison was injected",
        )
    )
    in_stream = await stream_count(stack)
    found.append(Verdict("relay checkpoint at the log's head", relay_ok, "" if relay_ok else "behind"))
    found.append(
        Verdict(
            "JetStream holds each event once (+ poison)",
            in_stream == len(rows) + len(poisons),
            f"{in_stream:,} messages, {len(rows):,} events + {len(poisons)} poison",
        )
    )
    found.append(await chains(stack, url, len(rows)))
    found.append(await read_models(url))
    leaked = secrets_in_logs(stack, stack_secrets(stack))
    found.append(Verdict("no secret in any log (keys, passwords, the JWT secret)", not leaked, _say(leaked)))
    figures = {
        "cases": len(streams),
        "events": len(rows),
        "reports sent": len(sent),
        "requests (report POSTs)": len(attempts),
        **{f"reports {k}": v for k, v in sorted(tally.items())},
        "deadline events": fired_total,
        "late cases": len(late),
        "queued by design": len(by_design),
    }
    return found, figures


async def chains(stack: Stack, url: str, events: int) -> Verdict:
    auditor = with_credentials(url, AUDITOR_ROLE, load_secrets(stack.root).auditor_password)
    public = public_bytes(load_key(Path(stack.env["CHECKPOINT_KEY_FILE"])).public_key())
    report = None

    async def covered() -> bool:
        nonlocal report
        report = await verify_database(auditor, public, None, None)
        return report.covered == events

    await eventually(covered, timeout=30)
    if report is None:
        return Verdict("hash chains and signed checkpoints verify", False, "could not read the log")
    ok = report.ok and report.covered == events
    return Verdict(
        "hash chains and signed checkpoints verify",
        ok,
        f"{report.streams:,} streams, {report.checkpoints} checkpoints; " + _say([str(f) for f in report.findings]),
    )


async def read_models(url: str) -> Verdict:
    conn = await asyncpg.connect(url)
    try:
        live = await dump(conn)
        await rebuild(url)
        rebuilt = await dump(conn)
    finally:
        await conn.close()
    differ = [t for t in VIEWS if live[t] != rebuilt[t]]
    detail = ", ".join(f"{t} ({len(live[t])} live, {len(rebuilt[t])} rebuilt)" for t in differ)
    return Verdict("read models equal a rebuild from the log", not differ, detail or f"{len(VIEWS)} views equal")


def _say(problems: list[str]) -> str:
    if not problems:
        return ""
    return f"{len(problems)}: " + "; ".join(problems[:3]) + (" …" if len(problems) > 3 else "")
