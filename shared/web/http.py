"""HTTP plumbing every service shares: RFC 9457 problem+json, body decoding, request ids."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import msgspec
import msgspec.inspect as mi
import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from shared.domain.case import Refused
from shared.store.commands import Busy

log = structlog.get_logger()

PROBLEM = "application/problem+json"
T = TypeVar("T")
_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_FIELD = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<field>[^`]+)`$")
# A JSON "\u0000" (an escape not itself escaped): PostgreSQL text and jsonb cannot hold NUL.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
# A key written with a \uXXXX escape (a known field's name can be spelt so): `"gr\u0069d":`.
_ESCAPED_KEY = re.compile(rb'\\u[^"]*"\s*:')
# The Server header: no product or version for a scanner to match.
SERVER = "caseloop"
# Integers a PostgreSQL column can hold: request fields are bounded to their column's type
# (a number past these reaches the database and fails there, not in validation).
INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1


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


def invalid(message: str, status: int = 422, *, at: str | None = None) -> ProblemError:
    """An invalid request body, naming where: `at` (a JSON pointer), or msgspec's "- at `$.path`"."""
    where = pointer(message) if at is None else at
    text = _PATH.sub("", message)
    # msgspec's path ends at the object for a missing or unknown field: name the field itself.
    if at is None and (field := _FIELD.match(text)):
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
        _keys[kind] = _key_pattern(kind)
    keys = _keys[kind]
    if keys is None or _ESCAPED_KEY.search(body) or _repeats(keys.findall(body)):
        refuse_duplicate_keys(body)
    try:
        return decoder.decode(body)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise invalid(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ProblemError(400, "Malformed JSON", str(exc), kind="malformed-json") from None


# Duplicate keys. msgspec keeps the last of two equal keys without a word, so `{"score": 1,
# "score": 5}` would pass for 5. The quick check: a key can only repeat if one of the names the
# body's type knows appears twice as a JSON string (a `"name"` token), or if a key is spelt with
# an escape; an unknown key is refused by the decoder anyway. Only then is the body parsed a
# second time, by the standard library, to find the repeated key.
_keys: dict[Any, re.Pattern[bytes] | None] = {}


def _repeats(found: list[bytes]) -> bool:
    return len(found) != len(set(found))


def _key_pattern(kind: Any) -> re.Pattern[bytes] | None:
    """A pattern matching the JSON string of every key `kind` knows (None: it takes any key)."""
    names: set[str] = set()
    seen: set[int] = set()

    def walk(t: mi.Type) -> bool:
        match t:
            case mi.StructType():
                if id(t) not in seen:
                    seen.add(id(t))
                    names.update(f.encode_name for f in t.fields)
                    if t.tag_field is not None:
                        names.add(t.tag_field)
                    return all(walk(f.type) for f in t.fields)
                return True
            case mi.Metadata():
                return walk(t.type)
            case mi.UnionType():
                return all(walk(member) for member in t.types)
            case mi.ListType() | mi.VarTupleType() | mi.SetType() | mi.FrozenSetType():
                return walk(t.item_type)
            case mi.TupleType():
                return all(walk(item) for item in t.item_types)
            case mi.DictType() | mi.AnyType() | mi.TypedDictType() | mi.DataclassType() | mi.NamedTupleType():
                return False  # keys the type does not name: always check
            case _:
                return True  # a scalar

    if not walk(mi.type_info(kind)):
        return None
    if not names:
        return re.compile(rb"(?!)")  # matches nothing: no key to repeat
    alternatives = b"|".join(re.escape(json.dumps(name).encode()) for name in sorted(names))
    return re.compile(b"(?:" + alternatives + b")")


class _Repeated:
    """Stands for an object holding a repeated key; `path` leads to it from the parent."""

    __slots__ = ("path",)

    def __init__(self, path: list[str | int]) -> None:
        self.path = path


def _repeated_in(value: Any) -> list[str | int] | None:
    if isinstance(value, _Repeated):
        return value.path
    if isinstance(value, list):
        for index, item in enumerate(value):
            if (inner := _repeated_in(item)) is not None:
                return [index, *inner]
    return None


def _object(pairs: list[tuple[str, Any]]) -> _Repeated | None:
    # Nothing of the parsed body is kept: only where a key repeats.
    seen: set[str] = set()
    for key, value in pairs:
        if (inner := _repeated_in(value)) is not None:
            return _Repeated([key, *inner])
        if key in seen:
            return _Repeated([key])
        seen.add(key)
    return None


def refuse_duplicate_keys(body: bytes) -> None:
    """422 naming the first key an object of `body` holds twice; malformed JSON is left to the decoder."""
    try:
        path = _repeated_in(json.loads(body, object_pairs_hook=_object))
    except (ValueError, RecursionError):
        return
    if path is None:
        return
    where = "".join(f"/{str(step).replace('~', '~0').replace('/', '~1')}" for step in path)
    raise invalid(f"Object contains duplicate key `{path[-1]}`", at=where)


def parse_query(request: web.Request, kind: type[T]) -> T:
    if any("\x00" in value for value in request.query.values()):
        raise ProblemError(400, "Invalid query parameter", "NUL characters are not accepted", kind="invalid-query")
    if len(request.query) != len(names := set(request.query)):
        # As with a body's keys: no silent choice between two values of one parameter.
        twice = next(name for name in sorted(names) if len(request.query.getall(name)) > 1)
        raise _invalid_query(twice, "given more than once")
    try:
        query = msgspec.convert(dict(request.query), kind, strict=False)
    except msgspec.ValidationError as exc:
        where = pointer(str(exc)).lstrip("/")
        text = _PATH.sub("", str(exc))
        raise _invalid_query(where, text) from None
    for name in getattr(kind, "__struct_fields__", ()):
        # 0001-01-01T00:00+14:00 is a valid moment that UTC (and so PostgreSQL's driver) cannot write.
        if isinstance(moment := getattr(query, name), datetime) and moment.tzinfo is not None:
            try:
                moment.astimezone(UTC)
            except OverflowError:
                raise _invalid_query(name, "Expected a moment within the years 1 to 9999 in UTC") from None
    return query


def _invalid_query(parameter: str, text: str) -> ProblemError:
    return ProblemError(
        400,
        "Invalid query parameter",
        f"{text} at {parameter}" if parameter else text,
        errors=[{"parameter": parameter, "message": text}],
        kind="invalid-query",
    )


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
        except Refused as exc:  # decide() said no: the case's state does not allow the command
            log.info("command_refused", method=request.method, path=request.path, reason=exc.reason)
            response = problem(409, "Conflict", exc.reason, kind="conflict", instance=request.path)
        except Busy:  # the case moved under every attempt of a command (shared/store/commands.py)
            response = problem(
                503,
                "Busy",
                "the case is changing fast; retry",
                headers={"Retry-After": "1"},
                kind="busy",
                instance=request.path,
            )
        except web.HTTPException as exc:
            if exc.status < 400:
                exc.headers["Server"] = SERVER
                raise
            headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
            response = problem(exc.status, exc.reason, headers=headers, instance=request.path)
        except web.RequestPayloadError:  # a body aiohttp cannot unframe or decompress (bad gzip, bad chunks)
            response = problem(400, "Malformed request body", "the body could not be read", kind="malformed-body")
            response.force_close()  # the rest of the body cannot be skipped: the connection ends here
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
        response.headers["Server"] = SERVER
        return response


def answer_malformed_requests_as_problems() -> None:
    """Have aiohttp answer the requests it refuses itself in problem+json, echoing nothing.

    A request aiohttp's parser refuses (a request line or header past 8190 bytes, more than 128
    headers, a control character or space in a header, a malformed Content-Length, an unknown
    Transfer-Encoding, a bad chunk size, a Content-Encoding it cannot decode) never reaches an
    application: no middleware, no signal. aiohttp answers it from RequestHandler.handle_error,
    in plain text quoting the bytes it choked on, with its version in `Server`. That method is
    the one place those answers are made, so it is replaced here (once, for every server in the
    process; call before serving).
    """
    RequestHandler.handle_error = _handle_error  # type: ignore[method-assign]


def _handle_error(
    self: RequestHandler,
    request: Any,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    if request.writer.output_size > 0:  # as aiohttp's: part of a response is out, the connection is broken
        raise ConnectionError("the response is sent already: no error can follow it")
    if status >= 500:
        log.error("request_failed_in_server", status=status, exc_info=exc)
        response = problem(status, "Internal error", "the request failed; it is safe to retry", kind="internal")
    else:  # the parser's message quotes the request: only its kind is logged, nothing is echoed
        log.info("request_malformed", status=status, error=type(exc).__name__ if exc else "")
        response = problem(status, "Malformed request", "the request could not be parsed", kind="malformed-request")
    response.headers["Server"] = SERVER
    response.force_close()
    return response
