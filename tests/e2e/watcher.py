"""The deadline watcher's progress, seen from outside its process: proof that it has looked.

A test that shows a deadline step did NOT fire again must first know the watcher has had its
chance since the moment that matters (a restart, a clock move), instead of pausing and hoping.
Each round the watcher checks every case whose `next_check` is due and projects it again. A
canary case made due (its view's version wound back, so that projection is written again) is
checked in the first round that starts afterwards; when that has happened twice, the second
round started after the first had ended, so one whole round ran after the moment.

The canary must be a case only the watcher still writes for: routing has consumed all its
events (its inbox has them, so no delivery of one can project it), and none of its deadlines
falls before any moment the test moves the clock to (so the watcher fires nothing for it).
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from services.routing.handlers import CONSUMER, EVENT_TYPES
from shared.store.eventstore import case_stream
from tests.eventually import eventually

_CONSUMED = """SELECT NOT EXISTS (
    SELECT 1 FROM events e WHERE e.stream_id = $1 AND e.type = ANY($2::text[])
    AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.consumer = $3 AND i.event_id = e.event_id))"""
_MAKE_DUE = "UPDATE routing_tasks SET next_check = '-infinity', case_version = 0 WHERE case_id = $1"
_CHECKED = "SELECT bool_and(case_version > 0) FROM routing_tasks WHERE case_id = $1"


async def whole_round(admin_url: str, canary: str) -> None:
    """Return once the watcher has run a whole round begun after this call."""
    case_id = UUID(canary)
    conn = await asyncpg.connect(admin_url)
    try:
        await eventually(lambda: conn.fetchval(_CONSUMED, case_stream(case_id), list(EVENT_TYPES), CONSUMER))
        for _ in range(2):
            made_due = await conn.execute(_MAKE_DUE, case_id)
            assert made_due != "UPDATE 0", "the canary case has no routing tasks"
            await eventually(lambda: conn.fetchval(_CHECKED, case_id), timeout=30)
    finally:
        await conn.close()
