"""Each service's OpenAPI 3.1 document, built from its msgspec types and a list of operations.

A service lists its operations next to its routes in `app.py` (one `Operation` per route name)
and calls `serve(app, title, operations)`; `GET /openapi.json` then answers with a document whose
schemas are msgspec's own (JSON Schema 2020-12, which OpenAPI 3.1 uses), so the contract and the
decoders cannot drift apart. Every error is documented as RFC 9457 problem+json.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

import msgspec
from aiohttp import web
from msgspec import Meta

from shared.web.http import PROBLEM

REF = "#/components/schemas/{name}"
_PATH_PARAM = re.compile(r"{(\w+)}")
_encoder = msgspec.json.Encoder()
DOCUMENT = web.AppKey("openapi", bytes)

TITLES = {
    400: "Malformed request (JSON, query parameter, cursor or header)",
    401: "No valid bearer token",
    403: "The caller's role or scope does not allow this",
    404: "No such resource (or not visible to the caller)",
    405: "Method not allowed",
    409: "The resource's state does not allow this",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request body",
    429: "Too many requests: retry after Retry-After seconds",
    503: "Busy or not ready: retry",
}


# OpenAPI has no scheme for HTTP Message Signatures: an apiKey header, described.
SIGNATURE = {
    "type": "apiKey",
    "in": "header",
    "name": "Signature",
    "description": "mini-program backends (reporter_backend): an RFC 9421 signature (Ed25519) with "
    "Signature-Input covering @method, @target-uri, content-digest and idempotency-key",
}


class ProblemItem(msgspec.Struct, frozen=True, kw_only=True):
    message: str
    pointer: str | None = None  # a JSON pointer into the request body
    parameter: str | None = None  # or the query parameter at fault


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 9457 problem details, with `errors[]` naming the fields at fault."""

    type: str
    title: str
    status: Annotated[int, Meta(ge=400, le=599)]
    detail: str | None = None
    instance: str | None = None
    errors: list[ProblemItem] | None = None
    request_id: str | None = None


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    checks: dict[str, bool] | None = None


class Operation(msgspec.Struct, frozen=True, kw_only=True):
    """One route as the document describes it; `name` is the route name and the operationId."""

    name: str
    method: str
    path: str
    summary: str
    body: Any = None  # the request body's Struct
    query: Any = None  # a Struct whose fields are the query parameters
    responses: Mapping[int, Any] = msgspec.field(default_factory=dict)  # status -> Struct (None: no body)
    errors: tuple[int, ...] = ()  # beyond the ones implied by auth, body, query and path
    headers: Mapping[str, Any] = msgspec.field(default_factory=dict)  # request header -> JSON schema
    public: bool = False
    optional_body: bool = False


def op(method: str, path: str, name: str, summary: str, **details: Any) -> Operation:
    return Operation(name=name, method=method, path=path, summary=summary, **details)


HEALTH: tuple[Operation, ...] = (
    op("GET", "/healthz", "healthz", "The process is alive", responses={200: Health}, public=True),
    op("GET", "/livez", "livez", "The process is alive", responses={200: Health}, public=True),
    op(
        "GET",
        "/readyz",
        "readyz",
        "PostgreSQL and NATS are reachable",
        responses={200: Health, 503: Health},
        public=True,
    ),
)


def document(title: str, operations: Iterable[Operation], version: str = "0.1.0") -> dict[str, Any]:
    """The OpenAPI 3.1 document for these operations (health routes included)."""
    ops = [*HEALTH, *operations]
    types = {Problem}
    for o in ops:
        types.update(t for t in (o.body, o.query, *o.responses.values()) if t is not None)
    ordered = sorted(types, key=lambda t: t.__name__)
    schemas, components = msgspec.json.schema_components(ordered, schema_hook=_any_value, ref_template=REF)
    ref = dict(zip(ordered, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for o in ops:
        paths.setdefault(o.path, {})[o.method.lower()] = _operation(o, ref, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": f"caseloop {title}", "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "staff"},
                "signature": SIGNATURE,
            },
        },
        "security": [{"bearer": []}, {"signature": []}],
    }


def _any_value(kind: Any) -> dict[str, Any]:
    if kind is object:
        return {"description": "any JSON value"}  # an event's data in a case's history
    raise NotImplementedError(kind)


def _operation(o: Operation, ref: Mapping[Any, Any], components: Mapping[str, Any]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
        for name in _PATH_PARAM.findall(o.path)
    ]
    parameters += [{"name": name, "in": "header", "required": False, "schema": s} for name, s in o.headers.items()]
    if o.query is not None:
        query = components[o.query.__name__]
        required = set(query.get("required", ()))
        parameters += [
            {"name": name, "in": "query", "required": name in required, "schema": schema}
            for name, schema in query["properties"].items()
        ]
    spec: dict[str, Any] = {"operationId": o.name, "summary": o.summary}
    if parameters:
        spec["parameters"] = parameters
    if o.body is not None:
        spec["requestBody"] = {
            "required": not o.optional_body,
            "content": {"application/json": {"schema": ref[o.body]}},
        }
    responses: dict[str, Any] = {}
    for status, kind in sorted(o.responses.items()):
        answer: dict[str, Any] = {"description": "OK" if status < 300 else TITLES.get(status, "")}
        if kind is not None:
            answer["content"] = {"application/json": {"schema": ref[kind]}}
        responses[str(status)] = answer
    for status in sorted(set(_errors(o)) - set(o.responses)):
        responses[str(status)] = {
            "description": TITLES[status],
            "content": {PROBLEM: {"schema": ref[Problem]}},
        }
    spec["responses"] = responses
    if o.public:
        spec["security"] = []
    return spec


def _errors(o: Operation) -> Sequence[int]:
    """The errors every operation of this shape can answer with."""
    codes = [405, *o.errors]
    if not o.public:
        codes += [401, 403, 429]
    if o.query is not None:
        codes.append(400)
    if o.body is not None:
        codes += [400, 413, 415, 422]
    if _PATH_PARAM.search(o.path):
        codes.append(404)
    return codes


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCUMENT], content_type="application/json")


def serve(app: web.Application, title: str, operations: Iterable[Operation]) -> None:
    """Build the document once and serve it, unauthenticated, at `GET /openapi.json`."""
    app[DOCUMENT] = _encoder.encode(document(title, operations))
    app.router.add_get("/openapi.json", get_openapi, name="openapi")
