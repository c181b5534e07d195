"""`caseloop demo`: citizens, sensors, departments, grid workers and a dispatcher, over HTTP only.

Posts a realistic mix of reports from the shipped Kaizhou sample, then plays every actor until
each case has ended or waits by design: some tasks are returned "not ours", some verifications
fail, unknown categories are dispatched by hand.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec

from shared.web.auth import Role, issue_token
from shared.web.signing import BackendKey, sign_request

EVIDENCE = [{"url": "https://files.example/photo.jpg", "sha256": "0" * 64, "media_type": "image/jpeg"}]
SURNAMES = "王李张刘陈杨黄赵吴周"
GIVEN = ["伟", "芳", "娜", "敏", "静", "强", "磊", "洋", "艳", "勇"]
MOBILE_PREFIXES = ["138", "139", "150", "151", "186", "187", "135", "177"]
UNKNOWN_CATEGORIES = ["bees_in_the_town_hall", "lost_pet_report"]


@dataclass
class Outcome:
    case_id: str
    category: str
    returns: int = 0
    failed_verifications: int = 0
    dispatched_by_hand: bool = False
    status: str = "reported"
    rounds: int = 0
    reporter_phone: str = ""  # kept in memory only: tests look for it where it must not be


@dataclass
class Demo:
    urls: dict[str, str]
    secret: str
    backend_key: BackendKey  # the mini-program backend signs its calls
    session: aiohttp.ClientSession
    categories: list[str]
    grids: list[str]
    return_share: float = 0.15
    fail_share: float = 0.2
    outcomes: list[Outcome] = field(default_factory=list)

    def token(self, role: Role, **claims: Any) -> str:
        return issue_token(self.secret, sub=claims.pop("sub", f"demo-{role}"), role=role, **claims)

    async def call(
        self, method: str, service: str, path: str, token: str | BackendKey, body: Any = None
    ) -> tuple[int, Any]:
        url, data = self.urls[service] + path, msgspec.json.encode(body) if body is not None else b""
        for _ in range(300):  # a view not caught up yet, or a service restarting: try again shortly
            headers = {"Content-Type": "application/json"}
            if isinstance(token, BackendKey):  # the backend signs each request, afresh on each retry
                headers = sign_request(method, url, headers, data, token.key_id, token.private_key())
            else:
                headers["Authorization"] = f"Bearer {token}"
            try:
                async with self.session.request(method, url, data=data or None, headers=headers) as response:
                    answer = await response.json(content_type=None)
                    if response.status in (404, 429, 503) or response.status >= 500:
                        await asyncio.sleep(float(response.headers.get("Retry-After", "0.1")))
                        continue
                    return response.status, answer
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{method} {path} kept failing")

    async def report(self, n: int) -> Outcome:
        category = random.choice(UNKNOWN_CATEGORIES) if n % 17 == 16 else random.choice(self.categories)
        grid = random.choice(self.grids)
        body: dict[str, Any] = {
            "source": random.choice(["citizen", "citizen", "grid_worker", "hotline"]),
            "category": category,
            "description": f"演示案件 #{n}",
            "location": {"grid": grid, "address": f"开州区 {grid}"},
            "reporter": {
                "name": random.choice(SURNAMES) + random.choice(GIVEN),
                "phone": random.choice(MOBILE_PREFIXES) + f"{random.randrange(10**8):08d}",
            },
        }
        status, answer = await self.call("POST", "intake", "/v1/reports", self.backend_key, body)
        if status != 201:
            raise RuntimeError(f"report refused: {status} {answer}")
        return Outcome(case_id=answer["case_id"], category=category, reporter_phone=body["reporter"]["phone"])

    async def play(self, outcome: Outcome, deadline: float) -> Outcome:
        """Act on the case as each actor would, until it ends (or time runs out)."""
        dispatcher = self.token(Role.DISPATCHER, sub="demo-dispatcher")
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            _, case = await self.call("GET", "intake", f"/v1/cases/{outcome.case_id}", dispatcher)
            outcome.status, outcome.rounds = case["status"], case["round"]
            if case["status"] in ("closed", "rejected", "merged", "cancelled"):
                return outcome
            if case["status"] == "awaiting_dispatch":
                await self.call(
                    "POST",
                    "routing",
                    f"/v1/cases/{outcome.case_id}/dispatch",
                    dispatcher,
                    {"departments": ["city_management"]},
                )
                outcome.dispatched_by_hand = True
            for task in case["tasks"]:
                await self.work(task, outcome)
            if case["status"] == "verifying" and case["verification"]:
                await self.verify(case, outcome)
            await asyncio.sleep(0.2)
        return outcome

    async def work(self, task: dict[str, Any], outcome: Outcome) -> None:
        handler = self.token(Role.HANDLER, sub=f"demo-{task['department']}", department=task["department"])
        base = f"/v1/tasks/{task['id']}"
        if task["status"] == "dispatched":
            if outcome.returns == 0 and random.random() < self.return_share:
                await self.call("POST", "handling", f"{base}/return", handler, {"reason": "不属于本部门职责"})
                outcome.returns += 1
                return
            await self.call("POST", "handling", f"{base}/accept", handler, {})
        elif task["status"] == "accepted":
            await self.call(
                "POST", "handling", f"{base}/complete", handler, {"result": "已现场处置", "evidence": EVIDENCE}
            )

    async def verify(self, case: dict[str, Any], outcome: Outcome) -> None:
        verification = case["verification"]
        if verification["outcome"] != "pending":
            return
        base = f"/v1/verifications/{verification['id']}"
        if verification["kind"] == "reporter":
            token: str | BackendKey = self.backend_key
        else:
            grid = verification["grid"] or case["location"]["grid"]
            token = self.token(Role.GRID_WORKER, sub=f"demo-gw-{grid}", grids=(grid,))
        if outcome.failed_verifications == 0 and random.random() < self.fail_share:
            await self.call(
                "POST", "verification", f"{base}/fail", token, {"reason": "现场复核未整改到位", "evidence": EVIDENCE}
            )
            outcome.failed_verifications += 1
        else:
            await self.call("POST", "verification", f"{base}/pass", token, {"evidence": EVIDENCE})


async def run_demo(
    urls: dict[str, str],
    secret: str,
    cases: int,
    categories: list[str],
    grids: list[str],
    timeout: float = 300,
    *,
    backend_key: BackendKey,
) -> list[Outcome]:
    from rich.progress import Progress

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        demo = Demo(
            urls=urls, secret=secret, backend_key=backend_key, session=session, categories=categories, grids=grids
        )
        with Progress() as progress:
            reporting = progress.add_task("reports posted", total=cases)
            ending = progress.add_task("cases ended", total=cases)
            deadline = asyncio.get_running_loop().time() + timeout
            gate = asyncio.Semaphore(16)

            async def one(n: int) -> Outcome:
                async with gate:
                    outcome = await demo.report(n)
                    progress.advance(reporting)
                    await demo.play(outcome, deadline)
                    progress.advance(ending)
                    return outcome

            return list(await asyncio.gather(*(one(n) for n in range(cases))))


def summary(outcomes: list[Outcome]) -> Counter[str]:
    return Counter(o.status for o in outcomes)
