"""The HTTP edges of the running services: integers past 64 bits, versions past a case's head,
other people's objects, repeated keys, malformed requests and the Server header.

The integer and date-time tests are generated from the OpenAPI documents the services serve: every integer an
operation accepts (query, path, header, body) is sent as 2**63 and as -2**63-1, and each must be
a 4xx problem+json naming that integer, never a 5xx (a number past bigint used to reach
PostgreSQL and fail there); likewise a moment in a query that UTC cannot write.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import msgspec
import pytest

from ops.stack import Stack
from services.handling.app import spec as handling_spec
from services.intake.app import spec as intake_spec
from services.routing.app import spec as routing_spec
from services.verification.app import spec as verification_spec
from shared.base.config import Settings
from shared.web.auth import PUBLIC_ROUTES, Role
from shared.web.http import INT4_MAX, INT8_MAX, SERVER
from shared.web.signing import BackendKey
from tests.e2e.client import EVIDENCE, Api
from tests.signed import registered_backend

pytestmark = pytest.mark.e2e
SPECS = {"intake": intake_spec, "routing": routing_spec, "handling": handling_spec, "verification": verification_spec}
EDGES = (2**63, -(2**63) - 1)  # one past a bigint either way
GRID, OTHER_GRID = "wenfeng-tianehu-01", "hanfeng-hanfeng-01"
# Who calls an operation in this test: the first role of these its access table allows.
PREFERRED = (Role.DISPATCHER, Role.SUPERVISOR, Role.AUDITOR, Role.HANDLER, Role.GRID_WORKER, Role.REPORTER_BACKEND)
_PATH_PARAM = re.compile(r"{(\w+)}")


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """One integer an operation accepts: where it goes and its name (a JSON pointer in a body)."""

    service: str
    operation: str
    method: str
    path: str
    place: str  # query, path, header or body
    name: str


def resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def is_integer(schema: dict[str, Any], components: dict[str, Any]) -> bool:
    schema = resolve(schema, components)
    alternatives = schema.get("anyOf", []) + schema.get("oneOf", [])
    return schema.get("type") == "integer" or any(is_integer(a, components) for a in alternatives)


def integers_in(schema: dict[str, Any], components: dict[str, Any], pointer: str = "") -> Iterator[str]:
    """The JSON pointer of every integer a body of `schema` may hold (an array's: its first item)."""
    schema = resolve(schema, components)
    if pointer and is_integer(schema, components):
        yield pointer
    for alternative in schema.get("anyOf", []) + schema.get("oneOf", []):
        if resolve(alternative, components).get("type") != "integer":
            yield from integers_in(alternative, components, pointer)
    for name, member in schema.get("properties", {}).items():
        yield from integers_in(member, components, f"{pointer}/{name}")
    if "items" in schema:
        yield from integers_in(schema["items"], components, f"{pointer}/0")


def targets(service: str, document: dict[str, Any]) -> list[Target]:
    components = document["components"]["schemas"]
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if operation["operationId"] in PUBLIC_ROUTES:
                continue
            at = {"service": service, "operation": operation["operationId"], "method": method.upper(), "path": path}
            for parameter in operation.get("parameters", []):
                if is_integer(parameter["schema"], components):
                    found.append(Target(**at, place=parameter["in"], name=parameter["name"]))
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body is not None:
                found += [Target(**at, place="body", name=p) for p in integers_in(body, components)]
    return found


def body_with(pointer: str, value: int) -> Any:
    """The smallest body holding `value` at `pointer`: the bound is met before anything is missed."""
    body: Any = value
    for step in reversed(pointer.strip("/").split("/")):
        body = [body] if step.isdigit() else {step: body}
    return body


def caller(api: Api, role: Role) -> str | BackendKey:
    match role:
        case Role.REPORTER_BACKEND:
            return api.backend()
        case Role.HANDLER:
            return api.handler("water")
        case Role.GRID_WORKER:
            return api.grid_worker(GRID)
        case _:
            return api.token(role)


async def served_documents(api: Api) -> dict[str, dict[str, Any]]:
    documents = {}
    for service in SPECS:
        async with api.session.get(f"{api.info.urls[service]}/openapi.json") as response:
            assert response.status == 200
            documents[service] = msgspec.json.decode(await response.read())
    return documents


async def test_every_integer_of_every_operation_past_64_bits_is_a_4xx_problem_naming_it(api: Api) -> None:
    documents = await served_documents(api)
    found = [t for service, document in documents.items() for t in targets(service, document)]
    names = {(t.operation, t.place, t.name) for t in found}
    assert {
        ("list_pii_reads", "query", "before"),
        ("list_pii_reads", "query", "page_size"),
        ("get_case", "query", "version"),
        ("list_cases", "query", "page_size"),
        ("rate_case", "body", "/score"),
        ("get_queue", "query", "page_size"),
        ("list_tasks", "query", "page_size"),
        ("list_verifications", "query", "page_size"),
    } <= names, names
    wrong = []
    for target in found:
        access = SPECS[target.service](Settings()).access[target.operation]
        role = next(r for r in PREFERRED if r in access)
        for value in EDGES:
            path, query, headers, body = target.path, {}, {}, None
            for parameter in _PATH_PARAM.findall(target.path):
                given = str(value) if (target.place, target.name) == ("path", parameter) else str(uuid.uuid4())
                path = path.replace(f"{{{parameter}}}", given)
            if target.place == "query":
                query = {target.name: str(value)}
            elif target.place == "header":
                headers = {target.name: str(value)}
            elif target.place == "body":
                body = body_with(target.name, value)
            elif target.method != "GET":
                body = {}
            if query:
                path += "?" + "&".join(f"{k}={v}" for k, v in query.items())
            status, answer = await api.call(
                target.method, target.service, path, token=caller(api, role), json=body, headers=headers
            )
            where = f"{role} {target.method} {path} {target.place}:{target.name}={value} -> {status} {answer}"
            if not (400 <= status < 500 and isinstance(answer, dict) and answer.get("status") == status):
                wrong.append(f"not a 4xx problem: {where}")
            elif target.place == "query" and answer.get("errors") != [
                {"parameter": target.name, "message": answer["errors"][0]["message"]}
            ]:
                wrong.append(f"the problem does not name the parameter: {where}")
            elif target.place == "body" and [e.get("pointer") for e in answer.get("errors", [])] != [target.name]:
                wrong.append(f"the problem does not point at the field: {where}")
    assert wrong == []


MOMENTS = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00")  # valid, but not in UTC's years 1-9999


async def test_every_moment_a_query_takes_outside_utcs_years_is_a_4xx_problem_naming_it(api: Api) -> None:
    documents = await served_documents(api)
    found = [
        (service, operation, path, parameter["name"])
        for service, document in documents.items()
        for path, item in document["paths"].items()
        for operation in item.values()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query" and date_time(parameter["schema"], document["components"]["schemas"])
    ]
    assert {(o["operationId"], name) for _, o, _, name in found} >= {("get_case", "as_of")}
    wrong = []
    for service, operation, path, name in found:
        access = SPECS[service](Settings()).access[operation["operationId"]]
        who = caller(api, next(r for r in PREFERRED if r in access))
        target = _PATH_PARAM.sub(lambda _: str(uuid.uuid4()), path)
        for moment in MOMENTS:
            status, answer = await api.call("GET", service, f"{target}?{name}={quote(moment)}", token=who)
            if status != 400 or answer["errors"][0]["parameter"] != name:
                wrong.append(f"{operation['operationId']} {name}={moment} -> {status} {answer}")
    assert wrong == []


def date_time(schema: dict[str, Any], components: dict[str, Any]) -> bool:
    schema = resolve(schema, components)
    alternatives = schema.get("anyOf", []) + schema.get("oneOf", [])
    return schema.get("format") == "date-time" or any(date_time(a, components) for a in alternatives)


async def test_the_largest_bigint_is_a_cursor_and_one_more_is_not(api: Api) -> None:
    auditor = api.token(Role.AUDITOR)
    status, page = await api.call("GET", "intake", f"/v1/pii-reads?before={INT8_MAX}", token=auditor)
    assert status == 200 and "items" in page
    status, problem = await api.call("GET", "intake", f"/v1/pii-reads?before={INT8_MAX + 1}", token=auditor)
    assert status == 400 and problem["errors"][0]["parameter"] == "before"


async def test_a_version_past_the_head_of_a_case_is_404_and_the_head_itself_is_found(api: Api) -> None:
    case_id = await api.report(grid=GRID)
    head = (await api.case(case_id))["version"]
    status, case = await api.call("GET", "intake", f"/v1/cases/{case_id}?version={head}", token=api.dispatcher())
    assert status == 200 and case["version"] == head
    for version in (head + 1, 1000, INT4_MAX):
        status, problem = await api.call(
            "GET", "intake", f"/v1/cases/{case_id}?version={version}", token=api.dispatcher()
        )
        assert (status, problem["status"]) == (404, 404), (version, problem)
    status, first = await api.call("GET", "intake", f"/v1/cases/{case_id}?version=1", token=api.dispatcher())
    assert status == 200 and first["version"] == 1


def comparable(problem: Any) -> Any:
    """A problem without what differs from call to call (its request id, the path asked for)."""
    return {k: v for k, v in problem.items() if k not in ("request_id", "instance")}


async def test_another_departments_grids_or_backends_object_is_404_exactly_as_no_object(api: Api, stack: Stack) -> None:
    case_id = await api.report("blocked_drain", grid=GRID)
    [task] = await api.open_tasks(case_id, 1)
    await api.work(task)
    verification = await api.verification(case_id)
    other_department = "city_management" if task["department"] != "city_management" else "water"
    other_backend = await registered_backend(stack.env["ADMIN_DATABASE_URL"], "edges-other-miniprogram")
    strangers: list[tuple[str, str, str, str | BackendKey, Any]] = [
        ("GET", "handling", "/v1/tasks/{}", api.handler(other_department), None),
        ("POST", "handling", "/v1/tasks/{}/notes", api.handler(other_department), {"note": "x"}),
        ("GET", "verification", "/v1/verifications/{}", api.grid_worker(OTHER_GRID), None),
        ("POST", "verification", "/v1/verifications/{}/pass", api.grid_worker(OTHER_GRID), {"evidence": EVIDENCE}),
        ("POST", "verification", "/v1/verifications/{}/fail", other_backend, {"reason": "x"}),
        ("GET", "intake", "/v1/cases/{}", api.handler(other_department), None),
        ("GET", "intake", "/v1/cases/{}", other_backend, None),
        ("POST", "intake", "/v1/cases/{}/cancel", other_backend, {"reason": "x"}),
    ]
    ids = {"handling": task["id"], "verification": verification["id"], "intake": case_id}
    for method, service, template, who, body in strangers:
        theirs = await api.call(method, service, template.format(ids[service]), token=who, json=body)
        nothing = await api.call(method, service, template.format(uuid.uuid4()), token=who, json=body)
        assert theirs[0] == 404, (method, template, theirs)
        assert comparable(theirs[1]) == comparable(nothing[1]), (method, template)


async def test_a_key_given_twice_in_a_report_is_422_naming_it(api: Api) -> None:
    body = b'{"source": "citizen", "category": "pothole", "location": {"grid": "g", "grid": "h"}}'
    status, problem = await api.call("POST", "intake", "/v1/reports", token=api.dispatcher(), data=body)
    assert status == 422 and problem["errors"][0]["pointer"] == "/location/grid"


async def test_every_service_names_itself_without_a_version_even_to_a_request_it_cannot_parse(api: Api) -> None:
    marker = "ECHO-MARKER"
    for service in SPECS:
        host, _, port = api.info.urls[service].removeprefix("http://").partition(":")
        async with api.session.get(f"{api.info.urls[service]}/healthz") as healthy:
            assert healthy.headers.getall("Server") == [SERVER]
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + marker.encode() * 1000 + b"\r\n\r\n")
            head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)).decode("latin-1")
            length = int(re.search(r"(?im)^content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
            body = (await asyncio.wait_for(reader.readexactly(length), timeout=10)).decode()
        finally:
            writer.close()
        assert head.startswith("HTTP/1.0 400") and f"\r\nServer: {SERVER}\r\n" in head, head
        assert "application/problem+json" in head and marker not in head + body
        assert msgspec.json.decode(body)["status"] == 400
