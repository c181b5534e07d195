"""Who is calling: JWT bearer tokens, roles and scopes, and the per-route access table."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import Protocol

import jwt
import msgspec
from aiohttp import web

from shared.base.config import Secret
from shared.web.http import Handler, ProblemError

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


# Seconds of clock skew allowed on `iat` and `nbf`: an issuer whose clock runs ahead of ours.
# `exp` gets none: a token is refused from the moment its `exp` names (exp must be strictly
# in the future by this process's clock); a skewed issuer's tokens end early, never late.
LEEWAY = 30
_VERIFIED_MAX = 10_000
# Tokens already verified by this process: (token, secret, issuer, audience) -> (principal, exp).
# A token is immutable and its signature check cannot change its answer; only time can (exp).
# Verifying an HS256 JWT is about a seventh of intake's CPU under load; a caller sends the same
# token with every request until it expires.
_verified: dict[tuple[str, Secret, str, str], tuple[Principal, float]] = {}


class TokenRefusal(StrEnum):
    """Every reason a bearer token is refused: our sentences, never the JWT library's text."""

    EXPIRED = "the token has expired"
    NOT_YET_VALID = "the token is not valid yet"
    BAD_SIGNATURE = "the token's signature does not verify"
    WRONG_AUDIENCE = "the token is for another audience"
    WRONG_ISSUER = "the token is from another issuer"
    ALGORITHM = "the token's algorithm is not accepted"
    MISSING_CLAIM = "the token lacks a required claim (exp, iss, aud or sub)"
    MALFORMED = "the token is malformed"
    CLAIMS = "the token's claims are invalid"
    NO_SUBJECT = "the token names no subject"
    NO_DEPARTMENT = "a handler token must name its department"
    NO_GRIDS = "a grid worker token must name its grids"
    INVALID = "the token is invalid"


# The library's exceptions, most specific first (a bad signature is also a DecodeError).
_REFUSALS: tuple[tuple[type[Exception], TokenRefusal], ...] = (
    (jwt.ExpiredSignatureError, TokenRefusal.EXPIRED),
    (jwt.ImmatureSignatureError, TokenRefusal.NOT_YET_VALID),
    (jwt.InvalidSignatureError, TokenRefusal.BAD_SIGNATURE),
    (jwt.InvalidAudienceError, TokenRefusal.WRONG_AUDIENCE),
    (jwt.InvalidIssuerError, TokenRefusal.WRONG_ISSUER),
    (jwt.InvalidAlgorithmError, TokenRefusal.ALGORITHM),
    (jwt.MissingRequiredClaimError, TokenRefusal.MISSING_CLAIM),
    (jwt.DecodeError, TokenRefusal.MALFORMED),
    (jwt.exceptions.InvalidSubjectError, TokenRefusal.CLAIMS),
    (jwt.exceptions.InvalidIssuedAtError, TokenRefusal.CLAIMS),
    (msgspec.ValidationError, TokenRefusal.CLAIMS),
)


def remembered_token(token: str, secret: Secret, *, issuer: str, audience: str) -> Principal | None:
    """The caller of a token this process verified before and that has not expired since."""
    key = (token, secret, issuer, audience)
    if (known := _verified.get(key)) is not None:
        principal, expires = known
        if time.time() < expires:
            return principal
        del _verified[key]
    return None


def verify_token(token: str, secret: Secret | str, *, issuer: str, audience: str) -> Principal:
    """The caller a token names, or ProblemError 401."""
    if isinstance(secret, str):
        secret = Secret(secret)
    if (principal := remembered_token(token, secret, issuer=issuer, audience=audience)) is not None:
        return principal
    principal, expires = _verify(token, secret, issuer=issuer, audience=audience)
    if len(_verified) >= _VERIFIED_MAX:
        del _verified[next(iter(_verified))]  # the oldest
    _verified[token, secret, issuer, audience] = (principal, expires)
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
        raise unauthorized(next((r for kind, r in _REFUSALS if isinstance(exc, kind)), TokenRefusal.INVALID)) from None
    expires = int(claims["exp"])  # as the library reads it (an integer; a fraction is cut off)
    if time.time() >= expires:  # the library allows LEEWAY past exp; we allow none
        raise unauthorized(TokenRefusal.EXPIRED)
    if not principal.sub.strip():  # an audit row must name someone: "dispatcher:" names nobody
        raise unauthorized(TokenRefusal.NO_SUBJECT)
    if principal.role is Role.HANDLER and not principal.department:
        raise unauthorized(TokenRefusal.NO_DEPARTMENT)
    if principal.role is Role.GRID_WORKER and not principal.grids:
        raise unauthorized(TokenRefusal.NO_GRIDS)
    return principal, float(expires)


def unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="caseloop"'}, kind="unauthorized"
    )


def forbidden(detail: str) -> ProblemError:
    return ProblemError(403, "Forbidden", detail, kind="forbidden")


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def _staff(principal: Principal) -> Principal:
    if principal.role is Role.REPORTER_BACKEND:
        raise unauthorized("a reporter_backend must sign its calls (RFC 9421), not send a bearer token")
    return principal


class FailedAuthentications(Protocol):
    """Failed authentications counted per client address (shared/ratelimit.py)."""

    def check(self, address: str) -> None:
        """Raise 429 while `address` is over its budget of failures."""

    def failed(self, address: str) -> None:
        """Count a failure from `address`."""


def auth_middleware(
    access: Mapping[str, frozenset[Role]],
    *,
    secret: Secret,
    issuer: str,
    audience: str,
    signed: Callable[[web.Request], Awaitable[Principal]] | None = None,
    failures: FailedAuthentications | None = None,
) -> web.middleware:  # type: ignore[valid-type]
    """Authenticate, then allow by the route's entry in `access`. No entry: denied.

    A request carrying `Signature-Input` is a backend's signed call, checked by `signed`
    (shared/backends.py); staff send bearer tokens. A bearer token for a reporter_backend
    is refused: backends must sign. Credentials that fail are counted against the client's
    address in `failures`; an address over its budget gets 429 before anything it sends is
    checked, except a token this process has already verified (checking it costs nothing).
    """

    async def authenticate(request: web.Request) -> Principal:
        signed_call = "Signature-Input" in request.headers or "Signature" in request.headers
        header = request.headers.get("Authorization", "")
        if not signed_call and not header:
            raise unauthorized("a Bearer token is required")  # nothing presented: nothing to count
        scheme, _, token = header.partition(" ")
        token = token.strip()
        bearer = scheme.lower() == "bearer" and bool(token)
        if not signed_call and bearer:
            principal = remembered_token(token, secret, issuer=issuer, audience=audience)
            if principal is not None:
                return _staff(principal)
        address = request.remote or ""
        if failures is not None:
            failures.check(address)
        try:
            if signed_call:
                if signed is None:
                    raise unauthorized("signed calls are not accepted here")
                return await signed(request)
            if not bearer:
                raise unauthorized("a Bearer token is required")
            principal = verify_token(token, secret, issuer=issuer, audience=audience)
        except ProblemError as exc:
            if failures is not None and exc.status == 401:
                failures.failed(address)
            raise
        return _staff(principal)  # a valid token used the wrong way: not a failed authentication

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route
        name = route.name or ""
        if name in PUBLIC_ROUTES or route.resource is None:  # unmatched routes 404/405 as usual
            return await handler(request)
        principal = await authenticate(request)
        allowed = access.get(name, frozenset())
        if principal.role not in allowed:
            raise forbidden(f"{principal.role} may not {request.method} {route.resource.canonical}")
        request[PRINCIPAL] = principal
        return await handler(request)

    return middleware
