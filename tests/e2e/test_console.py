"""The console's pages in a real browser (headless Chromium) against every service as its own process:
the whole loop through the pages, live updates and their resumption, and the live stream's scope."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import msgspec
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from ops.stack import Stack
from tests.browser import chromium
from tests.browser.fixtures import browser_installed, console
from tests.browser.pages import (
    attributes,
    click,
    fill_evidence,
    session_cookie,
    signed_in,
    texts,
    type_into,
    wait_for,
    wait_gone,
)
from tests.e2e.client import Api
from tests.eventually import eventually

pytestmark = pytest.mark.e2e
__all__ = ["browser_installed", "console"]  # the browser tests' fixtures
GRID = "wenfeng-tianehu-01"
SHANGHAI = ZoneInfo("Asia/Shanghai")


async def test_the_whole_loop_through_the_pages(api: Api, stack: Stack, console: str) -> None:
    case_id = await api.report("bees_in_the_town_hall", grid=GRID, description="市政府大楼屋檐下有蜂窝")
    with signed_in(console, api.dispatcher()) as dispatcher:
        # The dispatcher finds the case in the manual queue and dispatches it to parks.
        click(dispatcher, f"#queue tr[data-case-id='{case_id}'] button[data-open]")
        wait_for(dispatcher, "#case-status[data-status='awaiting_dispatch']")
        Select(dispatcher.find_element(By.ID, "dispatch-departments")).select_by_value("parks")
        chromium.screenshot(dispatcher, "console-1-workbench-queue")
        click(dispatcher, "#dispatch")
        wait_for(dispatcher, "#case-status[data-status='dispatched']")

        # The parks clerk accepts the task and completes it with evidence.
        with signed_in(console, api.handler("parks")) as clerk:
            click(clerk, f"#tasks tr[data-case-id='{case_id}'] button[data-open]")
            click(clerk, "#accept")
            wait_for(clerk, "#task-status[data-status='accepted']")
            type_into(clerk, "#result", "蜂窝已由专业人员摘除")
            fill_evidence(clerk, "done")
            chromium.screenshot(clerk, "console-2-department-task")
            click(clerk, "#complete")
            wait_for(clerk, "#task-status[data-status='completed']")

        # The grid worker passes the verification on a 375×812 phone.
        with signed_in(console, api.grid_worker(GRID), phone=True) as worker:
            assert worker.execute_script("return [window.innerWidth, window.innerHeight]") == [375, 812]
            click(worker, f"button[data-case-id='{case_id}']", timeout=30)
            fill_evidence(worker, "check")
            type_into(worker, "#verify-note", "现场已无蜂窝")
            chromium.screenshot(worker, "console-3-grid-phone")
            click(worker, "#pass")
            wait_for(worker, ".status.ok")
            assert worker.execute_script("return document.documentElement.scrollWidth") <= 375  # no sideways scroll

        # Back on the workbench the case shows closed, with its whole timeline.
        await api.wait_status(case_id, "closed")
        # Found by street, status and the day it was reported (the command centre's calendar) ...
        today = datetime.now(SHANGHAI).strftime("%Y-%m-%d")
        listed = f"/v1/cases?street=wenfeng&status=closed&reported_from={today}&reported_to={today}&page_size=100"

        async def in_the_list() -> bool:  # the case list (a read model) catches up with the log
            _, found = await api.call("GET", "intake", listed, token=api.dispatcher())
            return case_id in [c["id"] for c in found["items"]]

        await eventually(in_the_list)
        Select(dispatcher.find_element(By.ID, "s-street")).select_by_value("wenfeng")
        Select(dispatcher.find_element(By.ID, "s-status")).select_by_value("closed")
        dispatcher.execute_script("arguments[0].value = arguments[1]", dispatcher.find_element(By.ID, "s-date"), today)
        click(dispatcher, "#search-submit")
        wait_for(dispatcher, f"#results tr[data-case-id='{case_id}']", timeout=30)
        # ... and by its id.
        type_into(dispatcher, "#s-id", case_id)
        click(dispatcher, "#search-submit")
        click(dispatcher, f"#results tr[data-case-id='{case_id}'] button[data-open]")
        wait_for(dispatcher, "#case-status[data-status='closed']", timeout=30)
        history = [e["type"] for e in await api.history(case_id)]
        wait_for(dispatcher, f"#timeline li:nth-child({len(history)})")
        assert attributes(dispatcher, "#timeline li", "data-type") == history
        assert history[-1] == "CaseClosed" and "TaskCompleted" in history and "VerificationPassed" in history
        assert "files.example/done.jpg" in dispatcher.find_element(By.ID, "tasks").text
        chromium.screenshot(dispatcher, "console-4-workbench-closed")

        # The case as it stood the second after it was dispatched: dispatched, its task not yet accepted.
        dispatched = next(e for e in await api.history(case_id) if e["type"] == "CaseDispatched")
        moment = datetime.fromisoformat(dispatched["recorded_at"]).astimezone(SHANGHAI).replace(microsecond=0)
        local = (moment + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
        # The field's value as the picker would set it (its typed form follows the browser's locale).
        dispatcher.execute_script("arguments[0].value = arguments[1]", wait_for(dispatcher, "#as-of"), local)
        click(dispatcher, "#as-of-form button[type='submit']")
        wait_for(dispatcher, "#as-of-note")
        wait_for(dispatcher, "#case-status[data-status='dispatched']")
        assert texts(dispatcher, "#tasks tbody tr td:nth-child(3)") == ["待接收"]


async def test_a_report_appears_live_and_a_cut_stream_resumes_with_what_was_missed(
    api: Api, stack: Stack, console: str
) -> None:
    with signed_in(console, api.dispatcher()) as page:
        first = await api.report("blocked_drain", grid=GRID)
        wait_for(page, f"#feed li[data-case-id='{first}'][data-type='CaseReported']", timeout=10)

        stack.process("console").stop()  # the server ends every stream
        wait_for(page, "#live-status[data-state='reconnecting']")
        away = [await api.report("pothole", grid=GRID), await api.report("bees_in_the_town_hall", grid=GRID)]
        await api.open_tasks(away[0], 1)
        await api.wait_status(away[1], "awaiting_dispatch")
        chromium.screenshot(page, "console-5-reconnecting")
        stack.restart("console")

        wait_for(page, "#live-status[data-state='connected']", timeout=30)
        for case_id, last in ((away[0], "TaskDispatched"), (away[1], "CaseQueued")):
            wait_for(page, f"#feed li[data-case-id='{case_id}'][data-type='{last}']")
        seqs = [int(s) for s in attributes(page, "#feed li[data-seq]", "data-seq")]
        assert len(seqs) == len(set(seqs)), "an event shown twice"
        assert seqs == sorted(seqs, reverse=True), "events out of order"
        # Every event of the cases reported while away, in the feed (none missing).
        for case_id in away:
            shown = attributes(page, f"#feed li[data-case-id='{case_id}']", "data-type")
            assert sorted(shown) == sorted(await api.types(case_id)), case_id
        wait_for(page, f"#queue tr[data-case-id='{away[1]}']")  # the lists were reloaded on reconnecting
        chromium.screenshot(page, "console-6-resumed")


@contextlib.asynccontextmanager
async def raw_stream(console: str, token: str) -> AsyncIterator[list[dict[str, Any]]]:
    """The SSE stream as a program reads it: every notice received, appended as it comes."""
    received: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
        cookie = await session_cookie(http, console, token)

        async def read() -> None:
            async with http.get(f"{console}/api/events", headers={"Cookie": f"caseloop_session={cookie}"}) as r:
                assert r.status == 200 and r.content_type == "text/event-stream"
                async for line in r.content:
                    if line.startswith(b"data: ") and b'"seq"' in line and b'"type"' in line:
                        received.append(msgspec.json.decode(line[6:]))

        reader = asyncio.create_task(read())
        try:
            yield received
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def test_a_clerk_never_receives_another_departments_tasks(api: Api, stack: Stack, console: str) -> None:
    async with raw_stream(console, api.handler("water")) as received:
        with signed_in(console, api.handler("water")) as clerk:
            ours = await api.report("blocked_drain", grid=GRID)  # water
            theirs = [await api.report("gas_alarm", grid=GRID), await api.report("pothole", grid=GRID)]
            [task] = await api.open_tasks(ours, 1)
            for case_id in theirs:
                await api.open_tasks(case_id)
            await api.task_command(task, "accept")
            wait_for(clerk, f"#tasks tr[data-task-id='{task['id']}']")
            wait_for(clerk, f"#feed li[data-case-id='{ours}'][data-type='TaskAccepted']")
            await eventually(lambda: any(n["type"] == "TaskAccepted" for n in received), timeout=10)
            chromium.screenshot(clerk, "console-7-department-scope")
            page = clerk.page_source
            shown = set(attributes(clerk, "#tasks tr[data-case-id]", "data-case-id"))
            feed = set(attributes(clerk, "#feed li[data-case-id]", "data-case-id"))
    assert received and {n["department"] for n in received} == {"water"}
    assert {n["case_id"] for n in received} <= {ours} | {t["case_id"] for t in await water_tasks(api)}
    assert not any(n["case_id"] in theirs for n in received)
    assert ours in shown and not shown & set(theirs) and not feed & set(theirs)
    assert not any(case_id in page for case_id in theirs)


async def water_tasks(api: Api) -> list[dict[str, Any]]:
    status, body = await api.call("GET", "handling", "/v1/tasks?page_size=100", token=api.handler("water"))
    assert status == 200, body
    return body["items"]  # type: ignore[no-any-return]


async def test_the_board_shows_warned_overdue_and_escalated_tasks_and_a_reassignment_clears_them(
    api: Api, stack: Stack, console: str
) -> None:
    # Last in this module: it moves the stack's clock forward (the module has a stack of its own).
    case_id = await api.report("blocked_drain", grid=GRID)
    [task] = await api.open_tasks(case_id, 1)
    row = f"#board tr[data-task-id='{task['id']}']"
    with signed_in(console, api.dispatcher()) as page:
        api.move_clock(seconds_until(task["accept_warn_at"]) + 60)
        wait_for(page, f"{row} .badge.warned", timeout=30)
        # A console started after the warning finds it again in the stream.
        stack.process("console").stop()
        stack.restart("console")
        wait_for(page, "#live-status[data-state='connected']", timeout=30)
        wait_for(page, f"{row} .badge.warned")
        api.move_clock(seconds_until(task["accept_by"]) + 60)
        wait_for(page, f"{row} .badge.overdue", timeout=30)
        wait_for(page, f"{row} .badge.escalated", timeout=30)
        chromium.screenshot(page, "console-11-board")

        click(page, f"{row} button[data-open]")
        Select(wait_for(page, f"#reassign-{task['id']}")).select_by_value("city_management")
        click(page, f"#tasks tr[data-task-id='{task['id']}'] button[type='submit']")
        wait_gone(page, row, timeout=30)
    case = await api.case(case_id)
    assert [(t["department"], t["status"]) for t in case["tasks"]] == [
        ("water", "replaced"),
        ("city_management", "dispatched"),
    ]
    assert case["escalations"] == 1


def seconds_until(moment: str) -> float:
    return (datetime.fromisoformat(moment) - datetime.now(UTC)).total_seconds()
