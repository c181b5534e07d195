"""schemathesis against every operation of every running service, from the documents they serve.

Each service is fuzzed (coverage, fuzzing and stateful phases; positive and negative data) as
the roles that use it. Every response must be documented, match its schema and content type;
no 5xx; invalid input gets a 4xx problem+json; a request without credentials gets 401. Real
ids (a case, its tasks, a verification) are seeded first and offered for `{id}` seven times in
ten, so the commands reach the domain instead of 404. Bounded (MAX_EXAMPLES per operation) and
deterministic (derandomized generation, no example database); the runs go in parallel.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ops.stack import Stack
from tests import folders
from tests.e2e.client import Api

pytestmark = pytest.mark.e2e
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
SEED = os.environ.get("FUZZ_SEED", "")  # a soak run explores: FUZZ_SEED=$RANDOM FUZZ_MAX_EXAMPLES=500
GRID = "wenfeng-tianehu-01"
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
    "response_schema_conformance,negative_data_rejection,missing_required_header,unsupported_method,"
    "use_after_free,ensure_resource_availability"
)
ROOT = Path(__file__).resolve().parents[2]


class Run(msgspec.Struct, kw_only=True):
    service: str
    caller: str
    ids: list[str]
    token: str | None = None  # a bearer token; None: signed as the stack's backend
    returncode: int = -1
    output: str = ""
    cases: int = 0


async def seed(api: Api) -> list[Run]:
    """A run per service and role, each with cases of its own (one run's cancel is not another's 404)."""
    intake_case = await api.report(grid=GRID)
    backend_case = await api.report(grid=GRID)

    dispatched = await api.report(grid=GRID)
    queued = await api.report(category="no_rule_for_this", grid=GRID)
    routed = str((await api.open_tasks(dispatched, 1))[0]["id"])

    [waiting] = await api.open_tasks(await api.report(grid=GRID), 1)
    [accepted] = await api.open_tasks(await api.report(grid=GRID), 1)
    assert (await api.task_command(accepted, "accept"))[0] == 200

    verifying = await api.report(grid=GRID)
    for task in await api.open_tasks(verifying):
        await api.work(task)
    verification = str((await api.verification(verifying))["id"])

    tasks = [str(waiting["id"]), str(accepted["id"])]
    # The read-only roles (auditor, supervisor) call the same operations: their 403s and scopes are
    # covered by the unit and e2e tests; here each operation is fuzzed as a role that may call it.
    return [
        Run(service="intake", caller="dispatcher", ids=[intake_case], token=api.dispatcher()),
        Run(service="intake", caller="reporter_backend", ids=[backend_case]),
        Run(service="routing", caller="dispatcher", ids=[dispatched, queued, routed], token=api.dispatcher()),
        Run(service="handling", caller="handler", ids=tasks, token=api.handler(waiting["department"])),
        Run(service="verification", caller="grid_worker", ids=[verification], token=api.grid_worker(GRID)),
    ]


def config_file(run: Run, folder: Path) -> Path:
    path = folder / "schemathesis.toml"
    ids = ", ".join(f'"{i}"' for i in run.ids)
    binding = '"path.id" = { dictionary = "ids", probability = 0.7 }'
    path.write_text(f"[dictionaries.ids]\nvalues = [{ids}]\n\n[parameters]\n{binding}\n")
    return path


async def fuzz(run: Run, url: str, backend_key: Any) -> None:
    with folders.temporary(f"fuzz-{run.service}-{run.caller}") as folder:
        await _fuzz(run, url, backend_key, folder)


async def _fuzz(run: Run, url: str, backend_key: Any, folder: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SCHEMATHESIS_HOOKS": "tests.e2e.fuzz_hooks"}
    auth: list[str] = []
    checks = CHECKS
    if run.token:
        auth = ["--header", f"Authorization: Bearer {run.token}"]
        checks += ",ignored_auth"  # the signed run always signs: nothing to take away
    else:
        env["FUZZ_BACKEND_KEY"] = msgspec.json.encode(backend_key).decode()
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config_file(run, folder))),
        *("run", f"{url}/openapi.json", "--max-examples", str(MAX_EXAMPLES)),
        *(("--seed", SEED, "--generation-database", "none") if SEED else ("--generation-deterministic",)),
        *("--workers", "1", "--request-timeout", "15", "--checks", checks, "--suppress-health-check", "all"),
        *("--generation-with-security-parameters", "false", "--no-color", "--max-failures", "20", *auth),
        *("--report", "junit", "--report-junit-path", str(folder / "junit.xml")),
    ]
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=600)
    run.output, run.returncode = stdout.decode(errors="replace"), process.returncode or 0
    (folder / "output.txt").write_text(run.output)
    generated = re.search(r"(\d+) generated", run.output)
    run.cases = int(generated.group(1)) if generated else 0


async def test_every_operation_of_every_service_answers_as_documented_under_random_input(
    api: Api, stack: Stack
) -> None:
    runs = await seed(api)
    await asyncio.gather(*(fuzz(run, api.info.urls[run.service], api.backend()) for run in runs))
    for run in runs:
        print(f"schemathesis {run.service} as {run.caller}: {run.cases} test cases, exit {run.returncode}")
    failed = [f"--- {r.service} as {r.caller}\n{r.output[-12000:]}" for r in runs if r.returncode or not r.cases]
    assert not failed, "\n".join(failed)
    for name in ("relay", "intake", "routing", "handling", "verification"):
        assert stack.process(name).ready(), f"{name} is not ready after the fuzzing"
