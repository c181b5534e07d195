"""Driving the console's pages as a person would: sign in, wait for what shows, check accessibility."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import chromium

AXE = Path(__file__).parent / "axe" / "axe.min.js"
SERIOUS = frozenset({"serious", "critical"})
# A live reload may replace an element between finding it and reading it: the wait tries again.
RERENDERED = (StaleElementReferenceException,)
SHA = "ab" * 32  # an evidence photo's SHA-256, as the APIs take it


@contextlib.contextmanager
def signed_in(console: str, token: str, *, phone: bool = False) -> Iterator[WebDriver]:
    """A fresh browser (a 375×812 phone if asked), signed in with `token`."""
    size = chromium.PHONE if phone else chromium.DESKTOP
    with chromium.browser(size, mobile=phone) as driver:
        sign_in(driver, console, token)
        yield driver


def sign_in(driver: WebDriver, console: str, token: str) -> None:
    driver.get(f"{console}/signin")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "signin").click()
    wait_for(driver, "#live-status[data-state='connected']")


def wait_for(driver: WebDriver, css: str, timeout: float = 15) -> WebElement:
    """The first element matching `css` once it is there (WebDriverWait polls; no fixed sleep)."""
    found: WebElement = WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=RERENDERED).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, css)), message=f"nothing matched {css!r} in {timeout}s"
    )
    return found


def wait_gone(driver: WebDriver, css: str, timeout: float = 15) -> None:
    WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=RERENDERED).until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, css), message=f"{css!r} still there after {timeout}s"
    )


def click(driver: WebDriver, css: str, timeout: float = 15) -> None:
    element = WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=RERENDERED).until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, css)), message=f"{css!r} not clickable in {timeout}s"
    )
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def type_into(driver: WebDriver, css: str, text: str) -> None:
    element = wait_for(driver, css)
    element.clear()
    element.send_keys(text)


def fill_evidence(driver: WebDriver, prefix: str) -> None:
    type_into(driver, f"#{prefix}-url", f"https://files.example/{prefix}.jpg")
    type_into(driver, f"#{prefix}-sha256", SHA)


def wait_text(driver: WebDriver, css: str, text: str, timeout: float = 15) -> None:
    WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=RERENDERED).until(
        lambda d: any(e.text == text for e in d.find_elements(By.CSS_SELECTOR, css)),
        message=f"{css!r} never read {text!r}",
    )


def texts(driver: WebDriver, css: str) -> list[str]:
    """The text of every match, read in one go in the page (a live reload cannot pull one away midway)."""
    found: list[str] = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText)", css
    )
    return found


def attributes(driver: WebDriver, css: str, name: str) -> list[str]:
    found: list[str] = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.getAttribute(arguments[1]) || '')", css, name
    )
    return found


def accessibility_violations(driver: WebDriver) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it stands (axe is injected here only)."""
    driver.execute_script(AXE.read_text())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(JSON.stringify(r.violations)));"
    )
    found: list[dict[str, Any]] = json.loads(result)
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in found
        if v.get("impact") in SERIOUS
    ]


async def session_cookie(http: aiohttp.ClientSession, console: str, token: str) -> str:
    """A session cookie's value, signed in as a browser would (a same-origin form post)."""
    async with http.post(
        f"{console}/signin", data={"token": token}, headers={"Origin": console}, allow_redirects=False
    ) as response:
        assert response.status == 303, await response.text()
        return response.cookies["caseloop_session"].value
