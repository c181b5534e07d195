"""The chaos run's clients: mini-program backends, dispatchers, departments and grid workers.

They extend `ops.demo.Demo` (same HTTP calls, signed backend calls, returns and failed
verifications). What is added: every report carries a client-chosen Idempotency-Key and every
attempt is recorded with its outcome — ok, failed (a definite refusal) or unknown (timeout,
broken connection, 5xx: it may or may not have happened) — as a Jepsen history; some reports
are POSTed twice with the same key, some concurrently; some cases are cancelled by their
reporter, some unknown categories are left in the dispatcher's queue by design, and the tasks
of "late" cases are not touched until routing has marked them overdue (after the clock moved).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import msgspec

from ops.demo import EVIDENCE, MOBILE_PREFIXES, SURNAMES, UNKNOWN_CATEGORIES, Demo, Outcome
from shared.web.auth import Role
from shared.web.signing import sign_request

TERMINAL = frozenset({"closed", "rejected", "merged", "cancelled"})
CANCELLABLE = frozenset({"reported", "awaiting_dispatch", "dispatched", "in_progress", "reopened"})
REPORT_TIMEOUT = 2.5  # seconds before a report's outcome is unknown (a SIGSTOPped intake takes longer)


@dataclass(frozen=True)
class Plan:
    """What the simulated people will do with one report."""

    n: int
    key: str
    category: str
    grid: str
    duplicate: str = ""  # "" | "after" (a retry with the same key) | "racing" (two at once)
    late: bool = False  # departments wait until the task is overdue
    queue_by_design: bool = False  # an unknown category nobody dispatches: waits in the queue
    cancel: bool = False  # the reporter withdraws it
    give_up: bool = False  # after an unknown outcome the backend does not retry

    @property
    def description(self) -> str:
        return f"chaos {self.key}"


@dataclass
class Attempt:
    key: str
    outcome: str  # ok | failed | unknown
    status: int | None
    case_id: str | None
    seconds: float
    at: float  # monotonic start


def plans(cases: int, categories: list[str], grids: list[str], rng: random.Random, late: int) -> list[Plan]:
    """A mix of every behaviour; the late ones come early, so the clock jump finds them waiting."""
    made = []
    late_at = set(rng.sample(range(max(1, cases * 6 // 10)), min(late, cases)))
    for n in range(cases):
        unknown = n % 17 == 16
        made.append(
            Plan(
                n=n,
                key=f"r{n}-{rng.getrandbits(48):012x}",
                category=rng.choice(UNKNOWN_CATEGORIES) if unknown else rng.choice(categories),
                grid=rng.choice(grids),
                duplicate=rng.choices(["", "after", "racing"], [90, 5, 5])[0],
                late=n in late_at and not unknown,
                queue_by_design=unknown and n % 3 == 0,
                cancel=not unknown and n not in late_at and rng.random() < 0.03,
                give_up=rng.random() < 0.2,
            )
        )
    return made


@dataclass
class Chaos(Demo):
    attempts: list[Attempt] = field(default_factory=list)
    clock_moved: asyncio.Event = field(default_factory=asyncio.Event)
    played: set[str] = field(default_factory=set)  # case ids some actor drives
    by_design: set[str] = field(default_factory=set)  # case ids left in the dispatcher's queue on purpose
    progress: dict[str, str] = field(default_factory=dict)  # case id -> the status its driver last saw

    def body(self, plan: Plan, rng: random.Random) -> dict[str, Any]:
        return {
            "source": rng.choice(["citizen", "citizen", "grid_worker", "hotline"]),
            "category": plan.category,
            "description": plan.description,
            "location": {"grid": plan.grid, "address": f"开州区 {plan.grid}"},
            "reporter": {  # varied phones: the per-reporter daily limit is never the reason for a 429
                "name": rng.choice(SURNAMES) + "某",
                "phone": rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}",
            },
        }

    async def post_once(self, plan: Plan, data: bytes) -> Attempt:
        url = self.urls["intake"] + "/v1/reports"
        start = time.monotonic()
        while True:
            sent = {"Content-Type": "application/json", "Idempotency-Key": plan.key}
            headers = sign_request("POST", url, sent, data, self.backend_key.key_id, self.backend_key.private_key())
            try:
                timeout = aiohttp.ClientTimeout(total=REPORT_TIMEOUT)
                async with self.session.post(url, data=data, headers=headers, timeout=timeout) as response:
                    answer = await response.read()
                    if response.status == 429:  # the per-caller limit: wait as told, then the same request
                        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                        continue
            except (aiohttp.ClientError, TimeoutError):
                return self._record(plan, "unknown", None, None, start)
            if response.status in (200, 201, 202):
                case_id = str(msgspec.json.decode(answer)["case_id"])
                return self._record(plan, "ok", response.status, case_id, start)
            outcome = "unknown" if response.status >= 500 else "failed"
            return self._record(plan, outcome, response.status, None, start)

    def _record(self, plan: Plan, outcome: str, status: int | None, case_id: str | None, start: float) -> Attempt:
        attempt = Attempt(plan.key, outcome, status, case_id, time.monotonic() - start, start)
        self.attempts.append(attempt)
        return attempt

    async def submit(self, plan: Plan, rng: random.Random) -> str | None:
        """POST the report until it is ok or definitely refused (or the backend gives up)."""
        data = msgspec.json.encode(self.body(plan, rng))
        for attempt in range(6):
            if plan.duplicate == "racing" and attempt == 0:
                first, second = await asyncio.gather(self.post_once(plan, data), self.post_once(plan, data))
                result = first if first.outcome == "ok" else second
            else:
                result = await self.post_once(plan, data)
            if result.outcome == "ok":
                if plan.duplicate == "after":
                    await self.post_once(plan, data)
                return result.case_id
            if result.outcome == "failed" or plan.give_up:
                return None
            await asyncio.sleep(0.3 * (attempt + 1))
        return None

    async def drive(self, case_id: str, plan: Plan | None, deadline: float) -> str:
        """Act on the case as each person would until it ends or waits in the queue by design."""
        self.played.add(case_id)
        n = plan.n if plan else random.randrange(16)
        dispatcher = self.token(Role.DISPATCHER, sub=f"chaos-dispatcher-{n % 16}")
        outcome = Outcome(case_id=case_id, category=plan.category if plan else "")
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            _, case = await self.call("GET", "intake", f"/v1/cases/{case_id}", dispatcher)
            status = self.progress[case_id] = case["status"]
            if status in TERMINAL:
                return str(status)
            if plan and plan.cancel and status in CANCELLABLE and case["round"] <= 1:
                await self.call(
                    "POST", "intake", f"/v1/cases/{case_id}/cancel", self.backend_key, {"reason": "已自行解决"}
                )
            elif status == "awaiting_dispatch":
                if plan and plan.queue_by_design:
                    return str(status)
                path = f"/v1/cases/{case_id}/dispatch"
                await self.call("POST", "routing", path, dispatcher, {"departments": ["city_management"]})
            else:
                for task in case["tasks"]:
                    if plan and plan.late and _held(task):
                        continue  # nobody picks it up: it goes overdue
                    await self.work(task, outcome)
                if status == "verifying" and case["verification"]:
                    await self.verify(case, outcome)
            await asyncio.sleep(0.4 + random.random() * 0.4)
        return "timed out"


def _held(task: dict[str, Any]) -> bool:
    """A late case's task dispatched before the clock moved, not yet overdue (later ones are worked)."""
    before_the_jump = datetime.fromisoformat(task["accept_by"]) < datetime.now(UTC) + timedelta(days=20)
    return task["status"] == "dispatched" and "accept" not in task["overdue"] and before_the_jump


async def every_case(api: Chaos, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every case the dispatcher's list shows in these statuses (pages followed)."""
    dispatcher = api.token(Role.DISPATCHER, sub="chaos-sweeper")
    found: list[dict[str, Any]] = []
    for status in statuses:
        cursor = ""
        while True:
            query = f"/v1/cases?status={status}&page_size=100" + (f"&cursor={cursor}" if cursor else "")
            _, page = await api.call("GET", "intake", query, dispatcher)
            found += page["items"]
            cursor = page.get("next_cursor") or ""
            if not cursor:
                break
    return found


__all__ = ["EVIDENCE", "Attempt", "Chaos", "Plan", "every_case", "plans"]
