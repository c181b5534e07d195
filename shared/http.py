"""HTTP plumbing every service shares: RFC 9457 problem+json, body decoding, request ids."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import msgspec
import structlog
from aiohttp import web

log = structlog.get_logger()

PROBLEM = "application/problem+json"
T = TypeVar("T")
_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_FIELD = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<field>[^`]+)`$")
# A JSON "\u0000" (an escape not itself escaped): PostgreSQL text and jsonb cannot hold NUL.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class ProblemError(Exception):
    """Raise from a view: becomes a problem+json response."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        kind: str = "",
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}
        self.kind = kind


def problem(
    status: int,
    title: str,
    detail: str = "",
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    kind: str = "",
    instance: str = "",
) -> web.Response:
    body: dict[str, Any] = {
        "type": f"https://caseloop.dev/problems/{kind or status}",
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id:
        body["request_id"] = request_id
    return web.Response(body=_encoder.encode(body), status=status, content_type=PROBLEM, headers=headers)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_encoder.encode(data), status=status, content_type="application/json", headers=headers)


def pointer(message: str) -> str:
    """msgspec's "… - at `$.location.lat`" as a JSON pointer: /location/lat."""
    match = _PATH.search(message)
    if not match:
        return ""
    path = match.group("path")
    return re.sub(r"\[(\d+)\]", r".\1", path).replace(".", "/")


def invalid(message: str, status: int = 422) -> ProblemError:
    where = pointer(message)
    text = _PATH.sub("", message)
    # msgspec's path ends at the object for a missing or unknown field: name the field itself.
    if field := _FIELD.match(text):
        where = f"{where}/{field.group('field')}"
    return ProblemError(
        status,
        "Invalid request body",
        f"{text} at {where}" if where else text,
        errors=[{"pointer": where or "/", "message": text}],
        kind="invalid-body",
    )


async def decode_body(request: web.Request, kind: type[T]) -> T:
    """The request body as `kind`, or a 4xx naming the field that is wrong."""
    if request.content_type not in ("application/json", ""):
        raise ProblemError(415, "Unsupported media type", "send application/json", kind="media-type")
    body = await request.read()  # past client_max_size: 413
    if _NUL_ESCAPE.search(body):
        raise invalid("NUL characters (\\u0000) are not accepted in text")
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        return decoder.decode(body)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise invalid(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ProblemError(400, "Malformed JSON", str(exc), kind="malformed-json") from None


def parse_query(request: web.Request, kind: type[T]) -> T:
    if any("\x00" in value for value in request.query.values()):
        raise ProblemError(400, "Invalid query parameter", "NUL characters are not accepted", kind="invalid-query")
    try:
        return msgspec.convert(dict(request.query), kind, strict=False)
    except msgspec.ValidationError as exc:
        where = pointer(str(exc)).lstrip("/")
        text = _PATH.sub("", str(exc))
        raise ProblemError(
            400,
            "Invalid query parameter",
            f"{text} at {where}" if where else text,
            errors=[{"parameter": where, "message": text}],
            kind="invalid-query",
        ) from None


def uuid_param(request: web.Request, name: str = "id") -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise ProblemError(404, "Not found", f"no such {name}", kind="not-found") from None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The database is restarting, refusing connections, or dropped ours mid-query.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
)


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as problem+json; nothing internal leaks into a response."""
    request_id = request.headers.get("X-Request-ID", "")[:64] or str(uuid.uuid4())
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
        except ProblemError as exc:
            response = problem(
                exc.status,
                exc.title,
                exc.detail,
                errors=exc.errors,
                headers=exc.headers,
                kind=exc.kind,
                instance=request.path,
            )
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
            response = problem(exc.status, exc.reason, headers=headers, instance=request.path)
        except UNAVAILABLE as exc:  # the database restarting or out of reach: retry, not a bug (make chaos)
            log.warning("request_unavailable", method=request.method, path=request.path, error=repr(exc)[:200])
            response = problem(
                503,
                "Unavailable",
                "a backing service is unavailable; retry",
                headers={"Retry-After": "1"},
                kind="unavailable",
            )
        except Exception:
            log.exception("request_failed", method=request.method, path=request.path)
            response = problem(500, "Internal error", "the request failed; it is safe to retry", kind="internal")
        response.headers["X-Request-ID"] = request_id
        return response
