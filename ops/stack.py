"""The whole system on one machine: servers, migrations, and every service as its own process.

`caseloop up` runs this; the end-to-end tests run the very same thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import msgspec

from ops.cluster import NatsCluster
from ops.devsetup import departments, nats_passwords, provision_nats, register_dev_backend
from ops.servers import NatsServer, Postgres, free_port
from shared.base.config import Settings, env_value
from shared.messaging.natsauth import ADMIN, server_conf
from shared.personal.pii import new_key
from shared.store.db import (
    AUDITOR_ROLE,
    OWNER_ROLE,
    SERVICE_ROLE,
    SERVICE_ROLES,
    bootstrap,
    database_url_variable,
    run_migrations,
    with_credentials,
)

# Start order; stopped in reverse. The relay first so that nothing waits on it; the console, a client
# of the others' APIs, last.
SERVICES = ("relay", "intake", "routing", "handling", "verification", "console")
DEFAULT_PORTS = {
    "intake": 8080,
    "routing": 8081,
    "handling": 8082,
    "verification": 8083,
    "console": 8084,
    "relay": 8089,
}
# The APIs the console forwards to, each by its URL setting.
CONSOLE_UPSTREAMS = {
    "INTAKE_URL": "intake",
    "ROUTING_URL": "routing",
    "HANDLING_URL": "handling",
    "VERIFICATION_URL": "verification",
}
# What the console never needs: it holds no database connection and no reporter's key.
NOT_FOR_CONSOLE = ("DATABASE_URL", "PII_KEY", "BLIND_INDEX_KEY", "CHECKPOINT_KEY_FILE")
DATABASE = "caseloop"


class Secrets(msgspec.Struct, frozen=True, kw_only=True):
    jwt_secret: str
    pii_key: str
    blind_index_key: str
    service_password: str
    auditor_password: str
    owner_password: str = ""  # the schema's owner: migrations only
    nats_passwords: dict[str, str] = {}  # per NATS user: admin, each service, each department
    service_passwords: dict[str, str] = {}  # per service's own database role (SERVICE_ROLES)
    console_session_key: str = ""  # seals the console's session cookies


def load_secrets(root: Path) -> Secrets:
    """Development secrets, generated on first run and kept (0600) under the stack's folder."""
    import secrets as token

    path = root / "secrets.json"
    if path.exists():
        known = msgspec.json.decode(path.read_bytes(), type=Secrets)
        if known.owner_password and set(SERVICE_ROLES) <= set(known.service_passwords) and known.console_session_key:
            return known
        # Secrets from before the owner role, the per-service roles or the console: add those, keep the rest.
        made = msgspec.structs.replace(
            known,
            owner_password=known.owner_password or token.token_urlsafe(24),
            service_passwords={s: known.service_passwords.get(s) or token.token_urlsafe(24) for s in SERVICE_ROLES},
            console_session_key=known.console_session_key or new_key(),
        )
        path.write_bytes(msgspec.json.encode(made))
        return made

    made = Secrets(
        jwt_secret=token.token_urlsafe(32),
        pii_key=new_key(),
        blind_index_key=new_key(),
        service_password=token.token_urlsafe(24),
        auditor_password=token.token_urlsafe(24),
        owner_password=token.token_urlsafe(24),
        service_passwords={service: token.token_urlsafe(24) for service in SERVICE_ROLES},
        console_session_key=new_key(),
    )
    root.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.encode(made))
    path.chmod(0o600)
    return made


class Process:
    def __init__(self, name: str, port: int, env: dict[str, str], log_path: Path, service: str = "") -> None:
        self.name = name  # `routing`, or `routing-2` for a second replica
        self.service = service or name
        self.port = port
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.service}"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None


class Stack:
    def __init__(
        self,
        root: Path,
        *,
        env: dict[str, str] | None = None,
        ports: dict[str, int] | None = None,
        nats_port: int = 4222,
        pg_port: int = 54329,
        database: str = DATABASE,
        replicas: dict[str, int] | None = None,
        nats_cluster: int = 0,
    ) -> None:
        self.root = Path(root)
        self.base_env = dict(os.environ if env is None else env)
        self.ports = {**DEFAULT_PORTS, **(ports or {})}
        self.nats_port = nats_port
        self.pg_port = pg_port
        self.database = database
        self.nats: NatsServer | None = None
        self.postgres: Postgres | None = None
        self.processes: dict[str, Process] = {}
        self.replicas = {name: max(1, (replicas or {}).get(name, 1)) for name in SERVICES}
        self.nats_cluster_size = nats_cluster
        self.nats_cluster: NatsCluster | None = None
        self.env: dict[str, str] = {}
        self.nats_passwords: dict[str, str] = {}

    def start_infrastructure(self) -> dict[str, str]:
        """Servers (unless NATS_URL / DATABASE_URL point elsewhere), roles, migrations."""
        self.root.mkdir(parents=True, exist_ok=True)
        secrets = load_secrets(self.root)
        env = dict(self.base_env)
        if not env.get("NATS_URL") and self.nats_cluster_size > 1:
            self.nats_cluster = NatsCluster(self.root / "nats-cluster", self.nats_cluster_size).start()
            env["NATS_URL"] = self.nats_cluster.url
            env.setdefault("STREAM_REPLICAS", "3")
        if not env.get("NATS_URL"):
            self._start_nats(env, secrets)
        if not env_value("DATABASE_URL", env):
            self.postgres = Postgres(self.root / "postgres", self.pg_port).start()
            admin = self.postgres.url(self.database)
            asyncio.run(
                bootstrap(
                    admin,
                    self.database,
                    {
                        OWNER_ROLE: secrets.owner_password,
                        SERVICE_ROLE: secrets.service_password,
                        AUDITOR_ROLE: secrets.auditor_password,
                        **{SERVICE_ROLES[s]: secrets.service_passwords[s] for s in SERVICE_ROLES},
                    },
                )
            )
            env["ADMIN_DATABASE_URL"] = with_credentials(admin, OWNER_ROLE, secrets.owner_password)
            env["DATABASE_URL"] = with_credentials(admin, SERVICE_ROLE, secrets.service_password)
            env.update(service_database_env(admin, secrets.service_passwords))
        else:
            asyncio.run(run_migrations(Settings.from_env(env).migrations_url))
        env.setdefault("JWT_SECRET", secrets.jwt_secret)
        env.setdefault("PII_KEY", secrets.pii_key)
        env.setdefault("BLIND_INDEX_KEY", secrets.blind_index_key)
        env.setdefault("CONSOLE_SESSION_KEY", secrets.console_session_key)
        # The checkpoint signing key lives outside the database, where no database role can read it.
        env.setdefault("CHECKPOINT_KEY_FILE", str(self.root / "checkpoint.key"))
        if not Path(env["CHECKPOINT_KEY_FILE"]).exists():
            from shared.audit.checkpoints import new_key_file

            new_key_file(Path(env["CHECKPOINT_KEY_FILE"]))
        # A development backend's signing key: reporter_backend calls must be signed.
        owner = env_value("ADMIN_DATABASE_URL", env)
        if owner:  # keys are registered by the owner; services only read them
            asyncio.run(register_dev_backend(owner, self.root))
        self.env = env
        found = {"nats_url": env["NATS_URL"], "ports": self.ports, "pid": os.getpid()}
        if self.postgres is not None:  # the CLI's auditor and owner connections to the embedded server
            found["pg_port"] = self.postgres.port
        (self.root / "stack.json").write_text(json.dumps(found))
        return env

    def _start_nats(self, env: dict[str, str], secrets: Secrets) -> None:
        """One nats-server with a user per service and department, then the stream (as admin)."""
        settings = Settings.from_env(env)
        names = departments(settings.rules_path)
        passwords = nats_passwords(secrets.nats_passwords, names)
        if passwords != secrets.nats_passwords:
            path = self.root / "secrets.json"
            path.write_bytes(msgspec.json.encode(msgspec.structs.replace(secrets, nats_passwords=passwords)))
        conf = server_conf(passwords, settings.nats_stream, settings.subject_prefix)
        self.nats = NatsServer(self.root / "nats", self.nats_port, extra_conf=conf).start()
        env["NATS_URL"] = self.nats.url
        self.nats_passwords = passwords
        asyncio.run(provision_nats(self.nats.url, passwords[ADMIN], settings, names))

    @property
    def nats_admin(self) -> dict[str, str]:
        """Connection options for the admin NATS user (tests, provisioning); {} without auth."""
        if not self.nats_passwords:
            return {}
        return {"user": ADMIN, "password": self.nats_passwords[ADMIN]}

    @property
    def names(self) -> tuple[str, ...]:
        """Every process in start order: `routing`, `routing-2`, … for a service with replicas."""
        return tuple(replica_name(s, i) for s in SERVICES for i in range(1, self.replicas[s] + 1))

    def replicas_of(self, service: str) -> list[Process]:
        return [self.process(replica_name(service, i)) for i in range(1, self.replicas[service] + 1)]

    def process(self, name: str) -> Process:
        if name not in self.processes:
            service, _, nth = name.partition("-")
            if name not in self.ports:  # another replica: its own port (HTTP is stateless)
                base = self.ports[service]
                self.ports[name] = base + 100 * (int(nth) - 1) if base == DEFAULT_PORTS[service] else free_port()
            env = {**self.env, "HTTP_PORT": str(self.ports[name])}
            # Each service connects as its own database role when it has one (<SERVICE>_DATABASE_URL
            # or its _FILE); else DATABASE_URL. No process sees another one's.
            own = env_value(database_url_variable(service), env) if service in SERVICE_ROLES else None
            for s in SERVICE_ROLES:
                env.pop(database_url_variable(s), None)
                env.pop(f"{database_url_variable(s)}_FILE", None)
            # The owner's credentials stay with the supervisor: a compromised service cannot borrow them.
            env.pop("ADMIN_DATABASE_URL", None)
            env.pop("ADMIN_DATABASE_URL_FILE", None)
            if own:
                env.pop("DATABASE_URL_FILE", None)
                env["DATABASE_URL"] = own
            if self.nats_passwords:  # each service connects as its own NATS user
                env.update(NATS_USER=service, NATS_PASSWORD=self.nats_passwords[service])
            if service == "console":
                for variable in NOT_FOR_CONSOLE:
                    env.pop(variable, None)
                    env.pop(f"{variable}_FILE", None)
                env.update({v: f"http://127.0.0.1:{self.ports[s]}" for v, s in CONSOLE_UPSTREAMS.items()})
            log_path = self.root / "logs" / f"{name}.log"
            self.processes[name] = Process(name, self.ports[name], env, log_path, service)
        return self.processes[name]

    def start_services(self, names: tuple[str, ...] | None = None, timeout: float = 60.0) -> None:
        names = self.names if names is None else names
        for name in names:
            self.process(name).start()
        self.wait_ready(names, timeout)

    def wait_ready(self, names: tuple[str, ...] | None = None, timeout: float = 60.0) -> None:
        names = self.names if names is None else names
        deadline = time.monotonic() + timeout
        waiting = list(names)
        while waiting:
            for name in list(waiting):
                proc = self.process(name).proc
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.process(name).log_path}")
                if self.process(name).ready():
                    waiting.remove(name)
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout}s: {', '.join(waiting)}")
            time.sleep(0.1)

    def restart(self, name: str, timeout: float = 60.0) -> None:
        self.process(name).start()
        self.wait_ready((name,), timeout)

    def stop(self) -> None:
        """Services in reverse start order, then NATS, then PostgreSQL."""
        for name in reversed(list(self.processes)):
            with contextlib.suppress(Exception):
                self.processes[name].stop()
        if self.nats is not None:
            self.nats.stop()
        if self.nats_cluster is not None:
            self.nats_cluster.stop()
        if self.postgres is not None:
            self.postgres.stop()


def service_database_env(admin_url: str, passwords: dict[str, str]) -> dict[str, str]:
    """{INTAKE_DATABASE_URL: intake's own connection, …}: the Stack hands each process its own."""
    return {
        database_url_variable(s): with_credentials(admin_url, role, passwords[s])
        for s, role in SERVICE_ROLES.items()
        if s in passwords
    }


def replica_name(service: str, n: int) -> str:
    return service if n == 1 else f"{service}-{n}"
