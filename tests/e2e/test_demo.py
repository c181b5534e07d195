"""`caseloop demo` against the running stack: every case it posts ends closed."""

from __future__ import annotations

import random

import pytest

from services.routing.rules import load_policy
from shared.demo import run_demo, summary
from shared.devsetup import load_dev_backend
from shared.stack import SERVICES, Stack, load_secrets
from tests.e2e.plaintext import places_holding

pytestmark = pytest.mark.e2e


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
