"""`caseloop demo` against the running stack: every case it posts ends closed."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ops.demo import run_demo, summary
from ops.devsetup import load_dev_backend
from ops.stack import SERVICES, Stack, load_secrets
from shared.domain.rules import load_policy
from shared.store.db import AUDITOR_ROLE, with_credentials
from tests.conftest import AUDITOR_PASSWORD
from tests.e2e.plaintext import places_holding

pytestmark = pytest.mark.e2e
CASELOOP = str(Path(sys.executable).parent / "caseloop")
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


async def test_the_demo_closes_every_case_through_returns_failed_checks_and_hand_dispatch(stack: Stack) -> None:
    random.seed(20261126)
    policy = load_policy()
    urls = {name: stack.process(name).url for name in SERVICES}
    categories = [c for c in policy.categories if c != "background_check"]
    secret = load_secrets(stack.root).jwt_secret
    backend_key = load_dev_backend(stack.root)
    outcomes = await run_demo(urls, secret, 34, categories, list(policy.grids), 240, backend_key=backend_key)

    assert summary(outcomes) == {"closed": 34}
    phones = [o.reporter_phone for o in outcomes]
    assert len(phones) == 34 and all(phones)
    assert await places_holding(stack, phones) == []  # logs, NATS, events, every read model
    assert any(o.returns for o in outcomes)
    assert any(o.failed_verifications and o.rounds == 2 for o in outcomes)
    assert any(o.dispatched_by_hand for o in outcomes)


def test_the_demo_command_prints_whole_case_ids_that_audit_history_takes(stack: Stack, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CASELOOP_", "JWT_")) and "DATABASE_URL" not in k}
    env["COLUMNS"] = "80"  # a narrow terminal: the ids are not cut, wrapped or elided all the same
    demo = subprocess.run(
        [CASELOOP, "demo", "--root", str(stack.root), "--cases", "3", "--timeout", "180"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    ids = UUID.findall(demo.stdout)
    assert len(ids) == len(set(ids)) == 3, demo.stdout

    auditor = with_credentials(stack.env["ADMIN_DATABASE_URL"], AUDITOR_ROLE, AUDITOR_PASSWORD)
    for case_id in ids:
        history = subprocess.run(
            [CASELOOP, "audit", "history", case_id, "--format", "json"],
            cwd=tmp_path,
            env={**env, "AUDITOR_DATABASE_URL": auditor},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert history.returncode == 0, history.stderr
        line = json.loads(history.stdout)
        assert (line["case_id"], line["status"]) == (case_id, "closed")
