"""Every number a request may carry (query, path, header, body) is bounded in the served OpenAPI
documents, and so in the decoders they are built from: an integer fits a PostgreSQL bigint at
most, so nothing past 64 bits reaches the database (tests/e2e/test_http_edges.py sends them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.web.http import INT4_MAX, INT8_MAX
from tests.unit.test_openapi import SERVICES, operations, served

INT8_MIN = -(2**63)


def resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def numbers(schema: dict[str, Any], components: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, schema) of every integer or number a value of `schema` may hold."""
    schema = resolve(schema, components)
    for alternative in schema.get("anyOf", []) + schema.get("oneOf", []):
        yield from numbers(alternative, components, where)
    if schema.get("type") in ("integer", "number"):
        yield where, schema
    for name, member in schema.get("properties", {}).items():
        yield from numbers(member, components, f"{where}/{name}")
    if "items" in schema:
        yield from numbers(schema["items"], components, f"{where}/0")
    for item in schema.get("prefixItems", []):
        yield from numbers(item, components, f"{where}/0")


def request_numbers(service: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(operation, where, schema) of every number any operation of `service` accepts."""
    _, document = served(SERVICES[service])
    components = document["components"]["schemas"]
    found = []
    for spec in operations(document).values():
        for parameter in spec.get("parameters", []):
            where = f"{parameter['in']}:{parameter['name']}"
            found += [(spec["operationId"], w, s) for w, s in numbers(parameter["schema"], components, where)]
        body = spec.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if body is not None:
            found += [(spec["operationId"], w, s) for w, s in numbers(body, components, "body:")]
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_number_a_request_may_carry_has_both_bounds_and_an_integer_fits_a_bigint(service: str) -> None:
    unbounded = []
    for operation, where, schema in request_numbers(service):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if low is None or high is None:
            unbounded.append(f"{operation} {where}: {schema}")
        elif schema["type"] == "integer" and not INT8_MIN <= low <= high <= INT8_MAX:
            unbounded.append(f"{operation} {where}: [{low}, {high}] does not fit a bigint")
    assert unbounded == []


def test_the_walk_finds_the_numbers_and_each_fits_its_column() -> None:
    found = {(op, where): s for service in SERVICES for op, where, s in request_numbers(service)}
    assert found[("list_pii_reads", "query:before")]["maximum"] == INT8_MAX  # pii_reads.id: bigint
    assert found[("get_case", "query:version")]["maximum"] == INT4_MAX  # events.version: integer
    assert (found[("rate_case", "body:/score")]["minimum"], found[("rate_case", "body:/score")]["maximum"]) == (1, 5)
    pages = {op: s["maximum"] for (op, where), s in found.items() if where == "query:page_size"}
    assert set(pages) == {"list_cases", "list_pii_reads", "get_queue", "list_tasks", "list_verifications"}
    assert max(pages.values()) <= 100  # a count is bounded far below its column
    assert ("post_report", "body:/location/lat") in found
