"""verification's HTTP contract: request bodies (bounded, unknown fields refused) and responses."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import Meta

from shared.domain.events import Attachment

Code = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
Outcome = Literal["pending", "passed", "failed", "withdrawn"]


class AttachmentIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: Annotated[str, Meta(max_length=1000, pattern=r"^https?://")]
    sha256: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]
    media_type: Annotated[str, Meta(max_length=100, pattern=r"^[\w.+-]+/[\w.+-]+$")]

    def attachment(self) -> Attachment:
        return Attachment(url=self.url, sha256=self.sha256, media_type=self.media_type)


Evidence = Annotated[tuple[AttachmentIn, ...], Meta(max_length=10)]


class PassIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    evidence: Evidence = ()  # grid workers must send at least one photo (checked in the view)
    note: Annotated[str, Meta(max_length=2000)] = ""


class FailIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(min_length=1, max_length=2000)]
    evidence: Evidence = ()


class VerificationsQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    grid: Code | None = None
    status: Outcome | None = None
    page_size: Annotated[int, Meta(ge=1, le=100)] = 20
    cursor: Annotated[str, Meta(max_length=200)] | None = None


class VerificationOut(msgspec.Struct, frozen=True, kw_only=True):
    verification_id: UUID
    case_id: UUID
    round: int
    kind: str
    grid: str | None
    outcome: str
    respond_by: datetime | None
    category: str
    case_version: int
    requested_at: datetime
    updated_at: datetime


class VerificationPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[VerificationOut]
    next_cursor: str | None = None


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    verification_id: UUID
    case_id: UUID
    version: int
    outcome: str
    changed: bool


def verification_out(row: Any) -> VerificationOut:
    """A verification_view row as the response."""
    return VerificationOut(**{name: row[name] for name in VerificationOut.__struct_fields__})
