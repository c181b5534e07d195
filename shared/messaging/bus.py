"""NATS JetStream: the connection, the event stream, and the wire form of an event.

Subjects: `<prefix>.<EventType>.<department>.<case_id>`, where department is the one
department a task-level event concerns and `_` for case-level events. So a consumer
filters by type (`case.TaskCompleted.>`), a department gets just its own tasks' events
(`case.*.city_management.>`), and one case's events are `case.*.*.<case_id>`.

Messages are CloudEvents 1.0 in binary mode: `ce-*` headers and the event's JSON as data.
`Nats-Msg-Id` is the event id, so a re-published event is dropped by JetStream's
duplicate window (10 minutes here) and consumers dedupe the rest by event id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
import nats
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from shared.base.config import Settings
from shared.domain.events import CaseEvent, decode, department_of
from shared.store.records import Metadata, RecordedEvent

log = structlog.get_logger()

CE_TYPE_PREFIX = "caseloop."
DUPLICATE_WINDOW = 600.0


def subject_for(prefix: str, record: RecordedEvent, event: CaseEvent) -> str:
    department = department_of(event) or "_"
    return f"{prefix}.{record.type}.{department}.{event.case_id}"


def headers_for(record: RecordedEvent) -> dict[str, str]:
    meta = record.metadata
    headers = {
        "Nats-Msg-Id": str(record.event_id),
        "ce-specversion": "1.0",
        "ce-id": str(record.event_id),
        "ce-source": "/caseloop/eventstore",
        "ce-type": f"{CE_TYPE_PREFIX}{record.type}.v{record.schema_version}",
        "ce-subject": record.stream_id,
        "ce-time": record.recorded_at.isoformat(),
        "ce-sequence": str(record.version),
        "ce-position": str(record.position),
        "ce-correlationid": str(meta.correlation_id),
        "content-type": "application/json",
    }
    if meta.causation_id is not None:
        headers["ce-causationid"] = str(meta.causation_id)
    if meta.actor:
        headers["ce-actor"] = meta.actor
    return headers


class Delivered(msgspec.Struct, frozen=True, kw_only=True):
    """An event as a consumer receives it: a trigger, not the state (that comes from the log)."""

    event_id: UUID
    stream_id: str
    version: int
    position: int
    event: CaseEvent
    metadata: Metadata
    recorded_at: datetime

    @property
    def case_id(self) -> UUID:
        return self.event.case_id


def delivered_from(msg: Msg) -> Delivered:
    """Decode a message; raises (KeyError, ValueError, msgspec errors) on a malformed one."""
    headers = msg.headers or {}
    ce_type = headers["ce-type"]
    if not ce_type.startswith(CE_TYPE_PREFIX):
        raise ValueError(f"not a caseloop event: {ce_type}")
    schema_version = int(ce_type.rsplit(".v", 1)[1])
    event = decode(msg.data, schema_version)
    causation = headers.get("ce-causationid")
    return Delivered(
        event_id=UUID(headers["ce-id"]),
        stream_id=headers["ce-subject"],
        version=int(headers["ce-sequence"]),
        position=int(headers.get("ce-position", "0")),
        event=event,
        metadata=Metadata(
            correlation_id=UUID(headers["ce-correlationid"]),
            causation_id=UUID(causation) if causation else None,
            actor=headers.get("ce-actor", ""),
        ),
        recorded_at=datetime.fromisoformat(headers["ce-time"]),
    )


async def connect(settings: Settings, name: str, **callbacks: Any) -> NATS:
    """Connect and keep reconnecting for ever (nats-py gives up after ~2 minutes by default)."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats_error", error=str(exc))

    async def on_disconnected() -> None:
        log.warning("nats_disconnected")

    async def on_reconnected() -> None:
        log.info("nats_reconnected")

    options: dict[str, Any] = {
        "error_cb": on_error,
        "disconnected_cb": on_disconnected,
        "reconnected_cb": on_reconnected,
    }
    if settings.nats_user:
        # Each user may only subscribe below its own inbox prefix: nobody reads another's replies.
        options.update(
            user=settings.nats_user, password=settings.nats_password.reveal(), inbox_prefix=inbox_of(settings.nats_user)
        )
    options.update(callbacks)
    return await nats.connect(
        servers=settings.nats_servers,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=5,
        ping_interval=10,
        max_outstanding_pings=3,
        allow_reconnect=True,
        **options,
    )


def inbox_of(user: str) -> str:
    return f"_INBOX_{user}"


def stream_config(settings: Settings, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=settings.nats_stream,
        subjects=[f"{settings.subject_prefix}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_age=30 * 86400,
        # A full stream refuses new events: the log in PostgreSQL keeps them until there is room.
        discard=DiscardPolicy.NEW,
        duplicate_window=DUPLICATE_WINDOW,
        deny_delete=True,
    )


async def ensure_stream(js: JetStreamContext, settings: Settings, replicas: int = 1) -> None:
    """Create the event stream, or bring an existing one to our configuration."""
    config = stream_config(settings, replicas)
    try:
        info = await js.stream_info(settings.nats_stream)
    except NotFoundError:
        await js.add_stream(config)
        log.info("stream_created", stream=settings.nats_stream)
        return
    # Update only what differs: a service's NATS user may read the stream's info but not change it.
    fields = ("subjects", "retention", "storage", "num_replicas", "max_age", "discard", "duplicate_window")
    if any(getattr(info.config, f) != getattr(config, f) for f in fields) or not info.config.deny_delete:
        await js.update_stream(config)
