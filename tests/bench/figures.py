"""Figures whose target is an absolute bound (a latency, a rate), still printed beside a baseline."""

from __future__ import annotations

from dataclasses import dataclass

from tests.bench.eventstore_bench import Figure


@dataclass(frozen=True)
class Bounded(Figure):
    unit: str = "ms"
    limit: float | None = None  # the target: ours below it (below=True) or at least it
    below: bool = True

    @property
    def met(self) -> bool | None:
        if self.limit is None:
            return None
        return self.ours < self.limit if self.below else self.ours >= self.limit

    @property
    def target_label(self) -> str:
        if self.limit is None:
            return ""
        return f"{'<' if self.below else '≥'} {self.limit:,.0f} {self.unit}"


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(len(ordered) * pct / 100 + 0.5) - 1))]
