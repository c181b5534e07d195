"""A case as a self-contained document: its events, their hashes, and the signed checkpoint covering them.

Verifying one needs no database: recompute the stream's chain from the stored bytes, check the
checkpoint's Ed25519 signature with a public key the verifier trusts, and climb the Merkle
proof from the stream's head (as the checkpoint saw it) to the signed `streams_root`.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from shared.audit.chain import Finding, StreamHeads, leaf, merkle_proof, root_from_proof, stream_findings
from shared.audit.checkpoints import SignedCheckpoint, key_id, public_key_text, signature_valid
from shared.store.records import RecordedEvent

FORMAT = "caseloop-case-export-v1"


class ExportedEvent(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    tx: int
    event_id: UUID
    stream_id: str
    version: int
    type: str
    schema_version: int
    data: str  # the stored JSON text, byte for byte
    metadata: str
    recorded_at: datetime
    hash: str


class CaseExport(msgspec.Struct, frozen=True, kw_only=True):
    format: str = FORMAT
    case_id: UUID
    stream_id: str
    exported_at: datetime
    events: list[ExportedEvent]
    public_key: str  # the signer's key, as the database side says: pin your own with --public-key
    checkpoint: SignedCheckpoint | None = None  # the first one covering the last event (or the latest)
    head_version: int = 0  # the stream's version as that checkpoint recorded it
    proof: list[tuple[str, str]] = []  # Merkle path from that head to checkpoint.streams_root


def exported(row: RecordedEvent) -> ExportedEvent:
    return ExportedEvent(
        position=row.position,
        tx=row.tx,
        event_id=row.event_id,
        stream_id=row.stream_id,
        version=row.version,
        type=row.type,
        schema_version=row.schema_version,
        data=row.data,
        metadata=row.metadata_json,
        recorded_at=row.recorded_at,
        hash=row.hash.hex(),
    )


def recorded(event: ExportedEvent) -> RecordedEvent:
    return RecordedEvent(
        position=event.position,
        tx=event.tx,
        event_id=event.event_id,
        stream_id=event.stream_id,
        version=event.version,
        type=event.type,
        schema_version=event.schema_version,
        data=event.data,
        metadata_json=event.metadata,
        recorded_at=event.recorded_at,
        hash=bytes.fromhex(event.hash),
    )


def build(
    case_id: UUID,
    rows: list[RecordedEvent],
    checkpoint: SignedCheckpoint | None,
    heads: StreamHeads,
    public: bytes,
    now: datetime,
) -> CaseExport:
    """`heads`: every stream's head as `checkpoint` recorded them (merged deltas up to it)."""
    stream_id = rows[0].stream_id
    head_version, proof = 0, []
    if checkpoint is not None and stream_id in heads:
        head_version, proof = heads[stream_id][0], merkle_proof(heads, stream_id)
        checkpoint = msgspec.structs.replace(checkpoint, streams={})
    else:
        checkpoint = None
    return CaseExport(
        case_id=case_id,
        stream_id=stream_id,
        exported_at=now,
        events=[exported(r) for r in rows],
        public_key=public_key_text(public),
        checkpoint=checkpoint,
        head_version=head_version,
        proof=proof,
    )


class ExportCheck(msgspec.Struct, frozen=True, kw_only=True):
    findings: list[Finding]
    events: int
    covered: int  # events up to the checkpoint's recorded head
    key_id: str

    @property
    def ok(self) -> bool:
        return not self.findings


def verify(doc: CaseExport, trusted: bytes) -> ExportCheck:
    """Check an export with nothing but the document and the public key you trust."""
    rows = [recorded(e) for e in doc.events]
    findings = stream_findings(rows)
    if any(r.stream_id != doc.stream_id for r in rows):
        findings.append(Finding(kind="edited", detail="an event of another stream is in the export"))
    cp = doc.checkpoint
    if cp is None:
        findings.append(Finding(kind="signature", detail="no checkpoint covers this case yet: only the chain checked"))
        return ExportCheck(findings=findings, events=len(rows), covered=0, key_id=key_id(trusted))
    if not signature_valid(trusted, cp):
        detail = f"checkpoint #{cp.seq} is not signed by key {key_id(trusted)}"
        findings.append(Finding(kind="signature", detail=detail))
    head = next((r for r in rows if r.version == doc.head_version), None)
    if head is None:
        findings.append(
            Finding(
                kind="missing",
                detail=f"checkpoint recorded version {doc.head_version}, not in the export",
                stream_id=doc.stream_id,
            )
        )
    elif root_from_proof(leaf(doc.stream_id, head.version, head.hash.hex()), doc.proof).hex() != cp.streams_root:
        findings.append(
            Finding(
                kind="stream",
                detail=f"version {head.version}'s hash does not lead to checkpoint #{cp.seq}'s signed stream root",
                stream_id=doc.stream_id,
                version=head.version,
            )
        )
    return ExportCheck(findings=findings, events=len(rows), covered=doc.head_version, key_id=key_id(trusted))
