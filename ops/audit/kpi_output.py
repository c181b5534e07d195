"""KPIs as rich tables or CSV."""

from __future__ import annotations

import csv
from typing import TextIO

from rich.table import Table

from shared.audit.kpi import Group, Kpis


def _pct(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "-"


def _num(value: float | None, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if value is not None else "-"


def kpi_tables(k: Kpis) -> list[Table]:
    overall = Table(title=f"KPIs over {k.cases} dispatched cases")
    overall.add_column("measure")
    overall.add_column("value", justify="right")
    overall.add_column("from")
    overall.add_row("on-time close rate (按期结案率)", _pct(k.on_time_rate), f"{k.on_time} on time of {k.due} due")
    overall.add_row("open and overdue", str(k.open_overdue), "counted as not on time")
    overall.add_row("rework rate (reopened)", _pct(k.rework_rate), f"{k.reopened} of {k.verified} verified")
    overall.add_row("returns per case", _num(k.returns_per_case, 2), f"{k.returns} returns")
    overall.add_row("satisfaction (mean 1-5)", _num(k.mean_rating, 2), f"{k.rated} rated")
    overall.add_row("satisfied (4-5)", _pct(k.satisfied_share), "")
    return [overall, _groups("time to close by category", k.by_category), _groups("by department", k.by_department)]


def _groups(title: str, groups: list[Group]) -> Table:
    table = Table(title=title)
    for column in ("name", "cases", "closed", "median h", "mean h"):
        table.add_column(column, justify="left" if column == "name" else "right")
    for g in groups:
        table.add_row(g.name, str(g.cases), str(g.closed), _num(g.median_hours_to_close), _num(g.mean_hours_to_close))
    return table


def kpi_csv(k: Kpis, out: TextIO) -> None:
    w = csv.writer(out)
    w.writerow(["section", "name", "value", "cases", "closed", "median_hours", "mean_hours"])
    for name, value in (
        ("on_time_rate", k.on_time_rate),
        ("on_time", k.on_time),
        ("due", k.due),
        ("open_overdue", k.open_overdue),
        ("rework_rate", k.rework_rate),
        ("returns_per_case", k.returns_per_case),
        ("mean_rating", k.mean_rating),
        ("satisfied_share", k.satisfied_share),
    ):
        w.writerow(["overall", name, "" if value is None else value, k.cases, "", "", ""])
    for section, groups in (("category", k.by_category), ("department", k.by_department)):
        for g in groups:
            w.writerow(
                [section, g.name, "", g.cases, g.closed, g.median_hours_to_close or "", g.mean_hours_to_close or ""]
            )
