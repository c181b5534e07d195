"""The command loop every writer runs: load a case from the log, decide, append at the version read.

The log is the one place a command looks a case up (read models lag it and serve lists).
An append finds the case moved when another writer appended between our load and our
append; the answer is to load again and decide again, since the decision may differ now.
One retry policy for every service: `ATTEMPTS` tries, with no pause (the writer that won
has committed, so the next load sees it), then `Busy`, which a request answers with 503
and Retry-After (shared/web/http.py) and a background loop meets again on its next round.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, NamedTuple, TypeVar
from uuid import UUID

from shared.domain.case import Case, replay
from shared.domain.events import CaseEvent
from shared.store.eventstore import ConcurrencyError, EventStore, Metadata, RecordedEvent, Transaction, case_stream

T = TypeVar("T")
Kind = Literal["task", "verification"]
# Enough for the contention one case sees (a handler, a dispatcher, the deadline watcher and a
# consumer at once); a case still moving after that many reloads is better asked again later.
ATTEMPTS = 8


class Busy(Exception):
    """The case moved between load and append on every attempt: ask again a moment later."""


class Outcome(NamedTuple):
    case: Case  # as the log has it after this command
    version: int  # the case's version after this command
    events: list[CaseEvent]  # appended now: [] when nothing changed, or every event was stored before


async def retrying(attempt: Callable[[], Awaitable[T]]) -> T:
    """`attempt()` again while it raises ConcurrencyError; `Busy` after `ATTEMPTS` tries.

    Each attempt loads what it decides on afresh: a ConcurrencyError means what it read is stale.
    """
    for _ in range(ATTEMPTS):
        try:
            return await attempt()
        except ConcurrencyError:
            continue
    raise Busy(f"the case moved under each of {ATTEMPTS} attempts")


async def run_command(
    store: EventStore,
    case_id: UUID,
    decide: Callable[[Case], Sequence[CaseEvent]],
    *,
    metadata: Metadata | Callable[[list[RecordedEvent]], Metadata],
    event_ids: Callable[[Sequence[CaseEvent]], Sequence[UUID]] | None = None,
    before: Callable[[Transaction], Awaitable[None]] | None = None,
    after: Callable[[Transaction, Case, int], Awaitable[None]] | None = None,
) -> Outcome:
    """Load the case from the log, `decide(case)`, append at the version loaded; `retrying`.

    `decide` also checks what the caller may do with the case it is given (raise to refuse).
    `metadata` may be worked out from the case's stored events (a timer's cause is one of them).
    `event_ids` fixes the new events' ids (a retried trigger then appends once). `before` runs
    first in the transaction (locks: it must not write, the events INSERT comes first) and
    `after` last, whether or not anything was appended (read models kept beside the events).
    Without either, no transaction: one append is atomic by itself, and joins group commit.
    """

    async def decided(writer: EventStore | Transaction) -> Outcome:
        records = await writer.read_stream(case_stream(case_id))
        case, version = replay(r.event() for r in records), records[-1].version if records else 0
        events = list(decide(case))
        if not events:
            return Outcome(case, version, [])
        result = await writer.append(
            case_stream(case_id),
            events,
            expected_version=version,
            metadata=metadata if isinstance(metadata, Metadata) else metadata(records),
            event_ids=event_ids(events) if event_ids is not None else None,
        )
        return Outcome(replay(events, case), result.version, [] if result.duplicate else events)

    async def attempt() -> Outcome:
        if before is None and after is None:
            return await decided(store)
        async with store.transaction() as tx:
            if before is not None:
                await before(tx)
            outcome = await decided(tx)
            if after is not None:
                await after(tx, outcome.case, outcome.version)
        return outcome

    return await retrying(attempt)


async def case_of(store: EventStore, id: UUID, kind: Kind) -> UUID | None:
    """The case a task or verification belongs to, as the log knows it (None: no such id).

    `case_index` is written by the events INSERT itself (a trigger, shared/store/sql/0010), in
    the transaction that creates the id: whoever can read the event can find its case.
    """
    case_id: UUID | None = await store.pool.fetchval(
        "SELECT case_id FROM case_index WHERE id = $1 AND kind = $2", id, kind
    )
    return case_id
