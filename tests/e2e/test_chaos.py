"""Chaos under load, CI-sized: 500 cases through the whole loop while every kind of process is
killed, one is paused, nats-server and PostgreSQL crash, and poison is published (tests/chaos).

`make chaos CASES=10000` is the soak run of the same thing.
"""

from __future__ import annotations

import pytest

from ops.stack import SERVICES
from tests.chaos.__main__ import tables
from tests.chaos.runner import Config, run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


async def test_nothing_is_lost_or_done_twice_under_load_and_faults() -> None:
    config = Config(cases=500, rate=5.0, seed=5, poisons=5, late=8)
    result = await run(config, say=lambda *_: None)
    from rich.console import Console

    console = Console(width=160)
    for table in tables(result, config):
        console.print(table)  # shown by pytest -ra on failure, and with -s
    kinds = {(f.kind, f.target) for f in result.faults}
    assert {("kill", name) for name in SERVICES} <= kinds, kinds
    assert {k for k, _ in kinds} >= {"kill", "pause", "nats", "postgres", "poison"}
    assert not [f for f in result.faults if f.error], [f for f in result.faults if f.error]
    # A report whose outcome stayed unknown and was given up on may or may not have a case.
    assert result.figures["reports ok"] >= 475 and result.figures["cases"] >= result.figures["reports ok"]
    failed = [f"{v.name}: {v.found}" for v in result.verdicts if not v.ok]
    assert not failed, f"{failed}; the stack's folder: {result.root or 'removed (CASELOOP_KEEP=1 keeps it)'}"
