"""Settings: every field from the environment (the field name upper-cased), checked at start-up."""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec


class Secret:
    """A value no log line, error or dump may print: repr, str and format show a mask.

    The value is reached only by `reveal()`, at the one place that hands it to a library.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not pickled")


_NO_SECRET = Secret()


def env_value(name: str, env: Mapping[str, str] = os.environ) -> str | None:
    """NAME, or the contents of the file NAME_FILE names (a mounted secret): one rule for every setting."""
    if name in env:
        return env[name]
    if f"{name}_FILE" in env:
        return Path(env[f"{name}_FILE"]).read_text().strip()
    return None


class SettingsError(ValueError):
    """A setting that is missing, empty or malformed, named."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: Secret = _NO_SECRET  # a DSN carries its password
    admin_database_url: Secret = _NO_SECRET  # migrations; defaults to database_url
    nats_url: str = "nats://127.0.0.1:4222"  # a comma-separated list for a cluster
    nats_user: str = ""  # this process's NATS user (each service has its own, with subject permissions)
    nats_password: Secret = _NO_SECRET
    nats_stream: str = "CASES"
    stream_replicas: Annotated[int, msgspec.Meta(ge=1, le=5)] = 1  # 3 on a three-node JetStream cluster
    subject_prefix: str = "case"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    jwt_secret: Secret = _NO_SECRET
    jwt_issuer: str = "caseloop"
    jwt_audience: str = "caseloop"
    pii_key: Secret = _NO_SECRET  # base64 of 32 bytes: wraps every reporter's data key
    blind_index_key: Secret = _NO_SECRET  # base64 of 32 bytes: keyed hashes of phone numbers
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
    # Refused tokens and signatures per client address (in each process): past the burst, the
    # address's attempts get 429 until the bucket refills at the rate.
    auth_failure_rate: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    auth_failure_burst: Annotated[int, msgspec.Meta(ge=1)] = 100
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
    # The console (services/console) forwards each person's calls to these APIs with their own token.
    intake_url: str = "http://127.0.0.1:8080"
    routing_url: str = "http://127.0.0.1:8081"
    handling_url: str = "http://127.0.0.1:8082"
    verification_url: str = "http://127.0.0.1:8083"
    console_session_key: Secret = _NO_SECRET  # base64 of 32 bytes: seals the console's session cookies
    console_session_hours: Annotated[float, msgspec.Meta(gt=0, le=24)] = 8.0
    # The console's public origin (https://console.example.gov.cn) when a proxy serves it: the one
    # origin its state-changing requests may come from, and Secure cookies when it is https.
    console_origin: str = ""
    # Tests only: when set, a request carrying `X-Test-Fault: 500` fails inside the authenticated
    # path, in a frame holding this value and the JWT secret, to prove neither reaches a log.
    test_fault_canary: Secret = _NO_SECRET

    def __post_init__(self) -> None:
        # Code and tests may pass plain strings; every secret field holds a Secret all the same.
        for field in _SECRET_FIELDS:
            value = getattr(self, field)
            if isinstance(value, str):
                msgspec.structs.force_setattr(self, field, Secret(value))

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """Read NAME or NAME_FILE (a file holding the value, for secrets) for every field."""
        raw: dict[str, str] = {}
        for field in msgspec.structs.fields(cls):
            try:
                value = env_value(field.name.upper(), env)
            except OSError as exc:
                raise SettingsError(f"{field.name.upper()}_FILE cannot be read: {exc.strerror}") from None
            if value is not None:
                raw[field.name] = value
        try:
            # strict=False turns "8081" into 8081; HTTP_PORT=abc fails here, naming the field.
            return msgspec.convert(raw, cls, strict=False, dec_hook=_decode_secret)
        except msgspec.ValidationError as exc:
            raise SettingsError(f"invalid setting: {_setting_name(str(exc))}") from None

    def require(self, names: Iterable[str]) -> None:
        """Start-up refuses a missing or empty required setting, naming it."""
        missing = [name.upper() for name in names if not getattr(self, name)]
        if missing:
            raise SettingsError(f"required setting missing or empty: {', '.join(missing)}")

    @property
    def nats_servers(self) -> list[str]:
        return [u.strip() for u in self.nats_url.split(",") if u.strip()]

    @property
    def migrations_url(self) -> str:
        return (self.admin_database_url or self.database_url).reveal()


_SECRET_FIELDS = tuple(f.name for f in msgspec.structs.fields(Settings) if f.type is Secret)


def _decode_secret(kind: type, value: Any) -> Any:
    if kind is Secret and isinstance(value, str):
        return Secret(value)
    raise NotImplementedError(f"cannot read {kind!r}")


def _setting_name(message: str) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.http_port`" with the variable's name."""
    text, _, where = message.partition(" - at `$.")
    return f"{where.rstrip('`').upper()}: {text}" if where else text
