"""The console's one way into the system: each call forwarded to the API that owns it, with the
signed-in person's own token, and the API's answer handed back as it is (status, problem+json).

No second path to write and no second authorization table: what a person may see or do is what
the APIs answer them. Only the operations listed in FORWARDED are reachable through the console.
X-Purpose (why a reporter is shown unmasked) is passed on only when the person states one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial
from typing import Any
from urllib.parse import quote, unquote, urlencode
from uuid import UUID

import aiohttp
import msgspec
import structlog
from aiohttp import web

from services.console.live import HUB
from services.console.sessions import SESSION
from shared.runtime.service import SETTINGS
from shared.web.http import ProblemError, json_response

log = structlog.get_logger()

PURPOSE = "X-Purpose"
BOARD_MAX = 50  # tasks on the warning and overdue board, the latest warned first
OPEN = frozenset({"dispatched", "accepted"})
_PASSED_BACK = ("Content-Type", "Retry-After", "RateLimit-Policy", "RateLimit")


class Forward(msgspec.Struct, frozen=True):
    method: str
    path: str  # the API's own path; the console serves it under /api
    service: str
    name: str


# fmt: off
FORWARDED = (
    Forward("GET", "/v1/cases", "intake", "list_cases"),
    Forward("GET", "/v1/cases/{id}", "intake", "get_case"),
    Forward("GET", "/v1/cases/{id}/history", "intake", "get_history"),
    Forward("GET", "/v1/dispatch/queue", "routing", "get_queue"),
    Forward("POST", "/v1/cases/{id}/dispatch", "routing", "dispatch_case"),
    Forward("POST", "/v1/cases/{id}/reject", "routing", "reject_case"),
    Forward("POST", "/v1/cases/{id}/merge", "routing", "merge_case"),
    Forward("POST", "/v1/tasks/{id}/reassign", "routing", "reassign_task"),
    Forward("GET", "/v1/tasks", "handling", "list_tasks"),
    Forward("GET", "/v1/tasks/{id}", "handling", "get_task"),
    Forward("POST", "/v1/tasks/{id}/accept", "handling", "accept_task"),
    Forward("POST", "/v1/tasks/{id}/notes", "handling", "note_task"),
    Forward("POST", "/v1/tasks/{id}/complete", "handling", "complete_task"),
    Forward("POST", "/v1/tasks/{id}/return", "handling", "return_task"),
    Forward("GET", "/v1/verifications", "verification", "list_verifications"),
    Forward("GET", "/v1/verifications/{id}", "verification", "get_verification"),
    Forward("POST", "/v1/verifications/{id}/pass", "verification", "pass_verification"),
    Forward("POST", "/v1/verifications/{id}/fail", "verification", "fail_verification"),
)
# fmt: on

CLIENT = web.AppKey("client", aiohttp.ClientSession)
UPSTREAMS = web.AppKey("upstreams", dict[str, str])


async def client(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[UPSTREAMS] = {
        "intake": settings.intake_url.rstrip("/"),
        "routing": settings.routing_url.rstrip("/"),
        "handling": settings.handling_url.rstrip("/"),
        "verification": settings.verification_url.rstrip("/"),
    }
    timeout = aiohttp.ClientTimeout(total=15, connect=3)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=200)) as session:
        app[CLIENT] = session
        yield


def add_routes(app: web.Application) -> None:
    for entry in FORWARDED:
        app.router.add_route(entry.method, f"/api{entry.path}", partial(forward, entry=entry), name=entry.name)


async def call(
    request: web.Request,
    method: str,
    service: str,
    path: str,
    *,
    body: bytes | None = None,
    content_type: str | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    """One call to an API as the signed-in person: (status, body, the headers passed back)."""
    session = request[SESSION]
    headers = {"Authorization": f"Bearer {session.token}"}
    if request_id := structlog.contextvars.get_contextvars().get("request_id"):
        headers["X-Request-ID"] = str(request_id)  # one id across the console and the API
    if content_type:
        headers["Content-Type"] = content_type
    # The person stated why (the page percent-encodes it: browsers send Latin-1 headers only);
    # the API decides what it shows and records the read.
    if purpose := unquote(request.headers.get(PURPOSE, "")).strip():
        headers[PURPOSE] = purpose
    url = request.app[UPSTREAMS][service] + path
    try:
        async with request.app[CLIENT].request(
            method, url, data=body, headers=headers, allow_redirects=False
        ) as upstream:
            data = await upstream.read()
            kept = {h: upstream.headers[h] for h in _PASSED_BACK if h in upstream.headers}
            return upstream.status, data, kept
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("upstream_unavailable", service=service, error=type(exc).__name__)
        raise ProblemError(
            503, "Unavailable", f"{service} is out of reach; retry", headers={"Retry-After": "1"}, kind="unavailable"
        ) from None


async def forward(request: web.Request, *, entry: Forward) -> web.Response:
    # The API's path is built from the route's own template: nothing of the raw path passes through.
    path = entry.path.format(**{k: quote(v, safe="") for k, v in request.match_info.items()})
    if request.query:
        path += "?" + urlencode(list(request.query.items()))
    body = await request.read() if entry.method == "POST" else None
    if body is not None and request.content_type != "application/json":
        # A form or text body is what a cross-site page could send without asking: only JSON passes.
        raise ProblemError(415, "Unsupported media type", "send application/json", kind="media-type")
    status, data, headers = await call(
        request, entry.method, entry.service, path, body=body, content_type="application/json" if body else None
    )
    return web.Response(status=status, body=data, headers=headers)


async def board(request: web.Request) -> web.Response:
    """GET /api/board: the open tasks that were warned, overdue or escalated, as the task API shows
    them to this person (a task it does not show them is left out; one that has ended is forgotten)."""
    hub = request.app[HUB]
    candidates = [t for t, _ in sorted(hub.deadlines.items(), key=lambda kv: -kv[1])[:BOARD_MAX]]
    gate = asyncio.Semaphore(8)

    async def one(task_id: UUID) -> tuple[UUID, int, Any]:
        async with gate:
            status, data, _ = await call(request, "GET", "handling", f"/v1/tasks/{task_id}")
        return task_id, status, msgspec.json.decode(data) if status == 200 else None

    items = []
    for task_id, status, body in await asyncio.gather(*(one(t) for t in candidates)):
        if status != 200:
            continue  # not this person's to see (404), or the API is busy: the next load asks again
        if body["task"]["status"] in OPEN:
            items.append(body)
        else:
            hub.deadlines.pop(task_id, None)  # completed, returned, replaced or withdrawn: for good
    return json_response({"items": items})
