"""Every secret a stack holds, and where in its logs any of them appears."""

from __future__ import annotations

import json
from pathlib import Path

from ops.stack import Stack

# Settings whose values are secrets, read back from the stack's own environment.
SECRET_SETTINGS = ("JWT_SECRET", "PII_KEY", "BLIND_INDEX_KEY", "TEST_FAULT_CANARY", "NATS_PASSWORD")


def stack_secrets(stack: Stack, *extra: str) -> list[str]:
    """The canary, the keys, every password in secrets.json, the checkpoint key: never in a log."""
    found = [stack.env[name] for name in SECRET_SETTINGS if stack.env.get(name)]
    found += _strings(json.loads((stack.root / "secrets.json").read_bytes()))
    for key_file in {Path(stack.env["CHECKPOINT_KEY_FILE"]), *stack.root.glob("*.key")}:
        if key_file.exists():  # PEM: the base64 lines are the key
            found += [line for line in key_file.read_text().splitlines() if line and not line.startswith("-----")]
    found += [value for value in extra if value]
    # A secret too short to be one (an empty password) would match everywhere.
    return sorted({value for value in found if len(value) >= 12})


def secrets_in_logs(stack: Stack, needles: list[str]) -> list[str]:
    """Which log holds which secret (by its first characters): [] when none."""
    hits = []
    for log in sorted((stack.root / "logs").glob("*.log")):
        text = log.read_text(errors="replace")
        hits += [f"{log.name}: {needle[:6]}…" for needle in needles if needle in text]
    return hits


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
