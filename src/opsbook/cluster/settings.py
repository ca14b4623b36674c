"""The timings of the cluster (ADR 0017 §4, §6, §8) and the broker URL, from the environment.

=============================  =======  ====================================================
Variable                       Default  Meaning
=============================  =======  ====================================================
OPSBOOK_WORKER_HEARTBEAT       5        seconds between two heartbeats of a worker/replica
OPSBOOK_WORKER_LEASE           60       seconds without a heartbeat before others may declare
                                        a worker dead; it fences itself at 0.75 × this
OPSBOOK_REDISPATCH_AFTER       60       seconds a dispatch may stay unclaimed before the
                                        sweeper sends it again
OPSBOOK_LEADER_POLL            5        seconds between two attempts to take (or confirm) the
                                        leader lock of the background loops
OPSBOOK_BROKER_URL             unset    redis://HOST:6379/0 or amqp://USER@HOST//; unset: no
                                        workers, everything runs in-process as before
=============================  =======  ====================================================
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from opsbook.errors import UsageError

#: The fraction of the lease after which a worker that could not beat stops itself.
FENCE_FRACTION = 0.75
#: Broker URL schemes Celery (kombu) is used with here.
BROKER_SCHEMES = ("redis", "rediss", "redis+socket", "sentinel", "amqp", "amqps", "pyamqp")
BROKER_HINT = "set OPSBOOK_BROKER_URL=redis://HOST:6379/0 or amqp://USER@HOST//"


@dataclass(frozen=True)
class ClusterSettings:
    """Seconds, all of them. Build it with :meth:`from_env` at start-up and pass it in."""

    heartbeat: float = 5.0
    lease: float = 60.0
    redispatch_after: float = 60.0
    leader_poll: float = 5.0
    broker_url: str | None = None

    @property
    def fence_after(self) -> float:
        """Seconds without a successful heartbeat after which a worker fences itself: before
        anyone may declare it dead (``lease``)."""
        return FENCE_FRACTION * self.lease

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClusterSettings:
        env = os.environ if environ is None else environ
        heartbeat = _seconds(env, "OPSBOOK_WORKER_HEARTBEAT", cls.heartbeat)
        lease = _seconds(env, "OPSBOOK_WORKER_LEASE", cls.lease)
        if heartbeat >= FENCE_FRACTION * lease:
            raise UsageError(
                f"OPSBOOK_WORKER_HEARTBEAT ({heartbeat:g} s) must be shorter than 0.75 ×"
                f" OPSBOOK_WORKER_LEASE ({FENCE_FRACTION * lease:g} s): a worker would fence"
                " itself between two heartbeats",
                field="OPSBOOK_WORKER_HEARTBEAT",
                hint="keep the lease at least ten heartbeats long, e.g. 5 and 60 (the defaults)",
            )
        return cls(
            heartbeat=heartbeat,
            lease=lease,
            redispatch_after=_seconds(env, "OPSBOOK_REDISPATCH_AFTER", cls.redispatch_after),
            leader_poll=_seconds(env, "OPSBOOK_LEADER_POLL", cls.leader_poll),
            broker_url=_broker_url(env),
        )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise UsageError(
            f"{name} must be a positive number of seconds, not {raw!r}",
            field=name,
            hint=f"write e.g. {name}={default:g}, or unset it for the default ({default:g})",
        )
    return value


def _broker_url(env: Mapping[str, str]) -> str | None:
    raw = env.get("OPSBOOK_BROKER_URL", "").strip()
    if not raw:
        return None
    scheme = raw.split("://", 1)[0] if "://" in raw else ""
    if scheme not in BROKER_SCHEMES:
        shown = f"{scheme}://…" if scheme else "a value without a scheme"
        raise UsageError(
            f"OPSBOOK_BROKER_URL must be a redis:// or amqp:// URL, not {shown}",
            field="OPSBOOK_BROKER_URL",
            hint=BROKER_HINT,
        )
    return raw
