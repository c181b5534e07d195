"""Payloads stored under an older schema version, lifted to today's Structs as they are decoded.

Each Struct type of a tagged union carries its `schema_version` (a ClassVar, 1 unless bumped),
and a payload is stored beside the schema version of its type at the time it was written. On
read, an upcaster per (type tag, from version) lifts the decoded JSON object one version up,
step by step, until it has today's shape; only then is the Struct built, so no code past
decoding ever sees an old shape. A version this code does not know is refused, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import msgspec

T = TypeVar("T")

# Takes the stored JSON object of one type at schema version n; returns it as version n + 1.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class SchemaError(ValueError):
    """A payload this code cannot read as today's: its type or schema version is unknown here."""


def schema_version_of(cls: type) -> int:
    version = getattr(cls, "schema_version", 1)
    if not isinstance(version, int) or version < 1:
        raise SchemaError(f"{cls.__name__}.schema_version must be a positive int, got {version!r}")
    return version


class VersionedDecoder(Generic[T]):
    """The JSON decoder of a tagged union of Structs that lifts older payloads with `upcasters`.

    Built once, like msgspec's decoders. Checks at construction that every type above schema
    version 1 has an upcaster for each step from 1 to its version, and that no upcaster names a
    type or version the union does not have: a bump without its upcaster fails on import.
    """

    def __init__(self, union: Any, upcasters: Mapping[tuple[str, int], Upcaster]) -> None:
        self._decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(union)
        members: tuple[type, ...] = getattr(union, "__args__", (union,))
        self.tag_field = members[0].__struct_config__.tag_field  # type: ignore[attr-defined]
        self.versions: dict[str, int] = {
            str(cls.__struct_config__.tag): schema_version_of(cls)  # type: ignore[attr-defined]
            for cls in members
        }
        self._upcasters = dict(upcasters)
        for tag, version in self._upcasters:
            if not 1 <= version < self.versions.get(tag, 1):
                raise SchemaError(f"an upcaster from {tag} v{version}, which is not an older version of a known type")
        for tag, current in self.versions.items():
            missing = [v for v in range(1, current) if (tag, v) not in self._upcasters]
            if missing:
                raise SchemaError(f"{tag} is at schema v{current} but has no upcaster from v{missing[0]}")

    def decode(self, data: bytes | str, schema_version: int | None = None) -> T:
        """Decode a payload stored under `schema_version` (None: today's version of its type)."""
        if schema_version is None:
            return self._decoder.decode(data)
        try:
            decoded = self._decoder.decode(data)
        except msgspec.ValidationError:
            pass  # perhaps an older shape: lifted below, or refused there with the reason
        else:
            if schema_version_of(type(decoded)) == schema_version:
                return decoded  # the common case: written by today's code
        raw = msgspec.json.decode(data)
        if not isinstance(raw, dict):
            raise SchemaError(f"a stored event is a JSON object, not {type(raw).__name__}")
        # Built from JSON again rather than converted, so an upcast payload decodes by exactly
        # the rules a stored one does.
        return self._decoder.decode(msgspec.json.encode(self.upcast(raw, schema_version)))

    def upcast(self, raw: dict[str, Any], schema_version: int) -> dict[str, Any]:
        """Lift one stored JSON object from `schema_version` to today's version of its type."""
        tag = raw.get(self.tag_field)
        if not isinstance(tag, str) or tag not in self.versions:
            raise SchemaError(f"unknown event type {tag!r}")
        current = self.versions[tag]
        if schema_version > current:
            raise SchemaError(f"{tag} v{schema_version} is newer than this code reads (v{current}): upgrade it")
        if schema_version < 1:
            raise SchemaError(f"{tag} v{schema_version}: schema versions start at 1")
        for version in range(schema_version, current):
            raw = self._upcasters[(tag, version)](raw)  # present: checked at construction
        return raw
