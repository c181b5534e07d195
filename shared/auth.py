"""Who is calling: JWT bearer tokens, roles and scopes, and the per-route access table."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum

import jwt
import msgspec
from aiohttp import web

from shared.config import Secret
from shared.http import Handler, ProblemError

ALGORITHMS = ["HS256"]  # an allow-list: "none" and key-confusion tricks are refused
PUBLIC_ROUTES = frozenset({"healthz", "livez", "readyz", "openapi"})


class Role(StrEnum):
    REPORTER_BACKEND = "reporter_backend"
    GRID_WORKER = "grid_worker"
    DISPATCHER = "dispatcher"
    HANDLER = "handler"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"


STAFF = frozenset({Role.DISPATCHER, Role.SUPERVISOR})
READERS = frozenset(Role)


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    sub: str
    role: Role
    department: str | None = None  # handlers: the one department they act for
    grids: tuple[str, ...] = ()  # grid workers: the grids they verify in
    pii: bool = False  # lets an auditor read a reporter unmasked with a stated purpose (recorded); alone, nothing

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.sub}"


PRINCIPAL = web.RequestKey("principal", Principal)


def issue_token(
    secret: str,
    *,
    sub: str,
    role: Role,
    department: str | None = None,
    grids: tuple[str, ...] = (),
    pii: bool = False,
    issuer: str = "caseloop",
    audience: str = "caseloop",
    ttl_seconds: int = 12 * 3600,
) -> str:
    if role is Role.HANDLER and not department:
        raise ValueError("a handler token needs a department")
    if role is Role.GRID_WORKER and not grids:
        raise ValueError("a grid worker token needs at least one grid")
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": sub,
        "role": str(role),
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if department:
        claims["department"] = department
    if grids:
        claims["grids"] = list(grids)
    if pii:
        claims["pii"] = True
    return jwt.encode(claims, secret, algorithm=ALGORITHMS[0])


LEEWAY = 30  # seconds of clock skew allowed on exp
_VERIFIED_MAX = 10_000
# Tokens already verified by this process: (token, secret, issuer, audience) -> (principal, exp).
# A token is immutable and its signature check cannot change its answer; only time can (exp).
# Verifying an HS256 JWT is about a seventh of intake's CPU under load; a caller sends the same
# token with every request until it expires.
_verified: dict[tuple[str, Secret, str, str], tuple[Principal, float]] = {}


def verify_token(token: str, secret: Secret | str, *, issuer: str, audience: str) -> Principal:
    """The caller a token names, or ProblemError 401."""
    if isinstance(secret, str):
        secret = Secret(secret)
    key = (token, secret, issuer, audience)
    if (known := _verified.get(key)) is not None:
        principal, expires = known
        if time.time() <= expires + LEEWAY:
            return principal
        del _verified[key]
    principal, expires = _verify(token, secret, issuer=issuer, audience=audience)
    if len(_verified) >= _VERIFIED_MAX:
        del _verified[next(iter(_verified))]  # the oldest
    _verified[key] = (principal, expires)
    return principal


def _verify(token: str, secret: Secret, *, issuer: str, audience: str) -> tuple[Principal, float]:
    try:
        claims = jwt.decode(
            token,
            secret.reveal(),
            algorithms=ALGORITHMS,
            issuer=issuer,
            audience=audience,
            leeway=LEEWAY,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
        principal = msgspec.convert(
            {k: claims.get(k) for k in ("sub", "role", "department", "grids", "pii") if claims.get(k) is not None},
            Principal,
        )
    except (jwt.PyJWTError, msgspec.ValidationError) as exc:
        raise unauthorized(f"invalid token: {exc}") from None
    if principal.role is Role.HANDLER and not principal.department:
        raise unauthorized("a handler token must name its department")
    if principal.role is Role.GRID_WORKER and not principal.grids:
        raise unauthorized("a grid worker token must name its grids")
    return principal, float(claims["exp"])


def unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="caseloop"'}, kind="unauthorized"
    )


def forbidden(detail: str) -> ProblemError:
    return ProblemError(403, "Forbidden", detail, kind="forbidden")


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def auth_middleware(
    access: Mapping[str, frozenset[Role]],
    *,
    secret: Secret,
    issuer: str,
    audience: str,
    signed: Callable[[web.Request], Awaitable[Principal]] | None = None,
) -> web.middleware:  # type: ignore[valid-type]
    """Authenticate, then allow by the route's entry in `access`. No entry: denied.

    A request carrying `Signature-Input` is a backend's signed call, checked by `signed`
    (shared/backends.py); staff send bearer tokens. A bearer token for a reporter_backend
    is refused: backends must sign.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route
        name = route.name or ""
        if name in PUBLIC_ROUTES or route.resource is None:  # unmatched routes 404/405 as usual
            return await handler(request)
        if "Signature-Input" in request.headers or "Signature" in request.headers:
            if signed is None:
                raise unauthorized("signed calls are not accepted here")
            principal = await signed(request)
        else:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise unauthorized("a Bearer token is required")
            principal = verify_token(token.strip(), secret, issuer=issuer, audience=audience)
            if principal.role is Role.REPORTER_BACKEND:
                raise unauthorized("a reporter_backend must sign its calls (RFC 9421), not send a bearer token")
        allowed = access.get(name, frozenset())
        if principal.role not in allowed:
            raise forbidden(f"{principal.role} may not {request.method} {route.resource.canonical}")
        request[PRINCIPAL] = principal
        return await handler(request)

    return middleware
