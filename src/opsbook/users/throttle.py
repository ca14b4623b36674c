"""Per-client throttles for the public and sign-in endpoints: a token bucket per remote address.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens a second; each attempt
takes one, and an empty bucket refuses with the seconds until the next token (the
``Retry-After`` of a 429). Buckets live in the serving process (each replica counts its own
clients) and are bounded: past ``max_clients`` the full (idle) buckets are dropped first, then
the oldest, so a flood of source addresses cannot grow memory without limit.

Used by ``POST /signin`` (5 attempts a second, bursts of 10; a successful sign-in gives its
token back) and ``POST /status/subscribe`` (5 a minute).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from opsbook.errors import OpsbookError


class TooManyRequests(OpsbookError):
    """A client went past its throttle; ``retry_after`` is in whole seconds (at least 1)."""

    exit_code = 1
    http_status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, retryable=True)
        self.retry_after = retry_after


@dataclass
class Throttle:
    rate: float  # tokens per second
    burst: float  # bucket size
    max_clients: int = 10_000
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> tokens, at

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + max(0.0, now - at) * self.rate)

    def take(self, key: str, *, now: float | None = None) -> float:
        """Take a token for ``key``: 0.0 when allowed, else the seconds until one is free."""
        when = time.monotonic() if now is None else now
        tokens = self._level(key, when)
        if tokens < 1.0:
            self._buckets[key] = (tokens, when)
            return (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens - 1.0, when)
        if len(self._buckets) > self.max_clients:
            self._prune(when)
        return 0.0

    def give_back(self, key: str, *, now: float | None = None) -> None:
        """Return the token of an attempt that should not count (a successful sign-in)."""
        when = time.monotonic() if now is None else now
        if key in self._buckets:
            self._buckets[key] = (min(self.burst, self._level(key, when) + 1.0), when)

    def check(self, key: str, *, what: str, now: float | None = None) -> None:
        """:meth:`take`, raising :class:`TooManyRequests` when the bucket is empty."""
        wait = self.take(key, now=now)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise TooManyRequests(
                f"too many {what} from this address",
                retry_after=seconds,
                hint=f"wait {seconds} second{'s' if seconds != 1 else ''} and try again",
            )

    def _prune(self, now: float) -> None:
        full = [k for k in self._buckets if self._level(k, now) >= self.burst]
        for k in full:
            del self._buckets[k]
        while len(self._buckets) > self.max_clients:  # dict order: oldest first
            del self._buckets[next(iter(self._buckets))]


def client_key(host: str | None) -> str:
    """The bucket key of a request's remote address (``-`` when the server does not know it)."""
    return host or "-"
