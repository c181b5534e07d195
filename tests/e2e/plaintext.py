"""Looking for personal data where it must never be: logs, NATS messages, every table."""

from __future__ import annotations

import asyncpg
import nats

from ops.stack import Stack


async def places_holding(stack: Stack, needles: list[str]) -> list[str]:
    """Where any of `needles` (phones, names) appears in plaintext: [] when nowhere."""
    found: list[str] = []
    for log in sorted((stack.root / "logs").glob("*.log")):
        text = log.read_text(errors="replace")
        found += [f"log {log.name}" for n in needles if n in text]
    conn = await asyncpg.connect(stack.env["ADMIN_DATABASE_URL"])
    try:
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (table,) in tables:
            rows = await conn.fetch(f'SELECT row_to_json(t)::text AS row FROM "{table}" t')
            dump = "\n".join(r["row"] for r in rows)
            found += [f"table {table}" for n in needles if n in dump]
    finally:
        await conn.close()
    nc = await nats.connect(stack.env["NATS_URL"], **stack.nats_admin)
    try:
        js = nc.jetstream()
        stream = stack.env["NATS_STREAM"]
        info = await js.stream_info(stream)
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            wire = msg.data + str(msg.headers).encode()
            found += [f"nats message {seq}" for n in needles if n.encode() in wire]
    finally:
        await nc.close()
    return found
