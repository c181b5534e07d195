"""Imports point one way: ops → services → shared, and inside shared from the upper floors down.

Read from the source with the ast module (nothing is imported), so a lazy import inside a
function counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# shared/'s floors: a package may import its own floor and those below it, never one above.
FLOORS = {
    "base": 0,
    "domain": 1,
    "store": 2,
    "web": 2,
    "messaging": 3,
    "personal": 3,
    "audit": 3,
    "runtime": 4,
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_the_floors_cover_every_package_of_shared() -> None:
    packages = {p.name for p in (ROOT / "shared").iterdir() if (p / "__init__.py").exists()}
    assert packages == set(FLOORS)
    assert not [p.name for p in (ROOT / "shared").glob("*.py") if p.name != "__init__.py"]


@pytest.mark.parametrize("path", modules("shared"), ids=lambda p: str(p.relative_to(ROOT)))
def test_shared_imports_neither_services_nor_ops_nor_a_floor_above_its_own(path: Path) -> None:
    own = path.relative_to(ROOT / "shared").parts[0]
    floor = FLOORS.get(own, 0)
    wrong = []
    for name in imported_modules(path):
        top, _, rest = name.partition(".")
        if top in ("services", "ops", "tests"):
            wrong.append(name)
        elif top == "shared" and rest:
            package = rest.split(".")[0]
            if FLOORS.get(package, 0) > floor:
                wrong.append(name)
    assert wrong == []


@pytest.mark.parametrize("path", modules("services"), ids=lambda p: str(p.relative_to(ROOT)))
def test_services_import_neither_ops_nor_tests(path: Path) -> None:
    assert [n for n in imported_modules(path) if n.split(".")[0] in ("ops", "tests")] == []


def test_the_walk_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from services.intake import handlers\n    import ops.cli\n")
    assert imported_modules(module) == {"services.intake", "services.intake.handlers", "ops.cli"}


def other_services(path: Path, own: str) -> list[str]:
    """The modules of services other than `own` that a module imports."""
    return sorted(n for n in imported_modules(path) if n.split(".")[0] == "services" and n.split(".")[1:2] != [own])


@pytest.mark.parametrize("path", modules("services"), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_service_imports_another_service(path: Path) -> None:
    # What two services share lives in shared/ or travels on an event: who verifies a case is
    # on its dispatch, so verification needs nothing of routing's.
    assert other_services(path, path.relative_to(ROOT / "services").parts[0]) == []


def test_the_service_check_finds_a_service_reading_anothers_policy(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from services.verification import decide\n\ndef f():\n    import services.routing.planning\n")
    assert other_services(module, "verification") == ["services.routing.planning"]
    assert other_services(module, "routing") == ["services.verification", "services.verification.decide"]
