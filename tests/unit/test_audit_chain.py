"""Tamper evidence without I/O: each kind of damage is found, and named where it is."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from msgspec.structs import replace

from shared.audit.chain import (
    by_stream,
    leaf,
    log_head,
    merkle_proof,
    root_from_proof,
    stream_findings,
    stream_head_findings,
    streams_root,
)
from shared.audit.checkpoints import SignedCheckpoint, head_findings, key_id, public_bytes, sign, signature_valid
from shared.store.eventstore import RecordedEvent
from tests import examples
from tests.audit_log import chained

OTHER = UUID("00000000-0000-4000-8000-0000000000c2")
KEY = Ed25519PrivateKey.generate()
PUBLIC = public_bytes(KEY.public_key())


def one_case() -> list[RecordedEvent]:
    return chained(examples.until_verifying())


def two_cases() -> list[RecordedEvent]:
    """Two cases interleaved in the log: positions 1, 3, 5, … and 2, 4, 6, …"""
    a = chained(examples.until_verifying(), first_position=1, position_step=2)
    b = chained(
        [replace(e, case_id=OTHER) for e in examples.until_verifying()],
        case_id=OTHER,
        first_position=2,
        position_step=2,
    )
    return sorted(a + b, key=lambda r: r.checkpoint)


def checkpoint_over(rows: list[RecordedEvent]) -> SignedCheckpoint:
    heads = {s: (r[-1].version, r[-1].hash.hex()) for s, r in by_stream(rows).items()}
    statement = SignedCheckpoint(
        seq=1,
        tx=rows[-1].tx,
        position=rows[-1].position,
        count=len(rows),
        head=log_head(r.hash for r in rows).hex(),
        streams_root=streams_root(heads).hex(),
        at=datetime(2026, 11, 27, tzinfo=UTC),
        key_id=key_id(PUBLIC),
        streams=heads,
    )
    return sign(KEY, statement)


def test_an_untouched_stream_has_no_findings() -> None:
    assert stream_findings(one_case()) == []


def test_an_edited_payload_is_found_at_its_version_only() -> None:
    rows = one_case()
    rows[2] = replace(rows[2], data=rows[2].data.replace("sanitation", "water"))
    [finding] = stream_findings(rows)
    assert (finding.kind, finding.version, finding.position) == ("edited", 3, 3)


def test_a_deleted_event_is_named_as_the_missing_version() -> None:
    rows = one_case()
    del rows[3]
    [finding] = stream_findings(rows)
    assert (finding.kind, finding.version) == ("missing", 4)
    assert "version 4 missing" in finding.detail


def test_two_swapped_events_break_their_links_and_the_order() -> None:
    rows = one_case()
    third, fourth = rows[2], rows[3]
    rows[2], rows[3] = replace(fourth, version=3), replace(third, version=4)
    found = stream_findings(rows)
    assert ("order", 4) in [(f.kind, f.version) for f in found]
    assert ("edited", 3) in [(f.kind, f.version) for f in found]


def test_a_checkpoint_head_matches_an_untouched_log_and_names_the_range_otherwise() -> None:
    rows = two_cases()
    checkpoint = checkpoint_over(rows)
    assert head_findings(rows, [checkpoint]) == []
    without_other = [r for r in rows if r.stream_id != f"case-{OTHER}"]
    [finding] = head_findings(without_other, [checkpoint])
    assert finding.kind == "head" and "14 events" in finding.detail and "7 with head" in finding.detail
    assert "positions absent (deleted, or never committed): 2, 4, 6, 8, 10, 12, 14" in finding.detail


def test_a_kept_checkpoint_names_a_whole_deleted_stream() -> None:
    rows = two_cases()
    checkpoint = checkpoint_over(rows)
    remaining = by_stream(r for r in rows if r.stream_id != f"case-{OTHER}")
    [finding] = stream_head_findings(checkpoint.streams, remaining)
    assert (finding.kind, finding.stream_id, finding.version) == ("stream", f"case-{OTHER}", 7)
    assert "whole stream deleted" in finding.detail


def test_a_stream_cut_short_at_its_end_is_found_by_its_recorded_head() -> None:
    rows = one_case()
    checkpoint = checkpoint_over(rows)
    [finding] = stream_head_findings(checkpoint.streams, by_stream(rows[:-1]))
    assert finding.version == 7 and "gone" in finding.detail


def test_a_signature_covers_every_signed_field() -> None:
    checkpoint = checkpoint_over(one_case())
    assert signature_valid(PUBLIC, checkpoint)
    assert not signature_valid(PUBLIC, replace(checkpoint, count=checkpoint.count - 1))
    assert not signature_valid(PUBLIC, replace(checkpoint, head="00" * 32))
    other = public_bytes(Ed25519PrivateKey.generate().public_key())
    assert not signature_valid(other, checkpoint)


@pytest.mark.parametrize("streams", [1, 2, 3, 5, 8, 13])
def test_every_stream_head_proves_its_way_to_the_root(streams: int) -> None:
    heads = {f"case-{i}": (i + 1, f"{i:064x}") for i in range(streams)}
    root = streams_root(heads)
    for name, (version, hash_hex) in heads.items():
        assert root_from_proof(leaf(name, version, hash_hex), merkle_proof(heads, name)) == root
        assert root_from_proof(leaf(name, version + 1, hash_hex), merkle_proof(heads, name)) != root
