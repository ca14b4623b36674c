"""Issue 16 §4, sign-in: a locked account answered in ~4 ms and an unknown name in ~35 ms, so six
wrong passwords told whether a username exists; and ~30 attempts a second per client were
served. Every branch now does the same Argon2 verification (counted here through the verifier
``authenticate`` takes; the timing itself is measured in benchmarks/bench_auth.py), and
``POST /signin`` is throttled per client address (429 with Retry-After over real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from opsbook.db import Database
from opsbook.users import accounts, passwords
from opsbook.users.errors import AuthenticationError
from opsbook.users.throttle import Throttle
from tests.api.harness import Served, serve
from tests.web.console import csrf_of

PW = "correct horse battery staple"
POLICY = accounts.LockoutPolicy(max_failures=3, lockout_seconds=600)
KNOWN = accounts.known_roles()


class CountingVerifier:
    """The real Argon2 verification, counting its calls."""

    def __init__(self) -> None:
        self.calls: list[str | None] = []

    def __call__(self, stored: str | None, password: str) -> bool:
        self.calls.append(stored)
        return passwords.verify_password(stored, password)


def _attempt(db: Database, username: str, password: str, now: datetime) -> tuple[bool, int]:
    verify = CountingVerifier()
    try:
        accounts.authenticate(
            db=db, username=username, password=password, policy=POLICY, now=now, verify=verify
        )
    except AuthenticationError:
        return False, len(verify.calls)
    return True, len(verify.calls)


def test_every_branch_does_the_password_hash_work(sqlite_db: Database) -> None:
    for name in ("alice", "dora", "lucy"):
        accounts.create_account(
            db=sqlite_db, actor="t", username=name, roles=("viewer",), known=KNOWN, password=PW
        )
    accounts.set_disabled(db=sqlite_db, actor="t", username="dora", disabled=True)
    now = datetime.now(UTC)
    for _ in range(POLICY.max_failures):  # lock lucy
        assert _attempt(sqlite_db, "lucy", "wrong password!", now) == (False, 1)
    locked = accounts.get_account(db=sqlite_db, username="lucy").locked_until
    assert locked is not None and accounts.parse_ts(locked) > now

    assert _attempt(sqlite_db, "nobody", PW, now) == (False, 1)  # unknown
    assert _attempt(sqlite_db, "dora", PW, now) == (False, 1)  # disabled, right password
    assert _attempt(sqlite_db, "lucy", PW, now) == (False, 1)  # locked, right password
    assert _attempt(sqlite_db, "lucy", "wrong password!", now) == (False, 1)  # locked, wrong
    assert _attempt(sqlite_db, "alice", "wrong password!", now) == (False, 1)
    assert _attempt(sqlite_db, "alice", PW, now) == (True, 1)
    later = now + timedelta(seconds=POLICY.lockout_seconds + 1)
    assert _attempt(sqlite_db, "lucy", PW, later) == (True, 1)  # the lock ran out


def test_throttle_refuses_an_empty_bucket_and_refills() -> None:
    t = Throttle(rate=5.0, burst=10.0)
    assert [t.take("a", now=100.0) for _ in range(10)] == [0.0] * 10
    assert t.take("a", now=100.0) == pytest.approx(0.2)
    assert t.take("b", now=100.0) == 0.0  # another client has its own bucket
    assert t.take("a", now=100.2) == 0.0  # one token back after 1/rate seconds
    t.give_back("a", now=100.2)
    assert t.take("a", now=100.2) == 0.0
    small = Throttle(rate=1.0, burst=1.0, max_clients=3)
    for i in range(10):
        small.take(f"10.0.0.{i}", now=float(i))
    assert len(small._buckets) <= 3  # a flood of addresses cannot grow memory


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(Path(tmp_path_factory.mktemp("signin")) / "ws", lockout_failures=50) as s:
        s.account("alice", ["viewer"], password=PW)
        yield s


def _post(client: httpx.Client, username: str, password: str) -> httpx.Response:
    page = client.get("/signin")
    return client.post(
        "/signin",
        data={"csrf": csrf_of(page.text), "username": username, "password": password},
    )


def test_signin_attempts_are_throttled_per_client(site: Served) -> None:
    # A bucket that does not refill during the test: 4 refused attempts, then 429.
    site.ctx.cache["signin.throttle"] = Throttle(rate=1e-6, burst=4.0)
    with httpx.Client(base_url=site.url, timeout=30) as c:
        codes = [_post(c, "nobody", "guess number one").status_code for _ in range(4)]
        assert codes == [401] * 4
        r = _post(c, "alice", PW)  # even the right password waits: the bucket is empty
        assert r.status_code == 429
        assert int(r.headers["Retry-After"]) >= 1
        assert "too many sign-in attempts" in r.text
        assert "wait" in r.text
        assert "opsbook_session" not in c.cookies


def test_a_successful_signin_does_not_use_up_the_limit(site: Served) -> None:
    site.ctx.cache["signin.throttle"] = Throttle(rate=1e-6, burst=2.0)
    for _ in range(5):
        with httpx.Client(base_url=site.url, timeout=30) as c:
            assert _post(c, "alice", PW).status_code == 303
    with httpx.Client(base_url=site.url, timeout=30) as c:
        assert _post(c, "alice", "wrong password!").status_code != 429
        assert _post(c, "alice", "wrong password!").status_code != 429
        assert _post(c, "alice", "wrong password!").status_code == 429


def test_a_flood_with_a_forged_form_is_throttled_before_it_is_audited(site: Served) -> None:
    site.ctx.cache["signin.throttle"] = Throttle(rate=1e-6, burst=3.0)

    def denied() -> int:
        return len(site.audit_actions(action="access.denied"))

    before = denied()
    with httpx.Client(base_url=site.url, timeout=30) as c:
        codes = [
            c.post("/signin", data={"csrf": "forged", "username": "x", "password": "y"}).status_code
            for _ in range(20)
        ]
    assert codes == [403] * 3 + [429] * 17
    assert denied() - before == 3  # no database write per refused request
