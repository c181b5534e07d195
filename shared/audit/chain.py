"""Tamper evidence, pure: stream hash chains, the whole log's running head, stream-head Merkle roots.

Three independent checks, each naming exactly where it fails:

- **Streams.** Each stream's versions run 1..n without gaps, each stored hash is SHA-256 over the
  previous hash and the event's stored bytes (`event_hash`), and the log order `(tx, position)`
  rises with the version. An edited payload breaks one link; a deleted event leaves a gap; two
  swapped events break links and the order.
- **The whole log.** A checkpoint signs the running head `h_n = sha256(h_{n-1} || hash_n)` over
  every event hash in `(tx, position)` order up to its position, and the count. Deleting a
  whole stream, inserting a row with a forged position, or reordering leaves the chains of the
  other streams intact but changes this head.
- **Stream heads.** A checkpoint also signs the Merkle root over every stream's last (version,
  hash): a kept checkpoint names a deleted stream, or a stream cut short at its end.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from shared.store.hashchain import GENESIS, recorded_hash
from shared.store.records import RecordedEvent

_json = msgspec.json.Encoder()
StreamHeads = dict[str, tuple[int, str]]  # stream_id -> (version, hash hex)


class Finding(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One thing wrong with the log, and where."""

    kind: str  # edited | missing | order | head | count | stream | signature | sequence
    detail: str
    stream_id: str = ""
    version: int | None = None
    position: int | None = None


def stream_findings(rows: Sequence[RecordedEvent]) -> list[Finding]:
    """Check one stream's rows (in version order): gaps, links, and log order against version order."""
    found: list[Finding] = []
    prev, expected, before = GENESIS, 1, None
    for row in rows:
        where = {"stream_id": row.stream_id, "version": row.version, "position": row.position}
        link_known = True
        if row.version != expected:
            missing = f"{expected}" if row.version == expected + 1 else f"{expected}..{row.version - 1}"
            found.append(
                Finding(
                    kind="missing",
                    detail=f"version {missing} missing before version {row.version} (deleted)",
                    stream_id=row.stream_id,
                    version=expected,
                )
            )
            link_known = False  # the next link was made over a hash that is gone
        if link_known and recorded_hash(prev, row) != row.hash:
            found.append(
                Finding(
                    kind="edited",
                    detail=f"stored hash {row.hash.hex()[:16]}… does not match the event's bytes and its link",
                    **where,  # type: ignore[arg-type]
                )
            )
        if before is not None and row.checkpoint <= before.checkpoint:
            found.append(
                Finding(
                    kind="order",
                    detail=f"version {row.version} (position {row.position}) is before version {before.version} "
                    f"(position {before.position}) in the log",
                    **where,  # type: ignore[arg-type]
                )
            )
        prev, expected, before = row.hash, row.version + 1, row
    return found


def by_stream(rows: Iterable[RecordedEvent]) -> dict[str, list[RecordedEvent]]:
    streams: dict[str, list[RecordedEvent]] = {}
    for row in rows:
        streams.setdefault(row.stream_id, []).append(row)
    for stream_rows in streams.values():
        stream_rows.sort(key=lambda r: r.version)
    return streams


def next_head(head: bytes, event_hash_: bytes) -> bytes:
    """The whole log's running head after one more event."""
    return hashlib.sha256(head + event_hash_).digest()


def log_head(hashes: Iterable[bytes], head: bytes = GENESIS) -> bytes:
    for h in hashes:
        head = next_head(head, h)
    return head


# --- stream heads: a Merkle tree over (stream_id, version, hash), sorted by stream ---------


def leaf(stream_id: str, version: int, hash_hex: str) -> bytes:
    return hashlib.sha256(b"\x00" + _json.encode([stream_id, version, hash_hex])).digest()


def _parent(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    levels = [leaves or [hashlib.sha256(b"").digest()]]
    while len(levels[-1]) > 1:
        level = levels[-1]
        levels.append(
            [_parent(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
        )
    return levels


def sorted_leaves(heads: Mapping[str, tuple[int, str]]) -> tuple[list[str], list[bytes]]:
    names = sorted(heads)
    return names, [leaf(name, *heads[name]) for name in names]


def streams_root(heads: Mapping[str, tuple[int, str]]) -> bytes:
    return _levels(sorted_leaves(heads)[1])[-1][0]


def merkle_proof(heads: Mapping[str, tuple[int, str]], stream_id: str) -> list[tuple[str, str]]:
    """The sibling hashes from a stream's leaf to the root: [("L" | "R", hex), …]."""
    names, leaves = sorted_leaves(heads)
    index, proof = names.index(stream_id), []
    for level in _levels(leaves)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(("L" if sibling < index else "R", level[sibling].hex()))
        index //= 2
    return proof


def root_from_proof(leaf_hash: bytes, proof: Sequence[tuple[str, str]]) -> bytes:
    node = leaf_hash
    for side, sibling in proof:
        node = _parent(bytes.fromhex(sibling), node) if side == "L" else _parent(node, bytes.fromhex(sibling))
    return node


def stream_head_findings(
    heads: Mapping[str, tuple[int, str]], streams: Mapping[str, Sequence[RecordedEvent]]
) -> list[Finding]:
    """Every stream head a checkpoint recorded must still be in the log, with the same hash."""
    found = []
    for stream_id, (version, hash_hex) in sorted(heads.items()):
        rows = streams.get(stream_id)
        if not rows:
            detail = f"whole stream deleted: a checkpoint recorded it at version {version} ({hash_hex[:16]}…)"
            found.append(Finding(kind="stream", detail=detail, stream_id=stream_id, version=version))
            continue
        row = next((r for r in rows if r.version == version), None)
        if row is None:
            detail = f"version {version} recorded by a checkpoint is gone (the stream now ends at {rows[-1].version})"
            found.append(Finding(kind="stream", detail=detail, stream_id=stream_id, version=version))
        elif row.hash.hex() != hash_hex:
            detail = f"hash at version {version} is {row.hash.hex()[:16]}…, a checkpoint recorded {hash_hex[:16]}…"
            found.append(
                Finding(kind="stream", detail=detail, stream_id=stream_id, version=version, position=row.position)
            )
    return found
