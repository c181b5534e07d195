"""The hash chain: each stored event carries SHA-256 over the previous event's hash and its own stored bytes.

The one place an event is hashed: the append paths chain the rows they are about to write
(`event_hash`), the auditor's checks (shared/audit/chain.py) recompute a stored row's link
(`recorded_hash`). The first event of a stream links to `GENESIS`.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from uuid import UUID

import msgspec

from shared.store.records import RecordedEvent

GENESIS = bytes(32)
_json = msgspec.json.Encoder()


def event_hash(
    prev: bytes,
    *,
    stream_id: str,
    version: int,
    event_id: UUID,
    type: str,
    schema_version: int,
    data: str,
    metadata: str,
    recorded_at: datetime,
) -> bytes:
    """SHA-256 over the previous hash and the stored bytes of one event (the chain link)."""
    body = _json.encode(
        [stream_id, version, str(event_id), type, schema_version, data, metadata, recorded_at.isoformat()]
    )
    return hashlib.sha256(prev + body).digest()


def recorded_hash(prev: bytes, row: RecordedEvent) -> bytes:
    """The chain link a stored row should carry, recomputed from its stored bytes."""
    return event_hash(
        prev,
        stream_id=row.stream_id,
        version=row.version,
        event_id=row.event_id,
        type=row.type,
        schema_version=row.schema_version,
        data=row.data,
        metadata=row.metadata_json,
        recorded_at=row.recorded_at,
    )
