"""The data the pure logic is given: the shipped routing policy and working calendar."""

from __future__ import annotations

import pytest

from services.routing.rules import Policy, load_policy
from shared.domain.calendar import WorkingCalendar, load_calendar


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


@pytest.fixture(scope="module")
def calendar() -> WorkingCalendar:
    return load_calendar()
