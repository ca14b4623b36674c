"""Schemathesis against the served OpenAPI spec (bounded): no 5xx, every answer is documented
and matches its schema, invalid input is rejected, and no endpoint ignores authentication.

``positive_data_acceptance`` is left out on purpose: the spec cannot say which runbook ids or
execution ids exist, so schema-valid requests are often (rightly) 404 or 422.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.api.harness import Served, serve


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(Path(tmp_path_factory.mktemp("fuzz")) / "ws") as s:
        yield s


@pytest.fixture(scope="module")
def fuzz_token(fuzz_server: Served) -> str:
    fuzz_server.account("fuzzer", ["admin"])
    return fuzz_server.token("fuzzer")


def test_api_matches_its_spec(fuzz_server: Served, fuzz_token: str) -> None:
    # Schemathesis' own pytest plugin does not run under pytest 9 yet, so each operation's
    # Hypothesis strategy is driven here directly.
    api = schemathesis.openapi.from_url(fuzz_server.url + "/api/v1/openapi.json")
    failures: list[str] = []
    count = 0
    for result in api.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid spec raises here

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            case.call_and_validate(
                base_url=fuzz_server.url,
                headers={"Authorization": f"Bearer {fuzz_token}"},
                excluded_checks=[positive_data_acceptance],
                timeout=10,
            )

        count += 1
        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert count >= 20
    assert not failures, "\n\n".join(failures)
