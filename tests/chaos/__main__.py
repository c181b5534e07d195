"""`make chaos [CASES=500]`: the whole loop under load while processes and servers are killed.

`make chaos CASES=10000` is the soak: faults keep coming for as long as reports arrive.
Prints the checks, the figures and every fault as rich tables; exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter

from rich.console import Console
from rich.table import Table

from shared.base.log import configure_logging
from tests import folders
from tests.chaos.runner import Config, Result, run


def tables(result: Result, config: Config) -> list[Table]:
    checks = Table(title=f"caseloop chaos: {config.cases:,} cases, seed {config.seed}")
    checks.add_column("check")
    checks.add_column("result")
    checks.add_column("found", overflow="fold")
    for v in result.verdicts:
        checks.add_row(v.name, "[green]ok[/]" if v.ok else "[red]FAILED[/]", v.found)
    figures = Table(title="figures")
    figures.add_column("figure")
    figures.add_column("value", justify="right")
    for name, value in result.figures.items():
        figures.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
    faults = Table(title="faults")
    faults.add_column("fault")
    faults.add_column("target")
    faults.add_column("count", justify="right")
    faults.add_column("longest (s)", justify="right")
    faults.add_column("errors")
    grouped: Counter[tuple[str, str]] = Counter((f.kind, f.target) for f in result.faults)
    for (kind, target), count in sorted(grouped.items()):
        same = [f for f in result.faults if (f.kind, f.target) == (kind, target)]
        errors = "; ".join(f.error for f in same if f.error)
        faults.add_row(kind, target, str(count), f"{max(f.seconds for f in same):.1f}", errors)
    return [checks, figures, faults]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--rate", type=float, default=0.0, help="reports a second (default: 5, 10 for a soak)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    soak = args.cases > 2000
    config = Config(
        cases=args.cases,
        rate=args.rate or (10.0 if soak else 5.0),
        seed=args.seed,
        poisons=max(5, args.cases // 1000),
        late=max(8, args.cases // 200),
        soak=soak,
        finish_timeout=600.0 if soak else 240.0,
    )
    configure_logging("chaos", fmt="console", level="warning")
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 160)
    try:
        result = asyncio.run(run(config, say=console.log))
        for table in tables(result, config):
            console.print(table)
        if not result.ok:
            console.print("[red]a check failed[/]")
            sys.exit(1)
    finally:
        console.print(folders.last_line())


if __name__ == "__main__":
    main()
