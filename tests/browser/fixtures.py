"""Fixtures of the browser tests: a browser must be installed (never a silent skip), the console's URL."""

from __future__ import annotations

import pytest

from ops.stack import Stack
from tests.browser import chromium


@pytest.fixture(scope="module", autouse=True)
def browser_installed() -> None:
    if lacking := chromium.missing():
        pytest.fail(f"the browser tests need {', '.join(lacking)}: run {chromium.INSTALL}", pytrace=False)


@pytest.fixture
def console(stack: Stack) -> str:
    return stack.process("console").url
