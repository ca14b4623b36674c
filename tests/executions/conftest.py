"""Fixtures of the execution services' tests: the cluster's real redis-server, for the
operations in broker mode (ADR 0017)."""

from __future__ import annotations

from tests.cluster.conftest import redis_server, redis_url

__all__ = ["redis_server", "redis_url"]  # fixtures, found by name
