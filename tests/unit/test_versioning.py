"""The upcasting mechanism on a union of its own: old payloads climb each step, unknown ones are refused."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
import pytest

from shared.domain.versioning import SchemaError, Upcaster, VersionedDecoder


class Base(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=True):
    id: int


class Parcel(Base, frozen=True):
    """v1 had `weight_g`; v2 renamed it `grams`; v3 added `unit`, which v2 payloads were in."""

    schema_version: ClassVar[int] = 3
    grams: int
    unit: str


class Note(Base, frozen=True):
    text: str


Stored = Parcel | Note
steps: list[tuple[str, int]] = []


def parcel_v2(v1: dict[str, Any]) -> dict[str, Any]:
    steps.append(("Parcel", 1))
    lifted = {k: v for k, v in v1.items() if k != "weight_g"}
    return {**lifted, "grams": v1["weight_g"]}


def parcel_v3(v2: dict[str, Any]) -> dict[str, Any]:
    steps.append(("Parcel", 2))
    return {**v2, "unit": "g"}


UPCASTERS: dict[tuple[str, int], Upcaster] = {("Parcel", 1): parcel_v2, ("Parcel", 2): parcel_v3}
codec: VersionedDecoder[Stored] = VersionedDecoder(Stored, UPCASTERS)
TODAY = Parcel(id=7, grams=1200, unit="g")


@pytest.fixture(autouse=True)
def no_steps_yet() -> None:
    steps.clear()


def test_each_type_has_the_schema_version_it_declares() -> None:
    assert codec.versions == {"Parcel": 3, "Note": 1}


def test_a_v1_payload_climbs_both_steps_in_order_before_the_struct_is_built() -> None:
    assert codec.decode(b'{"type":"Parcel","id":7,"weight_g":1200}', 1) == TODAY
    assert steps == [("Parcel", 1), ("Parcel", 2)]


def test_a_v2_payload_climbs_only_the_step_it_needs() -> None:
    assert codec.decode(b'{"type":"Parcel","id":7,"grams":1200}', 2) == TODAY
    assert steps == [("Parcel", 2)]


def test_a_payload_of_todays_version_is_decoded_as_it_is() -> None:
    stored = msgspec.json.encode(TODAY)
    assert codec.decode(stored, 3) == codec.decode(stored) == TODAY
    assert codec.decode(b'{"type":"Note","id":1,"text":"hi"}', 1) == Note(id=1, text="hi")
    assert steps == []


def test_an_old_payload_that_happens_to_fit_todays_shape_is_still_lifted() -> None:
    # v2 had no unit and meant grams; a stray "unit" in a v2 payload is v3's word, not v2's.
    assert codec.decode(b'{"type":"Parcel","id":7,"grams":1200,"unit":"kg"}', 2) == TODAY
    assert steps == [("Parcel", 2)]


@pytest.mark.parametrize(
    ("payload", "version", "reason"),
    [
        (b'{"type":"Parcel","id":7,"grams":1,"unit":"g"}', 4, "Parcel v4 is newer than this code reads"),
        (b'{"type":"Note","id":1,"text":"hi"}', 2, "Note v2 is newer than this code reads"),
        (b'{"type":"Parcel","id":7,"weight_g":1}', 0, "schema versions start at 1"),
        (b'{"type":"Crate","id":7}', 1, "unknown event type 'Crate'"),
        (b'{"id":7}', 1, "unknown event type None"),
        (b"[1, 2]", 1, "a JSON object, not list"),
    ],
)
def test_a_version_or_type_this_code_does_not_know_is_refused_with_the_reason(
    payload: bytes, version: int, reason: str
) -> None:
    with pytest.raises(SchemaError, match=reason):
        codec.decode(payload, version)


def test_an_upcast_payload_that_is_still_not_valid_fails_as_any_invalid_payload() -> None:
    with pytest.raises(msgspec.ValidationError, match="grams"):
        codec.decode(b'{"type":"Parcel","id":7,"weight_g":"heavy"}', 1)


def test_a_bumped_version_without_an_upcaster_for_every_step_fails_when_built() -> None:
    with pytest.raises(SchemaError, match="Parcel is at schema v3 but has no upcaster from v2"):
        VersionedDecoder(Stored, {("Parcel", 1): parcel_v2})


@pytest.mark.parametrize("key", [("Crate", 1), ("Parcel", 3), ("Note", 1), ("Parcel", 0)])
def test_an_upcaster_for_no_older_version_of_a_known_type_fails_when_built(key: tuple[str, int]) -> None:
    with pytest.raises(SchemaError, match=f"an upcaster from {key[0]} v{key[1]}"):
        VersionedDecoder(Stored, {**UPCASTERS, key: parcel_v3})
