"""Every request body and query type of every service bounds its strings, lists and numbers."""

from __future__ import annotations

import importlib
import inspect as pyinspect

import msgspec
import msgspec.inspect as mi
import pytest

MODULES = ["services.intake.api", "services.intake.privacy", "services.handling.api", "services.verification.api",
           "services.routing.views"]  # fmt: skip


def input_types() -> list[type[msgspec.Struct]]:
    found = []
    for name in MODULES:
        for _, obj in pyinspect.getmembers(importlib.import_module(name), pyinspect.isclass):
            if issubclass(obj, msgspec.Struct) and obj.__struct_config__.forbid_unknown_fields:
                found.append(obj)
    return found


def unbounded(t: mi.Type, where: str) -> list[str]:
    match t:
        case mi.StrType(max_length=None, pattern=None):
            return [where]
        case mi.ListType() | mi.VarTupleType() | mi.SetType() | mi.FrozenSetType():
            return ([where] if t.max_length is None else []) + unbounded(t.item_type, f"{where}[]")
        case mi.UnionType():
            return [p for sub in t.types for p in unbounded(sub, where)]
        case mi.StructType():
            return [p for f in t.fields for p in unbounded(f.type, f"{where}.{f.name}")]
        case mi.DictType():
            return [where]
        case _:
            return []


@pytest.mark.parametrize("kind", input_types(), ids=lambda k: k.__name__)
def test_every_string_and_list_of_an_input_type_is_bounded(kind: type[msgspec.Struct]) -> None:
    assert unbounded(mi.type_info(kind), kind.__name__) == []


def test_there_are_input_types_to_check() -> None:
    assert len(input_types()) >= 10
