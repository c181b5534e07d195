"""Each service's routes, declared once: an `Operation` names the route, its handler, the roles
that may call it and what the OpenAPI 3.1 document says of it.

A service lists its operations in `app.py`. `serve(app, title, operations)` registers every
handler under its route name and answers `GET /openapi.json` with a document whose schemas are
msgspec's own (JSON Schema 2020-12, which OpenAPI 3.1 uses), so the contract and the decoders
cannot drift apart; `access_table(operations)` gives the auth middleware its table from the same
list, so no route is served without a word on who may call it. Every error is documented as
RFC 9457 problem+json.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

import msgspec
from aiohttp import web
from msgspec import Meta

from shared.web.auth import PUBLIC_ROUTES, Role
from shared.web.http import PROBLEM, Handler

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


class Operation(msgspec.Struct, frozen=True, kw_only=True):
    """One route: `name` is the route name, the operationId and the key of the access table."""

    name: str
    method: str
    path: str
    handler: Handler
    summary: str
    allow: frozenset[Role] = frozenset()  # the roles that may call it (the auth middleware's table)
    body: Any = None  # the request body's Struct
    query: Any = None  # a Struct whose fields are the query parameters
    responses: Mapping[int, Any] = msgspec.field(default_factory=dict)  # status -> Struct (None: no body)
    errors: tuple[int, ...] = ()  # beyond the ones implied by auth, body, query and path
    headers: Mapping[str, Any] = msgspec.field(default_factory=dict)  # request header -> JSON schema
    public: bool = False
    optional_body: bool = False

    def __post_init__(self) -> None:
        # The auth middleware lets PUBLIC_ROUTES through and everything else by `allow` (absent:
        # nobody): a route that says otherwise would be documented one way and served another.
        if self.public is not (self.name in PUBLIC_ROUTES):
            raise ValueError(f"route {self.name}: public must be {self.name in PUBLIC_ROUTES} (see PUBLIC_ROUTES)")
        if self.public is bool(self.allow):
            raise ValueError(f"route {self.name}: " + ("public, so no roles" if self.public else "no role may call it"))


def op(method: str, path: str, name: str, handler: Handler, summary: str, **details: Any) -> Operation:
    return Operation(name=name, method=method, path=path, handler=handler, summary=summary, **details)


def access_table(operations: Iterable[Operation]) -> dict[str, frozenset[Role]]:
    """Route name -> the roles that may call it: the auth middleware's table."""
    return {o.name: o.allow for o in operations if not o.public}


def document(title: str, operations: Iterable[Operation], version: str = "0.1.0") -> dict[str, Any]:
    """The OpenAPI 3.1 document for these operations."""
    ops = list(operations)
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


def serve(app: web.Application, title: str, operations: Sequence[Operation]) -> None:
    """Register every operation's handler under its route name, build the document once and
    serve it, unauthenticated, at `GET /openapi.json`."""
    seen: set[tuple[str, str]] = set()
    for o in operations:
        # aiohttp refuses a repeated name; the same method and path under two names would
        # leave one of them never called.
        if (o.method, o.path) in seen:
            raise ValueError(f"route {o.name}: {o.method} {o.path} is declared twice")
        seen.add((o.method, o.path))
        if o.method == "GET":
            app.router.add_get(o.path, o.handler, name=o.name)  # and HEAD, as aiohttp does
        else:
            app.router.add_route(o.method, o.path, o.handler, name=o.name)
    app[DOCUMENT] = _encoder.encode(document(title, operations))
    app.router.add_get("/openapi.json", get_openapi, name="openapi")
