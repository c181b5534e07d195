"""The console's pages and its own small answers: sign-in and sign-out, who is signed in, the names
of categories, departments, streets and grids (the routing policy's public data)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from services.console.sessions import (
    SESSION,
    SESSIONS,
    SignInRefused,
    clear_cookie,
    served_over_tls,
    set_cookie,
)
from shared.runtime.service import SETTINGS
from shared.web.auth import Role
from shared.web.http import json_response
from shared.web.ratelimit import FailedAuthentications

log = structlog.get_logger()

STATIC = Path(__file__).parent / "static"
# Each role's page; the command centre's roles share the workbench (what they may do there is
# what the APIs let them do).
HOME = {
    Role.DISPATCHER: "/workbench",
    Role.SUPERVISOR: "/workbench",
    Role.AUDITOR: "/workbench",
    Role.HANDLER: "/department",
    Role.GRID_WORKER: "/grid",
}
PAGES = {"/workbench": "workbench.html", "/department": "department.html", "/grid": "grid.html"}
SIGN_IN_FAILURES = web.AppKey("sign_in_failures", FailedAuthentications)
CATALOG = web.AppKey("catalog", bytes)
# No script, style or connection from anywhere but the console; no framing; no referrer to other sites.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make browsers send `Origin: null`
    "X-Frame-Options": "DENY",
}


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/") or request.path in PAGES:
        response.headers.setdefault("Cache-Control", "no-store")


def _file(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC / name, headers={"Content-Type": "text/html; charset=utf-8"})


async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther(HOME[request[SESSION].principal.role])


async def page(request: web.Request) -> web.StreamResponse:
    home = HOME[request[SESSION].principal.role]
    if request.path not in PAGES or PAGES[request.path] != PAGES.get(home):
        raise web.HTTPSeeOther(home)  # another role's page: this person's own instead
    return _file(PAGES[request.path])


async def signin_page(request: web.Request) -> web.StreamResponse:
    return _file("signin.html")


async def sign_in(request: web.Request) -> web.StreamResponse:
    """POST /signin (a form): the staff JWT for a session cookie, then the person's page."""
    failures = request.app[SIGN_IN_FAILURES]
    address = request.remote or ""
    failures.check(address)
    form = await request.post()
    token = str(form.get("token", ""))
    sessions = request.app[SESSIONS]
    try:
        value, session = sessions.sign_in(token)
    except SignInRefused as exc:
        failures.failed(address)
        log.info("sign_in_refused", reason=exc.reason)
        raise web.HTTPSeeOther(f"/signin?error={exc.reason}") from None
    response = web.HTTPSeeOther(HOME[session.principal.role])
    set_cookie(response, value, session, served_over_tls(request, request.app[SETTINGS]), time.time())
    log.info("signed_in", actor=session.principal.actor)
    raise response


async def sign_out(request: web.Request) -> web.StreamResponse:
    session = request[SESSION]
    request.app[SESSIONS].revoke(session)
    response = web.HTTPSeeOther("/signin?signed_out=1")
    clear_cookie(response, served_over_tls(request, request.app[SETTINGS]))
    log.info("signed_out", actor=session.principal.actor)
    raise response


async def me(request: web.Request) -> web.Response:
    session = request[SESSION]
    principal = session.principal
    body: dict[str, Any] = {
        "sub": principal.sub,
        "role": str(principal.role),
        "department": principal.department,
        "grids": list(principal.grids),
        "expires": session.expires,
        "home": HOME[principal.role],
    }
    return json_response(body)


def catalog_of(rules_path: str) -> dict[str, Any]:
    from shared.domain.rules import load_policy  # the policy is domain data: every service may read it

    policy = load_policy(rules_path or None)
    return {
        "version": policy.version,
        "categories": {code: {"zh": c.zh, "en": c.en} for code, c in sorted(policy.categories.items())},
        "departments": dict(sorted(policy.departments.items())),
        "streets": dict(policy.streets),
        "grids": dict(sorted(policy.grids.items())),
    }


async def catalog(request: web.Request) -> web.Response:
    return web.Response(body=request.app[CATALOG], content_type="application/json")
