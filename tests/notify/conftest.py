from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.incidents.harness import Env, incident_env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with incident_env(tmp_path) as e:
        yield e
