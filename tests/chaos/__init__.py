"""Chaos under load: `python -m tests.chaos` and `tests/e2e/test_chaos.py`.

actors (the simulated people and their recorded history), faults (the nemesis), runner (one
run), checks (quiet, then every invariant against the log, the views and NATS), lifecycle and
verdicts (the pure checker logic, unit-tested in tests/unit).
"""
