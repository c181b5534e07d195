"""Rate limits: a token bucket per caller in each process, and a daily count per reporter
kept in PostgreSQL under the phone's blind index (the phone itself is never stored or read).

Over a limit is 429 problem+json with `Retry-After` (seconds).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web

from shared.web.auth import PRINCIPAL
from shared.web.http import Handler, ProblemError

LOCAL = ZoneInfo("Asia/Shanghai")  # the command centre's day starts at local midnight


def too_many(detail: str, retry_after: float, policy: str) -> ProblemError:
    return ProblemError(
        429,
        "Too many requests",
        detail,
        headers={"Retry-After": str(max(1, math.ceil(retry_after))), "RateLimit-Policy": policy},
        kind="rate-limited",
    )


class TokenBuckets:
    """`rate` requests a second per key, bursts up to `burst`; at most `max_keys` keys kept."""

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> float:
        """0 if a request may go now (and counts it), else the seconds until one may."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:  # the least recently seen callers go first
            self._buckets.popitem(last=False)
        return wait

    def wait(self, key: str, now: float | None = None) -> float:
        """The seconds until `key` may go (0: now), without counting a request."""
        if (bucket := self._buckets.get(key)) is None:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, at = bucket
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate


class FailedAuthentications:
    """Refused tokens and signatures per client address: `burst` of them, refilled at `rate` a
    second. An address past its budget gets 429 before anything it sends is verified, so guessing
    and floods of bad credentials cost little and go slowly (shared/auth.py auth_middleware).

    The address is the peer's (no X-Forwarded-For is trusted); an IPv6 client counts by its /64,
    which one subscriber usually holds whole.
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000) -> None:
        self.buckets = TokenBuckets(rate, burst, max_keys)
        self.policy = f'"failed-auth";q={burst};w={max(1, round(burst / rate))}'

    def check(self, address: str) -> None:
        if wait := self.buckets.wait(client_key(address)):
            raise too_many("too many failed authentications from this address", wait, self.policy)

    def failed(self, address: str) -> None:
        self.buckets.take(client_key(address))


def client_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # a Unix socket, or no address at all
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def rate_limit_middleware(buckets: TokenBuckets) -> web.middleware:  # type: ignore[valid-type]
    """Per authenticated caller (role and sub); public routes are not counted."""
    policy = f'"caller";q={buckets.burst};w={max(1, round(buckets.burst / buckets.rate))}'

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        principal = request.get(PRINCIPAL)
        if principal is not None and (wait := buckets.take(f"{principal.role}:{principal.sub}")):
            raise too_many("this caller is sending requests too fast", wait, policy)
        return await handler(request)

    return middleware


def reporter_day(now: datetime) -> date:
    """The day a reporter's reports are counted under: the command centre's local date."""
    return now.astimezone(LOCAL).date()


def reporter_over_limit(now: datetime, limit: int) -> ProblemError:
    """429 for a reporter past today's `limit` (repeat floods, gamed KPIs), until local midnight.

    The count itself is kept with the reporter's key (shared/pii.py `Vault.seal`): one statement
    counts the report and finds the key, so a report costs one round trip for both.
    """
    local = now.astimezone(LOCAL)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), LOCAL)
    return too_many(
        "this reporter has reached today's limit of reports",
        (midnight - local).total_seconds(),
        f'"reporter";q={limit};w=86400',
    )
