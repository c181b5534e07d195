"""A service refuses to start without a secret it needs, naming it, before it connects anywhere."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.base.config import Secret, Settings, SettingsError

KEY = base64.b64encode(os.urandom(32)).decode()
# Enough for each service to get past its settings; the database is never reached.
COMPLETE = {
    "DATABASE_URL": "postgresql://nobody:pw@127.0.0.1:1/none",
    "JWT_SECRET": "s" * 32,
    "PII_KEY": KEY,
    "BLIND_INDEX_KEY": KEY,
}


def start(service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in COMPLETE and not k.endswith("_FILE")}
    return subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        env={**clean, **env, "HTTP_PORT": "1"},
        capture_output=True,
        text=True,
        timeout=60,  # a guard only: the process is expected to exit on its own
    )


@pytest.mark.parametrize(
    ("service", "setting"),
    [
        ("intake", "JWT_SECRET"),
        ("intake", "PII_KEY"),
        ("intake", "BLIND_INDEX_KEY"),
        ("intake", "DATABASE_URL"),
        ("routing", "JWT_SECRET"),
        ("handling", "JWT_SECRET"),
        ("verification", "JWT_SECRET"),
        ("relay", "CHECKPOINT_KEY_FILE"),
    ],
)
@pytest.mark.parametrize("how", ["empty", "missing"])
def test_a_service_exits_at_once_naming_a_missing_or_empty_secret(service: str, setting: str, how: str) -> None:
    env = dict(COMPLETE)
    if how == "empty":
        env[setting] = ""
    else:
        env.pop(setting, None)
    done = start(service, env)
    assert done.returncode != 0
    assert setting in done.stderr, done.stderr
    assert "service_started" not in done.stdout


def test_a_secret_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    env = {**COMPLETE, "JWT_SECRET_FILE": str(tmp_path / "absent")}
    del env["JWT_SECRET"]
    done = start("routing", env)
    assert done.returncode != 0 and "JWT_SECRET_FILE" in done.stderr, done.stderr


def test_every_setting_reads_NAME_or_NAME_FILE(tmp_path: Path) -> None:
    (tmp_path / "url").write_text("postgresql://a:b@h/d\n")
    (tmp_path / "port").write_text("8099\n")
    settings = Settings.from_env({"DATABASE_URL_FILE": str(tmp_path / "url"), "HTTP_PORT_FILE": str(tmp_path / "port")})
    assert settings.database_url.reveal() == "postgresql://a:b@h/d" and settings.http_port == 8099


def test_a_malformed_setting_is_named() -> None:
    with pytest.raises(SettingsError, match="HTTP_PORT"):
        Settings.from_env({"HTTP_PORT": "eighty"})


def test_a_secret_never_prints_its_value() -> None:
    secret = Secret("hunter2-hunter2")
    settings = Settings(jwt_secret="hunter2-hunter2")
    for shown in (
        repr(secret),
        str(secret),
        f"{secret}",
        "%s" % (secret,),  # noqa: UP031 - the logging module formats this way
        repr(settings),
        str(settings),
    ):
        assert "hunter2" not in shown
    assert settings.jwt_secret == secret and secret.reveal() == "hunter2-hunter2"
