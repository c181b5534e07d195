"""The component host every service runs in: an aiohttp app with PostgreSQL, NATS, consumers
and background loops started in order and stopped in reverse (aiohttp's cleanup_ctx).

A service describes itself in one `ServiceSpec`: its operations (routes, handlers, roles and
document in one list, see shared/web/openapi.py), the contexts that set up what its handlers
read from the app, its consumers (`Subscription`s) and its loops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

import asyncpg
import msgspec
import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from shared.base.clock import Clock, clock_from
from shared.base.config import Settings, SettingsError
from shared.base.log import configure_logging
from shared.messaging.bus import connect, ensure_stream
from shared.messaging.consumer import Consumer, ConsumerSpec, Handler
from shared.store.db import create_pool
from shared.store.eventstore import EventStore
from shared.web.auth import Principal, Role, auth_middleware
from shared.web.backends import SignedCallers
from shared.web.http import Handler as HttpHandler
from shared.web.http import answer_malformed_requests_as_problems, json_response, problems_middleware
from shared.web.openapi import Operation, access_table, op, serve
from shared.web.ratelimit import FailedAuthentications, TokenBuckets, rate_limit_middleware

log = structlog.get_logger()

SETTINGS = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
POOL = web.AppKey("pool", asyncpg.Pool)
STORE = web.AppKey("store", EventStore)
NC = web.AppKey("nc", NATS)
JS = web.AppKey("js", JetStreamContext)
STOP = web.AppKey("stop", asyncio.Event)
CONSUMERS = web.AppKey("consumers", list[Consumer])
READY = web.AppKey("ready", dict[str, bool])
USES_POSTGRES = web.AppKey("uses_postgres", bool)

# A background loop: runs until the event is set (deadline watchers, timers, the relay).
Loop = Callable[[web.Application, asyncio.Event], Awaitable[None]]
# What the app holds while it runs (policy, keys): set up before PostgreSQL, torn down after.
Context = Callable[[web.Application], AsyncIterator[None]]


# Makes a consumer's message handler from the app, once the contexts have set up what it reads.
HandlerFactory = Callable[[web.Application], Handler]


class Subscription(msgspec.Struct, frozen=True):
    """A durable consumer and the factory of the handler it runs on each message."""

    consumer: ConsumerSpec
    handler: HandlerFactory


def from_app(handler: Callable[..., Awaitable[None]], **needs: web.AppKey[Any]) -> HandlerFactory:
    """The factory of `handler(tx, msg, **needs)`: each need (keyword -> app key) read from the app
    once, when the consumer starts; with no needs, the handler itself."""

    def make(app: web.Application) -> Handler:
        return partial(handler, **{name: app[key] for name, key in needs.items()}) if needs else handler

    return make


class ServiceSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    operations: Sequence[Operation] = ()  # beyond HEALTH, which every service serves
    contexts: Sequence[Context] = ()
    consumers: Sequence[Subscription] = ()
    loops: Sequence[Loop] = ()
    # Settings the service cannot run without: start-up refuses them missing or empty, by name.
    requires: tuple[str, ...] = ("database_url", "jwt_secret")
    # False: a service with no database of its own (the console reads and writes through the APIs).
    postgres: bool = True
    # The service's own authentication in place of bearer tokens checked by `access` (the console's
    # session cookies); it sets the request's PRINCIPAL for the rate limit, as the bearer check does.
    authentication: Callable[[Settings], Middleware] | None = None
    # Routes that are not API operations: a service's pages and files (the console), behind its
    # own `authentication`.
    pages: Callable[[web.Application], None] | None = None

    @property
    def access(self) -> Mapping[str, frozenset[Role]]:
        """Route name -> the roles that may call it; a route absent from it is refused to all."""
        return access_table(self.operations)


def consumer_spec(settings: Settings, durable: str, *types: str, **overrides: Any) -> ConsumerSpec:
    """A durable consumer of the given event types, sized from the settings."""
    options: dict[str, Any] = {
        "durable": durable,
        "filter_subjects": tuple(f"{settings.subject_prefix}.{t}.>" for t in types),
        "max_deliver": settings.max_deliver,
        "ack_wait": settings.ack_wait,
        "nak_delay": settings.nak_delay,
    }
    options.update(overrides)
    return ConsumerSpec(**options)


def build(settings: Settings, spec: ServiceSpec, clock: Clock | None = None) -> web.Application:
    """The service's app: nothing connects until it starts."""
    answer_malformed_requests_as_problems()
    authentication = (
        spec.authentication(settings)
        if spec.authentication is not None
        else auth_middleware(
            spec.access,
            secret=settings.jwt_secret,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            signed=partial(_signed, SignedCallers()),
            failures=FailedAuthentications(settings.auth_failure_rate, settings.auth_failure_burst),
        )
    )
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            problems_middleware,
            authentication,
            rate_limit_middleware(TokenBuckets(settings.rate_per_second, settings.rate_burst)),
            *([_fault_hook(settings)] if settings.test_fault_canary else []),
        ],
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock or clock_from(settings.clock_file)
    app[STOP] = asyncio.Event()
    app[CONSUMERS] = []
    # A service may add checks of its own here (the console: its live stream), all must be true.
    app[READY] = {"shutting_down": False}
    app[USES_POSTGRES] = spec.postgres
    serve(app, spec.name, [*HEALTH, *spec.operations])
    if spec.pages is not None:
        spec.pages(app)
    app.on_shutdown.append(_not_ready)
    app.cleanup_ctx.extend([*spec.contexts, *([_postgres] if spec.postgres else []), _nats, _runner(spec)])
    return app


def _fault_hook(settings: Settings) -> web.middleware:  # type: ignore[valid-type]
    """Tests only (TEST_FAULT_CANARY): an internal error inside the authenticated request path."""

    @web.middleware
    async def fault(request: web.Request, handler: HttpHandler) -> web.StreamResponse:
        canary = settings.test_fault_canary.reveal()  # noqa: F841 - a local the traceback must not show
        secret = settings.jwt_secret.reveal()  # noqa: F841
        if request.headers.get("X-Test-Fault") == "500":
            raise RuntimeError("fault injected by a test")
        return await handler(request)

    return fault


async def _signed(callers: SignedCallers, request: web.Request) -> Principal:
    return await callers.authenticate(request, request.app[POOL])


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "pass"})


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    checks = {"postgres": False, "nats": False} if app[USES_POSTGRES] else {"nats": False}
    if POOL in app:
        with contextlib.suppress(Exception):
            checks["postgres"] = await app[POOL].fetchval("SELECT true", timeout=2) is True
    if NC in app:
        checks["nats"] = app[NC].is_connected
    checks.update((name, ok) for name, ok in app[READY].items() if name != "shutting_down")
    ready = all(checks.values()) and not app[READY]["shutting_down"]
    body = {"status": "pass" if ready else "fail", "checks": checks}
    return json_response(body, status=200 if ready else 503)


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    checks: dict[str, bool] | None = None


# fmt: off
HEALTH = (
    op("GET", "/healthz", "healthz", healthz, "The process is alive", responses={200: Health}, public=True),
    op("GET", "/livez", "livez", healthz, "The process is alive", responses={200: Health}, public=True),
    op("GET", "/readyz", "readyz", readyz, "PostgreSQL and NATS are reachable", responses={200: Health, 503: Health},
       public=True),
)
# fmt: on


async def _not_ready(app: web.Application) -> None:
    app[READY]["shutting_down"] = True
    app[STOP].set()


async def _postgres(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await _retry(
        "postgres",
        lambda: create_pool(
            settings.database_url.reveal(),
            size=settings.db_pool_size,
            statement_timeout_ms=settings.statement_timeout_ms,
        ),
    )
    app[POOL] = pool
    app[STORE] = EventStore(pool, app[CLOCK])
    yield
    await pool.close()


async def _nats(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    nc = await _retry("nats", lambda: connect(settings, _service_name(app)))
    app[NC] = nc
    app[JS] = nc.jetstream(timeout=10)
    await _retry("stream", lambda: ensure_stream(app[JS], settings, settings.stream_replicas))
    yield
    with contextlib.suppress(Exception):
        await nc.drain()


def _runner(spec: ServiceSpec) -> Callable[[web.Application], AsyncIterator[None]]:
    async def run(app: web.Application) -> AsyncIterator[None]:
        stop = app[STOP]
        tasks: list[asyncio.Task[None]] = []
        for subscription in spec.consumers:
            consumer = Consumer(
                app[JS], app[STORE], app[SETTINGS].nats_stream, subscription.consumer, subscription.handler(app)
            )
            app[CONSUMERS].append(consumer)
            tasks.append(asyncio.create_task(consumer.run(stop), name=f"consumer:{consumer.spec.durable}"))
        tasks.extend(asyncio.create_task(_supervised(loop, app, stop), name=loop.__name__) for loop in spec.loops)
        log.info("service_started", consumers=[c.spec.durable for c in app[CONSUMERS]])
        yield
        stop.set()
        # Consumers finish the message in hand; give them the drain time, then cancel.
        _, pending = await asyncio.wait(tasks, timeout=10) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    return run


async def _supervised(loop: Loop, app: web.Application, stop: asyncio.Event) -> None:
    """Keep a background loop alive: log and restart it if it fails."""
    while not stop.is_set():
        try:
            await loop(app, stop)
            return
        except Exception:
            log.exception("loop_failed", loop=loop.__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def _retry(what: str, connect_once: Callable[[], Awaitable[Any]], attempts: int = 60) -> Any:
    """Start-up waits for its dependencies (a stack starting in any order) instead of dying."""
    for attempt in range(attempts):
        try:
            return await connect_once()
        except Exception as exc:
            if attempt == attempts - 1:
                raise
            log.warning("dependency_unavailable", dependency=what, error=str(exc) or type(exc).__name__)
            await asyncio.sleep(min(0.2 * (attempt + 1), 2.0))
    raise AssertionError("unreachable")


def _service_name(app: web.Application) -> str:
    return str(structlog.contextvars.get_contextvars().get("service", "caseloop"))


def run(spec_factory: Callable[[Settings], ServiceSpec], default_port: int) -> None:
    """A service's main(): settings, logging, then serve until SIGTERM or Ctrl-C."""
    import os

    env = dict(os.environ)
    env.setdefault("HTTP_PORT", str(default_port))
    try:
        settings = Settings.from_env(env)
        spec = spec_factory(settings)
        settings.require(spec.requires)
    except SettingsError as exc:
        # Refuse at once, naming the setting, rather than serve with an empty key.
        configure_logging("caseloop")
        log.error("settings_invalid", error=str(exc))
        raise SystemExit(f"caseloop: {exc}") from None
    configure_logging(spec.name, settings.log_format, settings.log_level)
    web.run_app(
        build(settings, spec),
        host=settings.http_host,
        port=settings.http_port,
        print=None,
        access_log=None,
        shutdown_timeout=15,
    )
