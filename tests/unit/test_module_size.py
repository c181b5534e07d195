"""No module of the code is over 400 lines: one past that has more than one job, and is split along them.

Tests may run longer (a file of cases for one behaviour reads best in one place).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MOST_LINES = 400


def line_count(path: Path) -> int:
    with path.open("rb") as file:
        return sum(1 for _ in file)


def test_no_module_of_shared_services_or_ops_is_over_400_lines() -> None:
    modules = [path for folder in ("shared", "services", "ops") for path in sorted((ROOT / folder).rglob("*.py"))]
    assert len(modules) > 50  # the walk found the code, not an empty folder
    too_long = {str(p.relative_to(ROOT)): n for p in modules if (n := line_count(p)) > MOST_LINES}
    assert too_long == {}


def test_every_line_counts_blank_ones_too(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("a = 1\n\nb = 2\n")
    assert line_count(module) == 3
