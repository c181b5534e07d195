"""routing's HTTP answers, as the OpenAPI document describes them (the views build them as dicts)."""

from __future__ import annotations

from uuid import UUID

import msgspec

from services.routing.views import QueuedCase


class QueuePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[QueuedCase]


class Decided(msgspec.Struct, frozen=True, kw_only=True):
    """A dispatcher's command: the case after it, and the tasks it dispatched."""

    case_id: UUID
    version: int
    status: str
    changed: bool
    tasks: list[UUID]
