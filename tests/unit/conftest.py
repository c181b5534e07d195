"""The data the pure logic is given: the shipped routing policy and working calendar."""

from __future__ import annotations

import pytest

from shared.domain.calendar import WorkingCalendar, load_calendar
from shared.domain.rules import Policy, load_policy


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


@pytest.fixture(scope="module")
def calendar() -> WorkingCalendar:
    return load_calendar()
