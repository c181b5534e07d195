"""Each event is stored under its type's schema version; a CaseDispatched stored as v1 reads with its verifier.

Against real PostgreSQL: the rows the store writes on both append paths, and a row as the
code before CaseDispatched v2 wrote it, read back by every reader (a case's load, the log's
replay, and the relay's message to consumers).
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import asyncpg
from msgspec.structs import replace
from nats.aio.msg import Msg

from shared.audit.chain import stream_findings
from shared.domain import events as ev
from shared.messaging.bus import delivered_from, headers_for
from shared.store.eventstore import ORIGIN, EventStore, event_hash
from tests import examples

SHIPPED = "kaizhou-2026.11-1+4bdb8df254ff"


def a_case(case_id: UUID) -> list[ev.CaseEvent]:
    return [replace(e, case_id=case_id) for e in examples.until_verifying()[:3]]


async def stored_versions(pool: asyncpg.Pool, stream_id: str) -> list[tuple[str, int]]:
    rows = await pool.fetch("SELECT type, schema_version FROM events WHERE stream_id = $1 ORDER BY version", stream_id)
    return [(r["type"], r["schema_version"]) for r in rows]


async def test_both_append_paths_store_each_events_own_schema_version(store: EventStore, pool: asyncpg.Pool) -> None:
    expected = [("CaseReported", 1), ("CaseDispatched", 2), ("TaskDispatched", 1)]
    grouped = uuid4()  # a new stream: store.append group-commits it
    await store.append(f"case-{grouped}", a_case(grouped), expected_version=0, metadata=examples.METADATA)
    assert await stored_versions(pool, f"case-{grouped}") == expected

    alone = uuid4()  # in a transaction of its own making: the single-stream INSERT
    async with store.transaction() as tx:
        await tx.append(f"case-{alone}", a_case(alone), expected_version=0, metadata=examples.METADATA)
    assert await stored_versions(pool, f"case-{alone}") == expected
    assert (await store.load(alone))[0] == replace((await store.load(grouped))[0], id=alone)


async def test_a_dispatch_stored_as_v1_is_read_everywhere_with_the_verifier_its_policy_gave(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    case_id = uuid4()
    stream = f"case-{case_id}"
    reported = examples.case_reported(case_id=case_id, category="noise_complaint")
    await store.append(stream, [reported], expected_version=0, metadata=examples.METADATA)
    [first] = await store.read_stream(stream)

    # The bytes and the chain link the code before v2 wrote for the rules' dispatch.
    data = (
        f'{{"type":"CaseDispatched","case_id":"{case_id}","round":1,"departments":["environment","police"],'
        f'"priority":"normal","policy_version":"{SHIPPED}","by":"rules"}}'
    )
    event_id, at = uuid4(), datetime(2026, 11, 26, 9, 5, tzinfo=UTC)
    link = event_hash(
        first.hash,
        stream_id=stream,
        version=2,
        event_id=event_id,
        type="CaseDispatched",
        schema_version=1,
        data=data,
        metadata=first.metadata_json,
        recorded_at=at,
    )
    await pool.execute(
        """INSERT INTO events (event_id, stream_id, version, type, schema_version, data, metadata, recorded_at, hash)
           VALUES ($1, $2, 2, 'CaseDispatched', 1, $3::json, $4::json, $5, $6)""",
        event_id,
        stream,
        data,
        first.metadata_json,
        at,
        link,
    )

    rows = await store.read_stream(stream)
    assert stream_findings(rows) == []  # the old row stays as it was written: upcasting only reads
    dispatched = rows[1].event()
    assert isinstance(dispatched, ev.CaseDispatched) and dispatched.verifier == "reporter"
    assert (await store.load(case_id))[0].verifier == "reporter"
    replayed = [r.event for r in await store.replay(ORIGIN) if r.stream_id == stream]
    assert replayed == [reported, dispatched]

    # What the relay publishes for the row, as a consumer decodes it.
    headers = headers_for(rows[1])
    assert headers["ce-type"] == "caseloop.CaseDispatched.v1"
    message = Msg(_client=None, subject="caseloop.CaseDispatched._", data=data.encode(), headers=headers)  # type: ignore[arg-type]
    assert delivered_from(message).event == dispatched
