"""Signed checkpoints over the whole log, pure: the statement, Ed25519 signing, checking a log against them."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shared.audit.chain import Finding, StreamHeads, next_head, streams_root
from shared.store.hashchain import GENESIS
from shared.store.records import Checkpoint, RecordedEvent

_json = msgspec.json.Encoder()


class SignedCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    """Every event up to (tx, position) in log order: `count` of them, running `head`, `streams_root`."""

    seq: int
    tx: int
    position: int
    count: int
    head: str  # hex
    streams_root: str  # hex
    at: datetime
    key_id: str
    signature: str = ""  # hex Ed25519 over statement()
    streams: StreamHeads = {}  # the stream heads that moved since seq - 1 (not signed: the root is)

    @property
    def covers(self) -> Checkpoint:
        return Checkpoint(self.tx, self.position)

    def statement(self) -> bytes:
        """The exact bytes signed: fixed field order, times in ISO 8601."""
        return _json.encode(
            [
                "caseloop-checkpoint-v1",
                self.seq,
                self.tx,
                self.position,
                self.count,
                self.head,
                self.streams_root,
                self.at.isoformat(),
                self.key_id,
            ]
        )


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public: bytes) -> str:
    """A short fingerprint of a public key: the first 16 bytes of its SHA-256, hex."""
    return hashlib.sha256(public).hexdigest()[:32]


def public_key_text(public: bytes) -> str:
    return base64.b64encode(public).decode()


def parse_public_key(text: str) -> bytes:
    raw = base64.b64decode(text.strip())
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes (base64)")
    return raw


def new_key_file(path: Path) -> None:
    """Write a fresh Ed25519 private key (raw 32 bytes, base64), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    path.touch(mode=0o600)
    path.write_text(base64.b64encode(seed).decode() + "\n")
    path.chmod(0o600)


def load_key(path: Path) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(path.read_text().strip()))


def sign(key: Ed25519PrivateKey, checkpoint: SignedCheckpoint) -> SignedCheckpoint:
    return msgspec.structs.replace(checkpoint, signature=key.sign(checkpoint.statement()).hex())


def signature_valid(public: bytes, checkpoint: SignedCheckpoint) -> bool:
    if key_id(public) != checkpoint.key_id:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(bytes.fromhex(checkpoint.signature), checkpoint.statement())
    except (InvalidSignature, ValueError):
        return False
    return True


def checkpoint_findings(checkpoints: Sequence[SignedCheckpoint], public: bytes) -> tuple[list[Finding], StreamHeads]:
    """Signatures, numbering and stream roots of the stored checkpoints; their merged stream heads."""
    found: list[Finding] = []
    heads: StreamHeads = {}
    for expected, cp in enumerate(checkpoints, start=1):
        if cp.seq != expected:
            found.append(Finding(kind="sequence", detail=f"checkpoint #{expected} missing (next is #{cp.seq})"))
        if not signature_valid(public, cp):
            found.append(
                Finding(kind="signature", detail=f"checkpoint #{cp.seq}: signature invalid for key {key_id(public)}")
            )
        heads.update(cp.streams)
        if streams_root(heads).hex() != cp.streams_root:
            found.append(
                Finding(kind="signature", detail=f"checkpoint #{cp.seq}: stored stream heads do not give its root")
            )
    return found, heads


def head_findings(rows: Sequence[RecordedEvent], checkpoints: Sequence[SignedCheckpoint]) -> list[Finding]:
    """Walk the log in (tx, position) order; at each checkpoint the head and count must be the signed ones.

    After a mismatch the walk continues from the signed values, so each damaged range is named once.
    """
    found: list[Finding] = []
    head, count, i = GENESIS, 0, 0
    previous: SignedCheckpoint | None = None
    present = {r.position for r in rows}

    def settle(cp: SignedCheckpoint) -> None:
        nonlocal head, count, previous
        if head.hex() != cp.head or count != cp.count:
            since = f"after checkpoint #{previous.seq} (position {previous.position})" if previous else "from the start"
            gaps = _gaps(present, previous.position if previous else 0, cp.position)
            detail = (
                f"checkpoint #{cp.seq} signed {cp.count} events up to position {cp.position} with head "
                f"{cp.head[:16]}…; the log now has {count} with head {head.hex()[:16]}…: events {since} were "
                f"rewritten, deleted, inserted or reordered"
                + (f"; positions absent (deleted, or never committed): {gaps}" if gaps else "")
            )
            found.append(Finding(kind="head", detail=detail, position=cp.position))
            head, count = bytes.fromhex(cp.head), cp.count
        previous = cp

    for row in rows:
        while i < len(checkpoints) and checkpoints[i].covers < row.checkpoint:
            settle(checkpoints[i])
            i += 1
        head, count = next_head(head, row.hash), count + 1
        if i < len(checkpoints) and checkpoints[i].covers == row.checkpoint:
            settle(checkpoints[i])
            i += 1
    for cp in checkpoints[i:]:
        settle(cp)
    return found


def _gaps(present: set[int], after: int, upto: int, limit: int = 10) -> str:
    absent = [p for p in range(after + 1, upto + 1) if p not in present]
    text = ", ".join(str(p) for p in absent[:limit])
    return text + (f" … ({len(absent)} in all)" if len(absent) > limit else "")
