"""intake's history view: every event of a case with its metadata and hash, the reporter as the rule says.

A reporter's sealed name and phone appear as the one personal-data rule decides, exactly as for
the case itself (shared.web.access.personal_data_read): masked (`张*`, `138****1234`) unless the
caller is the backend that reported the case, or is allowed personal data and states a purpose
(X-Purpose); each unmasked read is recorded. Once the reporter's key is erased they appear as erased.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from services.intake import api, privacy
from services.intake.handlers import VAULT, _readable_case
from shared.audit.timeline import event_time
from shared.domain.case import Case
from shared.domain.events import SealedReporter
from shared.web.auth import Principal
from shared.web.http import json_response, uuid_param


async def get_history(request: web.Request) -> web.Response:
    principal, case, rows = await _readable_case(request)
    reporters: dict[str, dict[str, Any]] = {}
    entries = []
    for r in rows:
        data: dict[str, Any] = msgspec.json.decode(r.data)
        sealed = data.get("reporter")
        if isinstance(sealed, dict):
            key = str(sealed.get("ref"))
            if key not in reporters:
                reporters[key] = await _reporter(request, principal, case, sealed)
            data["reporter"] = reporters[key]
        entries.append(
            api.HistoryEntry(
                position=r.position,
                version=r.version,
                type=r.type,
                event_id=r.event_id,
                happened_at=event_time(r.event()),
                recorded_at=r.recorded_at,
                actor=r.metadata.actor,
                correlation_id=r.metadata.correlation_id,
                causation_id=r.metadata.causation_id,
                data=data,
                hash=r.hash.hex(),
            )
        )
    return json_response(api.History(case_id=uuid_param(request), version=rows[-1].version, events=entries))


async def _reporter(request: web.Request, principal: Principal, case: Case, sealed: dict[str, Any]) -> dict[str, Any]:
    try:
        reporter = msgspec.convert(sealed, SealedReporter)
    except msgspec.ValidationError:
        return {"ref": sealed.get("ref"), "sealed": True}
    shown = await privacy.reporter_view(request, principal, case, request.app[VAULT], reporter)
    if shown.reporter is None:
        return {"ref": str(reporter.ref), "erased": True}
    return {
        "ref": str(reporter.ref),
        "name": shown.reporter.name,
        "phone": shown.reporter.phone,
        "masked": shown.masked,
    }
