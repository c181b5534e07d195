"""intake's composition root: routes, the access table, the consumer."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.intake import api, handlers, history, privacy
from shared.base.config import Settings
from shared.personal.pii import Vault
from shared.runtime.service import SETTINGS, ServiceSpec, consumer_spec
from shared.web.auth import READERS, Role
from shared.web.openapi import op, serve

# Route name -> the roles that may call it. Absent: nobody. Object rules live in shared/access.py.
ACCESS: dict[str, frozenset[Role]] = {
    "post_report": frozenset({Role.REPORTER_BACKEND, Role.GRID_WORKER, Role.DISPATCHER}),
    "get_case": READERS,
    "get_history": READERS,
    "list_cases": READERS,
    "cancel_case": frozenset({Role.REPORTER_BACKEND, Role.DISPATCHER}),
    "rate_case": frozenset({Role.REPORTER_BACKEND}),
    "list_pii_reads": frozenset({Role.AUDITOR, Role.SUPERVISOR}),
}

# fmt: off
IDEMPOTENCY_KEY = {"Idempotency-Key": {"type": "string", "maxLength": 255}}
OPERATIONS = [
    op("POST", "/v1/reports", "post_report", "Report a case (a repeated sensor alarm merges: 202)", body=api.ReportIn,
       responses={201: api.ReportAccepted, 202: api.ReportAccepted}, headers=IDEMPOTENCY_KEY, errors=(503,)),
    op("GET", "/v1/cases", "list_cases", "The cases the caller may see", query=api.CasesQuery,
       responses={200: api.CasePage}),
    op("GET", "/v1/cases/{id}", "get_case", "A case, now or as of a version or a moment", query=api.CaseQuery,
       responses={200: api.CaseOut}),
    op("GET", "/v1/cases/{id}/history", "get_history", "A case's events", responses={200: api.History}),
    op("POST", "/v1/cases/{id}/cancel", "cancel_case", "Withdraw a case", body=api.CancelIn,
       responses={200: api.CommandDone}, errors=(409, 503)),
    op("POST", "/v1/cases/{id}/rating", "rate_case", "Rate a closed case", body=api.RatingIn,
       responses={200: api.CommandDone}, errors=(409, 503)),
    op("GET", "/v1/pii-reads", "list_pii_reads", "Who read reporters' personal data unmasked, and why",
       query=privacy.PiiReadsQuery, responses={200: privacy.PiiReadPage}),
]
# fmt: on


def routes(app: web.Application) -> None:
    serve(app, "intake", OPERATIONS)
    app.router.add_post("/v1/reports", handlers.post_report, name="post_report")
    app.router.add_get("/v1/cases", handlers.list_cases, name="list_cases")
    app.router.add_get("/v1/cases/{id}", handlers.get_case, name="get_case")
    app.router.add_get("/v1/cases/{id}/history", history.get_history, name="get_history")
    app.router.add_post("/v1/cases/{id}/cancel", handlers.cancel_case, name="cancel_case")
    app.router.add_post("/v1/cases/{id}/rating", handlers.rate_case, name="rate_case")
    app.router.add_get("/v1/pii-reads", privacy.list_pii_reads, name="list_pii_reads")
    app.cleanup_ctx.append(_vault)


async def _vault(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[handlers.VAULT] = Vault(settings.pii_key, settings.blind_index_key)
    yield


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="intake",
        access=ACCESS,
        routes=routes,
        requires=("database_url", "jwt_secret", "pii_key", "blind_index_key"),
        consumers=[(consumer_spec(settings, handlers.CONSUMER, "*"), lambda app: handlers.on_case_event)],
    )
