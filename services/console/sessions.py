"""The console's sign-in: a staff JWT exchanged for a sealed session cookie; CSRF-safe requests; sign-out.

A session is a sealed cookie, not server state: AES-256-GCM over {sid, token, exp} under
CONSOLE_SESSION_KEY, so any console process opens it (after a restart, on another replica). The
person's JWT rides inside it: the page's JavaScript never sees it (HttpOnly), nobody without the
key can read or forge it, and each forwarded call carries it as the person's own bearer token.
Sign-out deletes the cookie and revokes its session id in this process until it would have expired.

State-changing requests (any method but GET, HEAD and OPTIONS) must come from the console's own
origin: the cookie is SameSite=Strict, and the Origin header (sent by browsers on every such
request) must name the console; Sec-Fetch-Site, where sent, must say same-origin.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import msgspec
import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.base.config import Settings
from shared.web.auth import PRINCIPAL, Principal, Role, verify_token
from shared.web.http import Handler, ProblemError

log = structlog.get_logger()

COOKIE = "caseloop_session"
_AAD = b"caseloop-console-session/1"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Who may sign in: staff. A mini-program backend signs its calls; it has no pages here.
STAFF_ROLES = frozenset(Role) - {Role.REPORTER_BACKEND}


class _Sealed(msgspec.Struct, frozen=True, array_like=True):
    sid: str
    token: str
    exp: int


class Session(msgspec.Struct, frozen=True, kw_only=True):
    sid: str
    token: str  # the person's JWT: forwarded to the APIs, never shown to the page
    principal: Principal
    expires: int  # unix seconds


SESSION = web.RequestKey("session", Session)


class SignInRefused(Exception):
    """The token was not accepted; `reason` is a short code the sign-in page translates."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Sessions:
    def __init__(self, settings: Settings, now: Callable[[], float] = time.time) -> None:
        key = base64.b64decode(settings.console_session_key.reveal() or "")
        if len(key) != 32:
            raise ValueError("CONSOLE_SESSION_KEY must be base64 of 32 bytes")
        self._aead = AESGCM(key)
        self._jwt = (settings.jwt_secret, settings.jwt_issuer, settings.jwt_audience)
        self._seconds = int(settings.console_session_hours * 3600)
        self._now = now
        self._revoked: dict[str, int] = {}  # sid -> when it would have expired

    def principal(self, token: str) -> Principal:
        secret, issuer, audience = self._jwt
        return verify_token(token, secret, issuer=issuer, audience=audience)

    def sign_in(self, token: str) -> tuple[str, Session]:
        """(the cookie's value, the session) for a staff member's JWT, or SignInRefused."""
        token = token.strip()
        if not token:
            raise SignInRefused("empty")
        try:
            principal = self.principal(token)
        except ProblemError as exc:
            raise SignInRefused("expired" if "expired" in exc.detail else "invalid") from None
        if principal.role not in STAFF_ROLES:
            raise SignInRefused("role")
        expires = min(int(self._now()) + self._seconds, _token_expiry(token))
        session = Session(sid=secrets.token_urlsafe(16), token=token, principal=principal, expires=expires)
        return self.seal(session), session

    def seal(self, session: Session) -> str:
        nonce = os.urandom(12)
        plain = msgspec.msgpack.encode(_Sealed(sid=session.sid, token=session.token, exp=session.expires))
        return base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, plain, _AAD)).decode().rstrip("=")

    def open(self, value: str | None) -> Session | None:
        """The session a cookie holds, or None: forged, tampered, expired, signed out or its token refused."""
        if not value or len(value) > 4096:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            sealed = msgspec.msgpack.decode(self._aead.decrypt(raw[:12], raw[12:], _AAD), type=_Sealed)
        except (ValueError, binascii.Error, InvalidTag, msgspec.DecodeError):
            return None
        now = self._now()
        if sealed.exp <= now or sealed.sid in self._revoked:
            return None
        try:
            principal = self.principal(sealed.token)
        except ProblemError:
            return None
        return Session(sid=sealed.sid, token=sealed.token, principal=principal, expires=sealed.exp)

    def revoke(self, session: Session) -> None:
        now = self._now()
        self._revoked = {sid: exp for sid, exp in self._revoked.items() if exp > now}
        self._revoked[session.sid] = session.expires


def _token_expiry(token: str) -> int:
    # Verified already (verify_token); only its `exp` is read here.
    payload = token.split(".")[1]
    claims = msgspec.json.decode(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return int(claims["exp"])


def set_cookie(response: web.StreamResponse, value: str, session: Session, secure: bool, now: float) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=max(0, session.expires - int(now)),
        path="/",
        httponly=True,
        secure=secure,
        samesite="Strict",
    )


def clear_cookie(response: web.StreamResponse, secure: bool) -> None:
    response.del_cookie(COOKIE, path="/", secure=secure, httponly=True, samesite="Strict")


def served_over_tls(request: web.Request, settings: Settings) -> bool:
    return request.secure or settings.console_origin.startswith("https://")


def own_origin(request: web.Request, settings: Settings) -> str:
    if settings.console_origin:
        parts = urlsplit(settings.console_origin)
        return f"{parts.scheme}://{parts.netloc}"
    return f"{request.scheme}://{request.host}"


def cross_site(request: web.Request, settings: Settings) -> str | None:
    """Why a state-changing request is refused as cross-site, or None when it is the console's own."""
    if request.method in SAFE_METHODS:
        return None
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {fetch_site}"
    origin = request.headers.get("Origin")
    if origin is None:
        return "no Origin header"
    if origin != own_origin(request, settings):
        return "another origin"
    return None


def refused_cross_site(reason: str) -> ProblemError:
    return ProblemError(403, "Forbidden", f"cross-site request refused ({reason})", kind="cross-site")


def signed_out() -> ProblemError:
    return ProblemError(401, "Unauthorized", "sign in first (or again: the session ended)", kind="signed-out")


SESSIONS = web.AppKey("sessions", Sessions)
# Routes that need no session: the host's probes, the sign-in page and the static files.
PUBLIC = frozenset({"healthz", "livez", "readyz", "signin_page", "sign_in", "static"})


def authentication(settings: Settings) -> Middleware:
    """The console's middleware: the Origin check on every state-changing request, then the session.

    A page without a session is sent to sign in; an API call without one gets 401.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (reason := cross_site(request, settings)) is not None:
            log.info("cross_site_refused", path=request.path, reason=reason)
            raise refused_cross_site(reason)
        route = request.match_info.route
        if route.resource is None or (route.name or "") in PUBLIC:
            return await handler(request)
        session = request.app[SESSIONS].open(request.cookies.get(COOKIE))
        if session is None:
            if request.path.startswith("/api/"):
                raise signed_out()
            raise web.HTTPSeeOther("/signin")
        request[SESSION] = session
        request[PRINCIPAL] = session.principal
        return await handler(request)

    return middleware
