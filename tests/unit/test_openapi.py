"""Each service's OpenAPI document: valid 3.1, one operation per route, every error problem+json;
and the one list of operations it comes from also gives the routes and who may call them."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest
from aiohttp import web
from openapi_spec_validator import validate

from services.handling import app as handling
from services.intake import app as intake
from services.relay import app as relay
from services.routing import app as routing
from services.verification import app as verification
from shared.base.config import Settings
from shared.runtime.service import build
from shared.web.auth import PUBLIC_ROUTES, READERS, Role
from shared.web.http import json_response
from shared.web.openapi import DOCUMENT, op, serve

SERVICES = {"intake": intake, "routing": routing, "handling": handling, "verification": verification}
EVERY_PROCESS = {**SERVICES, "relay": relay}
METHODS = ("get", "post", "put", "patch", "delete")


def served(module: ModuleType) -> tuple[web.Application, dict[str, Any]]:
    """The app the service runs (nothing connects until it starts) and the document it serves."""
    app = build(Settings(), module.spec(Settings()))
    return app, json.loads(app[DOCUMENT])


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): spec
        for path, item in document["paths"].items()
        for method, spec in item.items()
        if method in METHODS
    }


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_document_is_valid_openapi_3_1(service: str) -> None:
    _, document = served(SERVICES[service])
    validate(document)
    assert document["openapi"].startswith("3.1")


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_is_documented_under_its_route_name_and_nothing_else_is(service: str) -> None:
    app, document = served(SERVICES[service])
    routes = {
        (r.method, r.resource.canonical): r.name
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD" and r.name not in PUBLIC_ROUTES
    }
    documented = {key: spec["operationId"] for key, spec in operations(document).items()}
    documented = {key: name for key, name in documented.items() if name not in PUBLIC_ROUTES}
    assert documented == routes


@pytest.mark.parametrize("service", SERVICES)
def test_every_error_response_is_problem_json_and_every_success_json(service: str) -> None:
    _, document = served(SERVICES[service])
    for (method, path), spec in operations(document).items():
        for status, response in spec["responses"].items():
            content = set(response.get("content", {}))
            not_ready = spec["operationId"] == "readyz" and status == "503"  # readiness answers in its own shape
            if int(status) >= 400 and not not_ready:
                assert content == {"application/problem+json"}, (method, path, status)
            else:
                assert content == {"application/json"}, (method, path, status)


@pytest.mark.parametrize("service", SERVICES)
def test_only_health_routes_are_public_and_the_rest_need_a_bearer_token(service: str) -> None:
    _, document = served(SERVICES[service])
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for spec in operations(document).values():
        public = spec["operationId"] in PUBLIC_ROUTES
        assert (spec.get("security") == []) is public
        assert ("401" in spec["responses"]) is not public


def test_request_schemas_come_from_the_decoders_so_unknown_fields_are_refused() -> None:
    _, document = served(intake)
    report = document["components"]["schemas"]["ReportIn"]
    assert set(report["required"]) == {"source", "category", "location"}
    assert report["properties"]["attachments"]["maxItems"] == 10
    query = {p["name"] for p in operations(document)[("GET", "/v1/cases")]["parameters"]}
    assert query == {"status", "grid", "street", "category", "reported_from", "reported_to", "page_size", "cursor"}


@pytest.mark.parametrize("service", EVERY_PROCESS)
def test_every_route_served_is_public_or_has_roles_that_may_call_it(service: str) -> None:
    # The auth middleware refuses a route absent from the access table to everyone: a route
    # registered outside the operations would be served to nobody, silently.
    app, _ = served(EVERY_PROCESS[service])
    access = EVERY_PROCESS[service].spec(Settings()).access
    names = {r.name for r in app.router.routes() if r.resource is not None}
    assert {n for n in names if n not in PUBLIC_ROUTES and not access.get(n or "")} == set()
    assert set(access) == names - PUBLIC_ROUTES


async def nothing(request: web.Request) -> web.Response:
    return json_response({})


def test_a_route_no_role_may_call_or_a_public_one_with_roles_is_refused_where_it_is_declared() -> None:
    with pytest.raises(ValueError, match="no role may call it"):
        op("GET", "/v1/things", "list_things", nothing, "Things")
    with pytest.raises(ValueError, match="public"):
        op("GET", "/healthz", "healthz", nothing, "Alive", public=True, allow=READERS)
    with pytest.raises(ValueError, match="PUBLIC_ROUTES"):
        op("GET", "/v1/things", "list_things", nothing, "Things", public=True)  # the middleware would refuse it
    with pytest.raises(ValueError, match="PUBLIC_ROUTES"):
        op("GET", "/healthz", "healthz", nothing, "Alive", allow=READERS)  # the middleware would not check it


def test_the_same_method_and_path_declared_twice_is_refused_at_start_up() -> None:
    things = op("GET", "/v1/things", "list_things", nothing, "Things", allow=frozenset({Role.AUDITOR}))
    again = op("GET", "/v1/things", "things", nothing, "Things again", allow=READERS)
    with pytest.raises(ValueError, match="declared twice"):
        serve(web.Application(), "things", [things, again])
