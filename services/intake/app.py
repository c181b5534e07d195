"""intake's composition root: the routes with who may call them, the vault, the consumer."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.intake import api, handlers, history, privacy
from shared.base.config import Settings
from shared.personal.pii import Vault
from shared.runtime.service import SETTINGS, ServiceSpec, Subscription, consumer_spec, from_app
from shared.web.auth import READERS, Role
from shared.web.openapi import op

# Each route once: method, path, route name, handler, what the document says, and `allow`, the
# roles that may call it (the auth middleware's table). Object rules live in shared/web/access.py.
# fmt: off
IDEMPOTENCY_KEY = {"Idempotency-Key": {"type": "string", "maxLength": 255}}
OPERATIONS = [
    op("POST", "/v1/reports", "post_report", handlers.post_report,
       "Report a case (a repeated sensor alarm merges: 202)", body=api.ReportIn,
       responses={201: api.ReportAccepted, 202: api.ReportAccepted}, headers=IDEMPOTENCY_KEY, errors=(503,),
       allow=frozenset({Role.REPORTER_BACKEND, Role.GRID_WORKER, Role.DISPATCHER})),
    op("GET", "/v1/cases", "list_cases", handlers.list_cases, "The cases the caller may see", query=api.CasesQuery,
       responses={200: api.CasePage}, allow=READERS),
    op("GET", "/v1/cases/{id}", "get_case", handlers.get_case, "A case, now or as of a version or a moment",
       query=api.CaseQuery, responses={200: api.CaseOut}, allow=READERS),
    op("GET", "/v1/cases/{id}/history", "get_history", history.get_history, "A case's events",
       responses={200: api.History}, allow=READERS),
    op("POST", "/v1/cases/{id}/cancel", "cancel_case", handlers.cancel_case, "Withdraw a case", body=api.CancelIn,
       responses={200: api.CommandDone}, errors=(409, 503), allow=frozenset({Role.REPORTER_BACKEND, Role.DISPATCHER})),
    op("POST", "/v1/cases/{id}/rating", "rate_case", handlers.rate_case, "Rate a closed case", body=api.RatingIn,
       responses={200: api.CommandDone}, errors=(409, 503), allow=frozenset({Role.REPORTER_BACKEND})),
    op("GET", "/v1/pii-reads", "list_pii_reads", privacy.list_pii_reads,
       "Who read reporters' personal data unmasked, and why", query=privacy.PiiReadsQuery,
       responses={200: privacy.PiiReadPage}, allow=frozenset({Role.AUDITOR, Role.SUPERVISOR})),
]
# fmt: on


async def _vault(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[handlers.VAULT] = Vault(settings.pii_key, settings.blind_index_key)
    yield


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="intake",
        operations=OPERATIONS,
        contexts=[_vault],
        requires=("database_url", "jwt_secret", "pii_key", "blind_index_key"),
        consumers=[Subscription(consumer_spec(settings, handlers.CONSUMER, "*"), from_app(handlers.on_case_event))],
    )
