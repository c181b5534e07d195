"""A 500 inside the authenticated request path of every service writes no secret to any log.

The services run with the test-only fault hook on (TEST_FAULT_CANARY): a request carrying
`X-Test-Fault: 500` fails after authentication, in a frame that holds the canary and the JWT
secret as local variables. The logs must show the failure and none of the secrets.
"""

from __future__ import annotations

import json

import pytest

from ops.stack import Stack
from shared.web.auth import Role
from tests.e2e.client import Api
from tests.eventually import eventually
from tests.secrets_scan import secrets_in_logs, stack_secrets

pytestmark = pytest.mark.e2e

# One authenticated route per service, with a role it admits.
FAULTS = {
    "intake": ("/v1/cases", Role.DISPATCHER),
    "routing": ("/v1/dispatch/queue", Role.DISPATCHER),
    "handling": ("/v1/tasks", Role.SUPERVISOR),
    "verification": ("/v1/verifications", Role.SUPERVISOR),
}


async def test_a_500_in_every_service_logs_no_secret(stack: Stack, api: Api) -> None:
    tokens = []
    for service, (path, role) in FAULTS.items():
        token = api.token(role, sub=f"{role}-secrets")
        tokens.append(token)
        status, body = await api.call("GET", service, path, token=token, headers={"X-Test-Fault": "500"})
        assert status == 500, (service, status, body)
        assert body["type"].endswith("/internal")
        # The same call without the header answers as usual: the hook failed it, nothing else.
        status, _ = await api.call("GET", service, path, token=token)
        assert status == 200, service

    def failures_logged() -> dict[str, dict[str, object]]:
        found = {}
        for service in FAULTS:
            for line in (stack.root / "logs" / f"{service}.log").read_text(errors="replace").splitlines():
                if '"request_failed"' in line:
                    found[service] = json.loads(line)
        assert set(found) == set(FAULTS), found
        return found

    logged = await eventually(failures_logged)
    for service, line in logged.items():
        # The traceback is there, as structured frames, and no frame carries its locals.
        frames = [frame for exc in line["exception"] for frame in exc["frames"]]  # type: ignore[attr-defined]
        assert any(frame["name"] == "fault" for frame in frames), service
        assert all("locals" not in frame for frame in frames), service

    needles = stack_secrets(stack, *tokens)
    assert stack.env["TEST_FAULT_CANARY"] in needles and stack.env["JWT_SECRET"] in needles
    assert secrets_in_logs(stack, needles) == []
