"""Every route of every service × every role × objects that belong to someone else.

Generated from the services' own routers and access tables: a role the table does not allow
gets 401/403; an allowed role acting on another department's task, another grid's case or
another backend's case gets no 2xx; lists never show those objects; and the roles that may
only read (auditor; supervisor outside its one command) write nothing at all.

And the personal-data rule on every route whose answer can carry a reporter (found from the
services' OpenAPI documents: a `reporter` field, or free-form event data): unmasked only with
a stated purpose, for the roles allowed it (the backend that reported the case among them), and
each unmasked answer recorded; no other route ever shows the reporter's name or phone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import asyncpg
import pytest

from ops.stack import Stack
from services.handling import app as handling_app
from services.handling.app import spec as handling_spec
from services.intake import app as intake_app
from services.intake.app import spec as intake_spec
from services.routing import app as routing_app
from services.routing.app import spec as routing_spec
from services.verification import app as verification_app
from services.verification.app import spec as verification_spec
from shared.base.config import Settings
from shared.runtime.service import ServiceSpec, build
from shared.web.auth import PUBLIC_ROUTES, Role
from shared.web.openapi import document
from shared.web.signing import BackendKey
from tests.e2e.client import EVIDENCE, Api
from tests.signed import registered_backend

pytestmark = pytest.mark.e2e
GRID, OTHER_GRID = "wenfeng-tianehu-01", "hanfeng-hanfeng-01"
SPECS = {"intake": intake_spec, "routing": routing_spec, "handling": handling_spec, "verification": verification_spec}
OPERATIONS = {
    "intake": intake_app.OPERATIONS,
    "routing": routing_app.OPERATIONS,
    "handling": handling_app.OPERATIONS,
    "verification": verification_app.OPERATIONS,
}
# The routes whose answer can carry a reporter; test_these_are_the_routes_that_can_carry_a_reporter
# keeps this list honest as routes are added.
REPORTER_ROUTES = {("intake", "get_case"), ("intake", "get_history")}
PHONE, NAME = "13722223333", "周小红"
BODIES: Mapping[str, Any] = {
    "post_report": {"source": "citizen", "category": "pothole", "description": "x", "location": {"grid": GRID}},
    "cancel_case": {"reason": "不需要了"},
    "rate_case": {"score": 5},
    "dispatch_case": {"departments": ["city_management"]},
    "reassign_task": {"department": "city_management"},
    "reject_case": {"reason": "不属实"},
    "merge_case": {"into": "00000000-0000-4000-8000-000000000001"},
    "accept_task": {},
    "note_task": {"note": "到场"},
    "complete_task": {"result": "完成", "evidence": EVIDENCE},
    "return_task": {"reason": "不属于本部门"},
    "pass_verification": {"evidence": EVIDENCE},
    "fail_verification": {"reason": "未整改", "evidence": EVIDENCE},
}
# Roles that see every object (the command centre and auditors): not "foreign" to anything.
SEE_ALL = {Role.DISPATCHER, Role.SUPERVISOR, Role.AUDITOR}
READ_ONLY = {Role.AUDITOR, Role.SUPERVISOR}


def routes(spec: ServiceSpec) -> list[tuple[str, str, str]]:
    """(method, path template, route name) of every non-public route."""
    app = build(Settings(), spec)
    found = []
    for route in app.router.routes():
        name = route.name or ""
        if route.method in ("HEAD", "OPTIONS") or name in PUBLIC_ROUTES or not name:
            continue
        found.append((route.method, route.resource.canonical if route.resource else "", name))
    return found


async def writes_by_callers(stack: Stack) -> int:
    """Events written on a caller's behalf (the services' own timers are not callers)."""
    conn = await asyncpg.connect(stack.env["ADMIN_DATABASE_URL"])
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events WHERE metadata->>'actor' NOT LIKE 'service:%'"))
    finally:
        await conn.close()


def _carries_reporter(node: Any, components: Mapping[str, Any], seen: frozenset[str] = frozenset()) -> bool:
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            return name not in seen and _carries_reporter(components[name], components, seen | {name})
        if "reporter" in node.get("properties", {}) or node.get("description") == "any JSON value":
            return True
        return any(_carries_reporter(v, components, seen) for v in node.values())
    if isinstance(node, list):
        return any(_carries_reporter(v, components, seen) for v in node)
    return False


def routes_carrying_a_reporter() -> set[tuple[str, str]]:
    """(service, route name) of every operation whose successful answer can hold a reporter."""
    found = set()
    for service, operations in OPERATIONS.items():
        doc = document(service, operations)
        for methods in doc["paths"].values():
            for spec in methods.values():
                answers = {k: v for k, v in spec["responses"].items() if k.startswith("2")}
                if _carries_reporter(answers, doc["components"]["schemas"]):
                    found.add((service, spec["operationId"]))
    return found


def test_these_are_the_routes_that_can_carry_a_reporter() -> None:
    assert routes_carrying_a_reporter() == REPORTER_ROUTES


async def test_no_role_sees_or_changes_anothers_objects_and_readers_write_nothing(api: Api, stack: Stack) -> None:
    case_id = await api.report("blocked_drain", grid=GRID, reporter={"name": NAME, "phone": PHONE})
    [task] = await api.open_tasks(case_id, 1)
    department = task["department"]
    await api.work(task)
    verification = await api.verification(case_id)
    ids = {"cases": case_id, "tasks": task["id"], "verifications": verification["id"]}
    other_backend = await registered_backend(stack.env["ADMIN_DATABASE_URL"], "another-miniprogram")
    other_department = "city_management" if department != "city_management" else "water"
    callers: dict[Role, str | BackendKey] = {
        Role.REPORTER_BACKEND: other_backend,
        Role.HANDLER: api.handler(other_department),
        Role.GRID_WORKER: api.grid_worker(OTHER_GRID),
        Role.AUDITOR: api.token(Role.AUDITOR),
        Role.SUPERVISOR: api.token(Role.SUPERVISOR),
        Role.DISPATCHER: api.dispatcher(),
    }
    before = await writes_by_callers(stack)
    leaks: list[str] = []
    calls = 0
    for service, make_spec in SPECS.items():
        access = make_spec(Settings()).access
        for method, template, name in routes(make_spec(Settings())):
            kind = template.split("/")[2]
            path = template.replace("{id}", ids.get(kind, case_id))
            for role, caller in callers.items():
                allowed = role in access.get(name, frozenset())
                writes = method != "GET"
                if allowed and writes and role in SEE_ALL and role is not Role.AUDITOR:
                    continue  # the command centre may legitimately change things: not this test
                if allowed and name == "post_report":
                    continue  # creating a new case is not acting on someone else's object
                body = BODIES.get(name) if writes else None
                status, answer = await api.call(method, service, path, token=caller, json=body)
                calls += 1
                where = f"{role} {method} {path} -> {status}"
                assert status < 500, where
                if not allowed and status not in (401, 403):
                    leaks.append(f"not in the table: {where}")
                elif allowed and 200 <= status < 300 and "{id}" in template and role not in SEE_ALL:
                    leaks.append(f"foreign object: {where}")
                elif allowed and 200 <= status < 300 and role not in SEE_ALL:
                    text = str(answer)
                    leaks.extend(f"listed: {where} shows {k}" for k, v in ids.items() if v in text)
                if role is Role.AUDITOR and writes and 200 <= status < 300:
                    leaks.append(f"auditor wrote: {where}")
                if PHONE in str(answer) or NAME in str(answer):  # nobody here states a purpose
                    leaks.append(f"reporter unmasked: {where}")
    assert calls > 80
    assert leaks == []
    assert await writes_by_callers(stack) == before
    # And what did go through for the owner-less roles was readable only in masked form.
    _, case = await api.call("GET", "intake", f"/v1/cases/{case_id}", token=api.token(Role.AUDITOR))
    assert case["reporter"] is None or not re.search(r"1[3-9]\d{9}", str(case["reporter"]))


async def pii_read_count(api: Api, case_id: str) -> int:
    status, page = await api.call(
        "GET", "intake", f"/v1/pii-reads?case_id={case_id}&page_size=100", token=api.token(Role.AUDITOR)
    )
    assert status == 200, page
    return len(page["items"])


async def test_every_route_that_can_carry_a_reporter_unmasks_and_records_by_the_one_rule(
    api: Api, stack: Stack
) -> None:
    case_id = await api.report("blocked_drain", grid=GRID, reporter={"name": NAME, "phone": PHONE})
    [task] = await api.open_tasks(case_id, 1)
    department = task["department"]
    other_department = "city_management" if department != "city_management" else "water"
    # caller -> (its credentials, whether it may read the case at all, whether it unmasks with a purpose)
    callers: dict[str, tuple[str | BackendKey, bool, bool]] = {
        "the backend that reported it": (api.backend(), True, True),
        "another backend": (
            await registered_backend(stack.env["ADMIN_DATABASE_URL"], "third-miniprogram"),
            False,
            False,
        ),
        "its department's handler": (api.handler(department), True, False),
        "another department's handler": (api.handler(other_department), False, False),
        "its grid's worker": (api.grid_worker(GRID), True, False),
        "another grid's worker": (api.grid_worker(OTHER_GRID), False, False),
        "dispatcher": (api.dispatcher(), True, True),
        "supervisor": (api.token(Role.SUPERVISOR), True, True),
        "auditor": (api.token(Role.AUDITOR), True, False),
        "auditor with the pii grant": (api.token(Role.AUDITOR, "auditor-pii", pii=True), True, True),
        "handler with the pii grant": (
            api.token(Role.HANDLER, "h-pii", department=department, pii=True),
            True,
            False,
        ),
    }
    paths = {
        name: template.replace("{id}", case_id)
        for service, make_spec in SPECS.items()
        for method, template, name in routes(make_spec(Settings()))
        if (service, name) in REPORTER_ROUTES and method == "GET"
    }
    assert {("intake", name) for name in paths} == REPORTER_ROUTES
    wrong: list[str] = []
    for name, path in paths.items():
        for who, (caller, reads, with_purpose) in callers.items():
            for purpose in (None, "回访核实"):
                headers = {"X-Purpose": purpose} if purpose else {}
                before = await pii_read_count(api, case_id)
                status, answer = await api.call("GET", "intake", path, token=caller, headers=headers)
                recorded = await pii_read_count(api, case_id) - before
                where = f"{who} {name} purpose={purpose!r} -> {status}"
                shown = PHONE in str(answer) or NAME in str(answer)
                expected = reads and purpose is not None and with_purpose
                if status != (200 if reads else 404):
                    wrong.append(f"status: {where}")
                if shown is not expected or recorded != int(expected):
                    wrong.append(f"unmasked {shown}, recorded {recorded}, expected {expected}: {where}")
                if status == 200 and not shown and not ("137****3333" in str(answer) and "周**" in str(answer)):
                    wrong.append(f"reporter neither shown nor masked: {where}")
    assert wrong == []
