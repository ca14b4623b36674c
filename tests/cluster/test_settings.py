"""ClusterSettings from the environment: defaults, values, and bad values named."""

from __future__ import annotations

import pytest

from opsbook.cluster.settings import ClusterSettings
from opsbook.errors import UsageError


def test_defaults_and_values_from_the_environment() -> None:
    default = ClusterSettings.from_env({})
    assert (default.heartbeat, default.lease, default.fence_after) == (5.0, 60.0, 45.0)
    assert (default.redispatch_after, default.leader_poll, default.broker_url) == (60.0, 5.0, None)
    tests = ClusterSettings.from_env(
        {
            "OPSBOOK_WORKER_HEARTBEAT": "0.25",
            "OPSBOOK_WORKER_LEASE": "2",
            "OPSBOOK_REDISPATCH_AFTER": "1",
            "OPSBOOK_LEADER_POLL": "0.5",
            "OPSBOOK_BROKER_URL": "redis://127.0.0.1:6379/0",
        }
    )
    assert (tests.heartbeat, tests.lease, tests.fence_after) == (0.25, 2.0, 1.5)
    assert (tests.redispatch_after, tests.leader_poll) == (1.0, 0.5)
    assert tests.broker_url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"OPSBOOK_WORKER_HEARTBEAT": "soon"}, "OPSBOOK_WORKER_HEARTBEAT"),
        ({"OPSBOOK_WORKER_LEASE": "0"}, "OPSBOOK_WORKER_LEASE"),
        ({"OPSBOOK_REDISPATCH_AFTER": "-1"}, "OPSBOOK_REDISPATCH_AFTER"),
        ({"OPSBOOK_LEADER_POLL": "nan"}, "OPSBOOK_LEADER_POLL"),
        ({"OPSBOOK_WORKER_HEARTBEAT": "50"}, "OPSBOOK_WORKER_HEARTBEAT"),  # >= 0.75 x lease
        ({"OPSBOOK_BROKER_URL": "http://broker"}, "OPSBOOK_BROKER_URL"),
        ({"OPSBOOK_BROKER_URL": "localhost:6379"}, "OPSBOOK_BROKER_URL"),
    ],
)
def test_bad_values_name_the_variable_and_the_fix(env: dict[str, str], field: str) -> None:
    with pytest.raises(UsageError) as err:
        ClusterSettings.from_env(env)
    assert err.value.field == field
    assert field in err.value.message
    assert err.value.hint
    assert err.value.exit_code == 2
