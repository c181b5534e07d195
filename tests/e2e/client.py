"""A test's view of the running system: HTTP calls with tokens, and the steps of the loop.

The one place tests make a staff token (`token`, `bearer`), open a client on a running stack
(`Api.at`) and drive a case through the whole loop (`Api.drive`).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Self

import aiohttp
import msgspec

from ops.devsetup import load_dev_backend
from ops.stack import load_secrets
from shared.web.auth import Role, issue_token
from shared.web.signing import BackendKey, sign_request
from tests.eventually import eventually

EVIDENCE = [{"url": "https://files.example/after.jpg", "sha256": "ab" * 32, "media_type": "image/jpeg"}]
# What a client retries through: a service restarting, a view not caught up yet, a lost race.
TRANSIENT = frozenset({404, 409, 500, 502, 503})
# The closed loop's steps in order, each exactly once however often a message was redelivered or a
# process died.
ONCE = (
    "CaseReported",
    "CaseDispatched",
    "TaskDispatched",
    "TaskAccepted",
    "TaskCompleted",
    "CaseHandled",
    "VerificationRequested",
    "VerificationPassed",
    "CaseClosed",
)


def token(
    secret: str,
    role: Role,
    sub: str = "",
    *,
    department: str | None = None,
    grids: tuple[str, ...] = (),
    pii: bool = False,
) -> str:
    """A staff member's bearer token, signed with `secret`."""
    return issue_token(secret, sub=sub or f"{role}-e2e", role=role, department=department, grids=grids, pii=pii)


def bearer(secret: str, role: Role, sub: str = "", **claims: Any) -> dict[str, str]:
    """The Authorization header carrying `token(...)`."""
    return {"Authorization": f"Bearer {token(secret, role, sub, **claims)}"}


class StackInfo(msgspec.Struct, frozen=True):
    urls: dict[str, str]
    jwt_secret: str
    clock_file: Path
    backend_key: BackendKey | None = None  # the stack's dev backend key (from its folder if None)


class Api:
    def __init__(self, session: aiohttp.ClientSession, info: StackInfo) -> None:
        self.session = session
        self.info = info

    @classmethod
    @asynccontextmanager
    async def at(cls, root: Path, urls: dict[str, str], connections: int = 100) -> AsyncIterator[Self]:
        """A client of the stack whose folder is `root` (its secrets, clock file and dev backend)."""
        info = StackInfo(
            urls=urls,
            jwt_secret=load_secrets(root).jwt_secret,
            clock_file=root / "clock",
            backend_key=load_dev_backend(root),
        )
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
            yield cls(session, info)

    def token(self, role: Role, sub: str = "", **claims: Any) -> str:
        """A token signed with the stack's secret (claims: department, grids, pii)."""
        return token(self.info.jwt_secret, role, sub, **claims)

    async def call(
        self,
        method: str,
        service: str,
        path: str,
        *,
        token: str | BackendKey | None = None,
        json: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        all_headers = dict(headers or {})
        url = self.info.urls[service] + path
        if json is not None:
            data, json = msgspec.json.encode(json), None
        if data is not None:
            all_headers.setdefault("Content-Type", "application/json")
        if token and not isinstance(token, BackendKey):
            all_headers["Authorization"] = f"Bearer {token}"
        for _ in range(50):
            sent = all_headers
            if isinstance(token, BackendKey):  # a backend signs each call afresh (RFC 9421, one nonce each)
                sent = sign_request(method, url, all_headers, data or b"", token.key_id, token.private_key())
            async with self.session.request(method, url, data=data, headers=sent) as response:
                body = await response.read()
                content_type = response.headers.get("Content-Type", "")
                parsed = msgspec.json.decode(body) if body and "json" in content_type else body
                # Like a real client, wait out the per-caller rate limit (not a reporter's daily one).
                if response.status == 429 and response.headers.get("RateLimit-Policy", "").startswith('"caller"'):
                    await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), 1.0))
                    continue
                return response.status, parsed
        return response.status, parsed

    # --- the actors -------------------------------------------------------------------

    def backend(self) -> BackendKey:
        """The stack's registered backend: its calls are signed, not sent with a token."""
        return self.info.backend_key or load_dev_backend(self.info.clock_file.parent)

    def dispatcher(self) -> str:
        return self.token(Role.DISPATCHER, sub="dispatcher-1")

    def handler(self, department: str) -> str:
        return self.token(Role.HANDLER, sub=f"{department}-handler", department=department)

    def grid_worker(self, grid: str) -> str:
        return self.token(Role.GRID_WORKER, sub=f"gw-{grid}", grids=(grid,))

    async def report(self, category: str = "blocked_drain", grid: str = "wenfeng-tianehu-01", **extra: Any) -> str:
        body = {"source": "citizen", "category": category, "description": "e2e", "location": {"grid": grid}, **extra}
        status, answer = await self.call("POST", "intake", "/v1/reports", token=self.backend(), json=body)
        assert status == 201, answer
        return str(answer["case_id"])

    async def case(self, case_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", "intake", f"/v1/cases/{case_id}", token=self.dispatcher())
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    async def history(self, case_id: str) -> list[dict[str, Any]]:
        status, body = await self.call("GET", "intake", f"/v1/cases/{case_id}/history", token=self.dispatcher())
        assert status == 200, body
        return body["events"]  # type: ignore[no-any-return]

    async def types(self, case_id: str) -> list[str]:
        return [e["type"] for e in await self.history(case_id)]

    async def wait_status(self, case_id: str, *statuses: str, timeout: float = 30) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            case = await self.case(case_id)
            return case if case["status"] in statuses else None

        return await eventually(reached, timeout=timeout, interval=0.1)  # type: ignore[no-any-return]

    async def open_tasks(self, case_id: str, count: int | None = None) -> list[dict[str, Any]]:
        async def dispatched() -> list[dict[str, Any]] | None:
            tasks = [t for t in (await self.case(case_id))["tasks"] if t["status"] in ("dispatched", "accepted")]
            return tasks if tasks and (count is None or len(tasks) == count) else None

        return await eventually(dispatched, timeout=30, interval=0.1)  # type: ignore[no-any-return]

    async def task_command(self, task: dict[str, Any], verb: str, body: Any = None) -> tuple[int, Any]:
        token = self.handler(task["department"])
        return await self.call("POST", "handling", f"/v1/tasks/{task['id']}/{verb}", token=token, json=body or {})

    async def work(self, task: dict[str, Any]) -> None:
        status, body = await self.task_command(task, "accept")
        assert status == 200, body
        status, body = await self.task_command(task, "complete", {"result": "处理完毕", "evidence": EVIDENCE})
        assert status == 200, body

    async def verification(self, case_id: str) -> dict[str, Any]:
        case = await self.wait_status(case_id, "verifying")
        return case["verification"]  # type: ignore[no-any-return]

    async def verify(self, case_id: str, passed: bool, grid: str = "wenfeng-tianehu-01") -> tuple[int, Any]:
        verification = await self.verification(case_id)
        verb = "pass" if passed else "fail"
        body: dict[str, Any] = {"evidence": EVIDENCE}
        if not passed:
            body["reason"] = "积水仍在"
        return await self.call(
            "POST",
            "verification",
            f"/v1/verifications/{verification['id']}/{verb}",
            token=self.grid_worker(grid),
            json=body,
        )

    def move_clock(self, seconds: float) -> None:
        self.info.clock_file.write_text(str(seconds))

    # --- through failures -------------------------------------------------------------

    async def persist(
        self, method: str, service: str, path: str, token: str | BackendKey, json: Any = None, pause: float = 0.1
    ) -> Any:
        """The answer, retried through a dead service, a view not yet caught up, or a timeout, as real clients do."""
        for _ in range(600):
            try:
                status, answer = await self.call(method, service, path, token=token, json=json)
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(pause)
                continue
            if status in (200, 201, 202):
                return answer
            if status in TRANSIENT:
                await asyncio.sleep(pause)
                continue
            raise AssertionError(f"{method} {path}: {status} {answer}")
        raise AssertionError(f"{method} {path} never succeeded")

    async def drive(self, category: str = "blocked_drain", grid: str = "wenfeng-nanjiao-01") -> str:
        """Report a case and play every part until it is closed (tasks accepted and completed, verification
        passed), each call persisted; the case's id."""
        body = {"source": "citizen", "category": category, "location": {"grid": grid}}
        case_id = str((await self.persist("POST", "intake", "/v1/reports", self.backend(), body))["case_id"])
        while True:
            case = await self.persist("GET", "intake", f"/v1/cases/{case_id}", self.dispatcher())
            if case["status"] == "closed":
                return case_id
            for task in case["tasks"]:
                handler, path = self.handler(task["department"]), f"/v1/tasks/{task['id']}"
                if task["status"] == "dispatched":
                    await self.persist("POST", "handling", f"{path}/accept", handler, {})
                elif task["status"] == "accepted":
                    done = {"result": "疏通", "evidence": EVIDENCE}
                    await self.persist("POST", "handling", f"{path}/complete", handler, done)
            if case["status"] == "verifying":
                path = f"/v1/verifications/{case['verification']['id']}/pass"
                await self.persist("POST", "verification", path, self.grid_worker(grid), {"evidence": EVIDENCE})
            await asyncio.sleep(0.05 + random.random() * 0.1)  # as often as a person looks again

    async def feed(self, at_least: int, during: asyncio.Future[Any] | None = None) -> list[str]:
        """New cases every 0.25 s, each driven, until `at_least` have started and `during` is over (so
        whatever it does finds cases in flight); their ids once all are closed."""
        drivers: list[asyncio.Task[str]] = []
        while len(drivers) < at_least or (during is not None and not during.done()):
            drivers.append(asyncio.create_task(self.drive()))
            await asyncio.sleep(0.25)
        if during is not None:
            await during  # its failure is the test's
        return list(await asyncio.wait_for(asyncio.gather(*drivers), timeout=300))

    async def assert_each_step_once(self, case_ids: list[str]) -> None:
        for case_id in case_ids:
            history = await self.history(case_id)
            counts = Counter(e["type"] for e in history)
            assert {t: counts[t] for t in ONCE} == dict.fromkeys(ONCE, 1), (case_id, counts)
            assert [e["version"] for e in history] == list(range(1, len(history) + 1))
