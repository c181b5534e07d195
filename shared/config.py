"""Settings: every field from the environment (the field name upper-cased), checked at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = ""
    admin_database_url: str = ""  # migrations; defaults to database_url
    nats_url: str = "nats://127.0.0.1:4222"  # a comma-separated list for a cluster
    nats_user: str = ""  # this process's NATS user (each service has its own, with subject permissions)
    nats_password: str = ""
    nats_stream: str = "CASES"
    stream_replicas: Annotated[int, msgspec.Meta(ge=1, le=5)] = 1  # 3 on a three-node JetStream cluster
    subject_prefix: str = "case"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    jwt_secret: str = ""
    jwt_issuer: str = "caseloop"
    jwt_audience: str = "caseloop"
    pii_key: str = ""  # base64 of 32 bytes: wraps every reporter's data key
    blind_index_key: str = ""  # base64 of 32 bytes: keyed hashes of phone numbers
    clock_file: str = ""  # tests: a file holding seconds to move every clock forward
    rules_path: str = ""  # routing rules (TOML); the shipped Kaizhou sample when empty
    # The share of each deadline's span after which routing warns (预警).
    warn_share: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.8
    # How long a reporter has to confirm a fix before the case closes by default.
    reporter_confirm_hours: Annotated[float, msgspec.Meta(gt=0, le=24 * 365)] = 72.0
    max_body_bytes: int = 64 * 1024
    # Per caller (token bucket in each process) and per reporter (a day, by the phone's blind index).
    rate_per_second: Annotated[float, msgspec.Meta(gt=0)] = 100.0
    rate_burst: Annotated[int, msgspec.Meta(ge=1)] = 200
    reporter_daily_limit: Annotated[int, msgspec.Meta(ge=1)] = 20
    max_deliver: int = 5
    ack_wait: float = 30.0
    nak_delay: float = 0.5
    relay_interval: float = 0.02
    deadline_interval: float = 1.0
    statement_timeout_ms: int = 10_000
    # Signed checkpoints over the whole log (the relay's checkpointer): the Ed25519 key file, kept
    # outside the database; a checkpoint every so many events or seconds, whichever comes first.
    checkpoint_key_file: str = ""
    checkpoint_events: int = 1000
    checkpoint_seconds: float = 60.0
    db_pool_size: int = 10

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """Read NAME or NAME_FILE (a file holding the value, for secrets) for every field."""
        raw: dict[str, str] = {}
        for field in msgspec.structs.fields(cls):
            name = field.name.upper()
            if name in env:
                raw[field.name] = env[name]
            elif f"{name}_FILE" in env:
                raw[field.name] = Path(env[f"{name}_FILE"]).read_text().strip()
        # strict=False turns "8081" into 8081; HTTP_PORT=abc fails here, naming the field.
        return msgspec.convert(raw, cls, strict=False)

    @property
    def nats_servers(self) -> list[str]:
        return [u.strip() for u in self.nats_url.split(",") if u.strip()]

    @property
    def migrations_url(self) -> str:
        return self.admin_database_url or self.database_url
