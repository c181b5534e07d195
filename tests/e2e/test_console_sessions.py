"""The console's sessions and refusals, personal data through its pages, and accessibility (axe-core)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from ops.servers import free_port
from ops.stack import Stack, load_secrets
from services.console.sessions import COOKIE, Session, Sessions
from shared.base.config import Settings
from shared.web.auth import Role
from tests.browser import chromium
from tests.browser.fixtures import browser_installed, console
from tests.browser.pages import (
    accessibility_violations,
    click,
    fill_evidence,
    session_cookie,
    signed_in,
    type_into,
    wait_for,
    wait_text,
)
from tests.e2e.client import Api

pytestmark = pytest.mark.e2e
__all__ = ["browser_installed", "console"]  # the browser tests' fixtures
GRID = "wenfeng-tianehu-01"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def status_of(
    http: aiohttp.ClientSession, method: str, url: str, cookie: str, headers: dict[str, str] | None = None
) -> int:
    sent = {"Cookie": f"{COOKIE}={cookie}", "Content-Type": "application/json", **(headers or {})}
    data = b'{"reason": "x"}' if method == "POST" else None
    async with http.request(method, url, headers=sent, data=data, allow_redirects=False) as r:
        return r.status


async def test_a_signed_out_browser_is_sent_to_sign_in_and_forged_or_expired_cookies_are_refused(
    api: Api, stack: Stack, console: str, http: aiohttp.ClientSession
) -> None:
    with chromium.browser() as driver:
        for page in ("/workbench", "/department", "/grid", "/"):
            driver.get(console + page)
            assert driver.current_url == f"{console}/signin", page
        wait_for(driver, "#token")
        chromium.screenshot(driver, "console-8-signin")
        type_into(driver, "#token", "not-a-token")
        click(driver, "#signin")
        wait_for(driver, ".status.error")
        assert driver.current_url == f"{console}/signin?error=invalid"

    real = await session_cookie(http, console, api.dispatcher())
    assert await status_of(http, "GET", f"{console}/api/me", real) == 200
    tampered = real[:-6] + ("A" if real[-6] != "A" else "B") + real[-5:]
    known = load_secrets(stack.root)
    sessions = Sessions(Settings(console_session_key=known.console_session_key, jwt_secret=known.jwt_secret))
    principal = sessions.principal(api.dispatcher())
    expired = sessions.seal(
        Session(sid="old", token=api.dispatcher(), principal=principal, expires=int(time.time()) - 1)
    )
    other_key = Sessions(Settings(console_session_key="A" * 43 + "="))
    foreign = other_key.seal(Session(sid="x", token=api.dispatcher(), principal=principal, expires=2**31))
    for refused in ("forged", tampered, expired, foreign, ""):
        assert await status_of(http, "GET", f"{console}/api/me", refused) == 401, refused
        assert await status_of(http, "GET", f"{console}/api/v1/dispatch/queue", refused) == 401
        assert await status_of(http, "GET", f"{console}/workbench", refused) == 303


async def test_a_cross_site_post_is_refused(api: Api, console: str, http: aiohttp.ClientSession) -> None:
    case_id = await api.report("bees_in_the_town_hall", grid=GRID)
    await api.wait_status(case_id, "awaiting_dispatch")
    cookie = await session_cookie(http, console, api.dispatcher())
    reject = f"{console}/api/v1/cases/{case_id}/reject"
    for headers in ({"Origin": "http://evil.example"}, {}, {"Origin": console, "Sec-Fetch-Site": "cross-site"}):
        assert await status_of(http, "POST", reject, cookie, headers=headers) == 403, headers
    assert await status_of(http, "POST", f"{console}/signout", cookie, headers={"Origin": "http://evil.example"}) == 403

    # A page on another origin (same site: only the Origin check stands in its way) posts a form.
    evil = web.Application()
    form = f"<form id=f method=post action='{reject}'><input name=reason value=x></form>"

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=f"<html><body>{form}</body></html>", content_type="text/html")

    evil.router.add_get("/", page)
    runner = web.AppRunner(evil)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    def visit_the_other_site() -> str:
        with signed_in(console, api.dispatcher()) as driver:
            driver.get(f"http://127.0.0.1:{port}/")
            driver.execute_script("document.getElementById('f').submit()")
            WebDriverWait(driver, 15).until(lambda d: d.current_url.startswith(console))
            chromium.screenshot(driver, "console-9-cross-site-refused")
            return str(driver.page_source)

    try:
        # In a thread: the other site is served by this test's event loop, which must keep running.
        assert "cross-site request refused" in await asyncio.to_thread(visit_the_other_site)
    finally:
        await runner.cleanup()
    assert (await api.case(case_id))["status"] == "awaiting_dispatch"  # nothing was rejected


async def test_a_clerk_forging_a_command_for_another_departments_task_gets_the_apis_answer(
    api: Api, console: str, http: aiohttp.ClientSession
) -> None:
    case_id = await api.report("blocked_drain", grid=GRID)
    [task] = await api.open_tasks(case_id, 1)
    assert task["department"] == "water"
    direct = await api.call("POST", "handling", f"/v1/tasks/{task['id']}/accept", token=api.handler("parks"), json={})
    cookie = await session_cookie(http, console, api.handler("parks"))
    headers = {"Cookie": f"{COOKIE}={cookie}", "Origin": console}
    async with http.post(f"{console}/api/v1/tasks/{task['id']}/accept", json={}, headers=headers) as r:
        assert (r.status, await r.json(content_type=None)) == (
            direct[0],
            direct[1] | {"request_id": r.headers["X-Request-ID"]},
        )
    assert r.status in (403, 404)
    assert (await api.case(case_id))["tasks"][0]["status"] == "dispatched"


async def test_sign_out_ends_the_session_and_its_cookie(api: Api, console: str, http: aiohttp.ClientSession) -> None:
    with signed_in(console, api.dispatcher()) as driver:
        cookie = driver.get_cookie(COOKIE)
        assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict" and "expiry" in cookie
        assert driver.execute_script("return document.cookie") == ""  # no script reads it
        click(driver, "#signout")
        wait_for(driver, ".status.ok")
        assert driver.current_url == f"{console}/signin?signed_out=1" and driver.get_cookie(COOKIE) is None
        driver.get(f"{console}/workbench")
        assert driver.current_url == f"{console}/signin"
    assert await status_of(http, "GET", f"{console}/api/me", cookie["value"]) == 401  # revoked, not just forgotten


async def test_a_reporter_is_masked_until_a_purpose_is_stated_and_the_read_is_recorded(api: Api, console: str) -> None:
    case_id = await api.report("bees_in_the_town_hall", grid=GRID, reporter={"name": "王小红", "phone": "13800001234"})
    with signed_in(console, api.dispatcher()) as driver:
        click(driver, f"#queue tr[data-case-id='{case_id}'] button[data-open]")
        wait_text(driver, "#reporter", "王** 138****1234")
        type_into(driver, "#purpose", "回访报告人核实位置")
        click(driver, "#unmask-form button")
        wait_text(driver, "#reporter", "王小红 13800001234")
    status, reads = await api.call(
        "GET", "intake", f"/v1/pii-reads?case_id={case_id}", token=api.token(Role.SUPERVISOR)
    )
    assert status == 200 and [(r["actor"], r["purpose"]) for r in reads["items"]] == [
        ("dispatcher:dispatcher-1", "回访报告人核实位置")
    ]


async def test_the_three_pages_have_no_serious_accessibility_violations(api: Api, console: str) -> None:
    case_id = await api.report("blocked_drain", grid=GRID)
    [task] = await api.open_tasks(case_id, 1)
    with signed_in(console, api.dispatcher()) as driver:
        type_into(driver, "#s-id", case_id)
        click(driver, "#search-submit")
        click(driver, f"#results tr[data-case-id='{case_id}'] button[data-open]")
        wait_for(driver, "#timeline li")
        assert accessibility_violations(driver) == []
    with signed_in(console, api.handler("water")) as driver:
        click(driver, f"#tasks tr[data-task-id='{task['id']}'] button[data-open]")
        wait_for(driver, "#accept")
        assert accessibility_violations(driver) == []
    await api.work(task)
    with signed_in(console, api.grid_worker(GRID), phone=True) as driver:
        click(driver, f"button[data-case-id='{case_id}']", timeout=30)
        fill_evidence(driver, "check")
        assert accessibility_violations(driver) == []
        # Keyboard only, from a fresh page: Tab through the header to the case, Enter opens it, Tab
        # reaches its evidence fields and the pass button.
        driver.get(f"{console}/grid")
        wait_for(driver, f"button[data-case-id='{case_id}']")
        reached = [tab(driver) for _ in range(6)]
        while driver.switch_to.active_element.get_attribute("data-case-id") != case_id and len(reached) < 40:
            reached.append(tab(driver))
        assert reached[:2] == ["lang", "signout"], reached
        ActionChains(driver).send_keys(Keys.ENTER).perform()
        wait_for(driver, "#check-url")
        while reached[-1] != "pass" and len(reached) < 80:
            reached.append(tab(driver))
        assert reached.index("check-url") < reached.index("check-sha256") < reached.index("pass"), reached
        chromium.screenshot(driver, "console-10-grid-keyboard")


def tab(driver: WebDriver) -> str:
    ActionChains(driver).send_keys(Keys.TAB).perform()
    return str(driver.switch_to.active_element.get_attribute("id") or "")
