from __future__ import annotations

import pytest

from opsbook.errors import UsageError
from opsbook.executions.settings import ServerSettings


def test_settings_from_the_environment() -> None:
    s = ServerSettings.from_env(
        {
            "OPSBOOK_SERVE_PORT": "9000",
            "OPSBOOK_SERVE_SCHEDULES": "no",
            "OPSBOOK_SERVE_PUBLIC_URL": "https://ops.example.com",
            "OPSBOOK_OIDC_ISSUER": "https://login.example.com/t/v2.0",
            "OPSBOOK_OIDC_CLIENT_ID": "abc",
            "OPSBOOK_OIDC_ROLE_MAP": "Ops.L1=operator, Ops.L2 = engineer,broken",
        }
    )
    assert s.port == 9000 and s.schedules is False
    assert s.secure_cookies and s.oidc_enabled
    assert s.role_map() == {"Ops.L1": "operator", "Ops.L2": "engineer"}
    assert s.with_overrides(port=None, host="0.0.0.0").port == 9000
    assert "OPSBOOK_OIDC_CLIENT_SECRET" in ServerSettings.describe()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OPSBOOK_SERVE_PORT", "x"),
        ("OPSBOOK_SERVE_SCHEDULES", "maybe"),
        ("OPSBOOK_SERVE_SESSION_HOURS", "long"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(UsageError) as e:
        ServerSettings.from_env({name: value})
    assert e.value.field == name
