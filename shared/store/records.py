"""What the event store hands back and raises: stored rows, log positions, append results, errors.

A stored row is read with `COLUMNS` and built by `from_row`; every reader of the events table
(the store, the auditor, rebuild) goes through these two, so a row has one shape.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

import msgspec

from shared.domain.events import CaseEvent, decode

if TYPE_CHECKING:
    import asyncpg


class ConcurrencyError(Exception):
    """The stream moved on since it was read: reload, decide again, retry."""


class IdempotencyConflict(Exception):
    """Some, not all, of the event ids were stored before: a caller reused ids."""


class Metadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    correlation_id: UUID
    causation_id: UUID | None = None
    actor: str = ""


_metadata_decoder = msgspec.json.Decoder(Metadata)


class Checkpoint(msgspec.Struct, frozen=True, order=True):
    tx: int = 0
    position: int = 0


ORIGIN = Checkpoint()


class RecordedEvent(msgspec.Struct, frozen=True):
    """One stored row. Fields in `COLUMNS` order: a row is built positionally, the hot path of replay."""

    position: int
    tx: int
    event_id: UUID
    stream_id: str
    version: int
    type: str
    schema_version: int
    data: str  # the exact stored JSON text
    metadata_json: str  # likewise; decoded on demand by `metadata`
    recorded_at: datetime
    hash: bytes

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.tx, self.position)

    @property
    def metadata(self) -> Metadata:
        return _metadata_decoder.decode(self.metadata_json)

    def event(self) -> CaseEvent:
        return decode(self.data, self.schema_version)


class Replayed(msgspec.Struct, frozen=True, array_like=True):
    """What folding the log into state needs of one event: where it sits, whose it is, what it says."""

    tx: int
    position: int
    stream_id: str
    version: int
    event: CaseEvent

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.tx, self.position)


class AppendResult(msgspec.Struct, frozen=True):
    stream_id: str
    version: int  # the stream's version after the append
    positions: tuple[int, ...]
    duplicate: bool = False  # every event id was stored before: nothing written


def case_stream(case_id: UUID) -> str:
    return f"case-{case_id}"


# The select list of a whole row, in RecordedEvent's field order.
COLUMNS = (
    "position, tx::text::bigint AS tx, event_id, stream_id, version, type, schema_version, "
    "data::text AS data, metadata::text AS metadata, recorded_at, hash"
)


def from_row(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(*row)  # COLUMNS order; asyncpg gives bytea as bytes
