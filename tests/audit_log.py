"""Hash-chained rows without a database, for the auditors' pure checks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID, uuid5

import msgspec

from shared.domain.events import CaseEvent, encode, type_name
from shared.store.eventstore import GENESIS, RecordedEvent, case_stream, event_hash
from tests import examples

_json = msgspec.json.Encoder()


def chained(
    events: Sequence[CaseEvent],
    *,
    case_id: UUID = examples.CASE_ID,
    start: datetime = examples.NOW,
    step: timedelta = timedelta(minutes=10),
    first_position: int = 1,
    position_step: int = 1,
    times: Sequence[datetime] | None = None,
) -> list[RecordedEvent]:
    """The rows an EventStore would have stored for these events of one case, one per `step`."""
    rows, prev = [], GENESIS
    stream = case_stream(case_id)
    meta = examples.METADATA
    for i, event in enumerate(events):
        at = times[i] if times else start + i * step
        event_id = uuid5(case_id, f"event:{i}")
        data = encode(event).decode()
        prev = event_hash(
            prev,
            stream_id=stream,
            version=i + 1,
            event_id=event_id,
            type=type_name(event),
            schema_version=event.schema_version,
            data=data,
            metadata=_json.encode(meta).decode(),
            recorded_at=at,
        )
        position = first_position + i * position_step
        rows.append(
            RecordedEvent(
                position=position,
                tx=1000 + position,
                event_id=event_id,
                stream_id=stream,
                version=i + 1,
                type=type_name(event),
                schema_version=event.schema_version,
                data=data,
                metadata_json=_json.encode(meta).decode(),
                recorded_at=at,
                hash=prev,
            )
        )
    return rows
