"""Issue 16 §4, status page subscriptions: 9,500 anonymous ``POST /status/subscribe`` in 58 s filled
the global 10,000 cap, a real customer then got 409, and every update would have mailed the
fake addresses. Now: double opt-in (a signed link in a confirmation mail; unconfirmed entries
expire and are never mailed), 5 requests a minute per client address (429 + Retry-After), and
caps that count only pending entries, oldest first, so no flood locks out a real subscriber.

The attack over real HTTP (uvicorn, a real SMTP server; client addresses through
X-Forwarded-For from the trusted 127.0.0.1), the caps and expiry on the domain functions."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from opsbook.db import Database, open_database
from opsbook.errors import PermissionDenied, ValidationError
from opsbook.incidents import links, subscribers
from opsbook.notify.deliver import deliver_pending
from opsbook.notify.keys import workspace_key
from opsbook.workspace.init import template_files
from tests.api.harness import Served, serve
from tests.incidents.harness import (
    Env,
    SmtpSink,
    contacts_yaml,
    http_receiver,
    incident_env,
    policy_yaml,
    smtp_server,
)
from tests.web.console import signin

PW = "correct horse battery staple"
LINK = re.compile(r"(http://\S+/status/confirm\?t=\S+)")
World = tuple[Served, SmtpSink]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    template = dict(template_files())
    policy = next(v for k, v in template.items() if k.name == "incident_policy.yaml").decode()
    with smtp_server() as smtp, http_receiver() as hooks:
        root = Path(tmp_path_factory.mktemp("subscriptions")) / "ws"
        with serve(root) as s:
            (root / "incident_policy.yaml").write_text(
                policy_yaml(policy, smtp_port=smtp.port, public=s.url)
            )
            (root / "contacts.yaml").write_text(contacts_yaml(hooks.url))
            s.account("pete", ["engineer"], password=PW)
            yield s, smtp


def _wait_mail(smtp: SmtpSink, to: str, n: int = 1) -> str:
    deadline = time.monotonic() + 20
    while len(smtp.to(to)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    mails = smtp.to(to)
    assert len(mails) >= n, f"no mail to {to}: {smtp.mails}"
    return mails[n - 1].body


def _link(body: str) -> str:
    m = LINK.search(body)
    assert m, body
    return m.group(1)


def test_a_flood_is_throttled_and_does_not_lock_out_a_real_subscriber(world: World) -> None:
    s, smtp = world
    flood = {"X-Forwarded-For": "198.51.100.9"}
    customer = {"X-Forwarded-For": "203.0.113.7"}
    with closing(httpx.Client(base_url=s.url, timeout=30)) as anon:
        codes = []
        for i in range(40):  # the attack: one client, many invented addresses, as fast as it can
            r = anon.post(
                "/status/subscribe", json={"email": f"fake{i}@example.net"}, headers=flood
            )
            codes.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["Retry-After"]) >= 1
                assert r.json()["detail"] == "too many subscription requests from this address"
        assert codes[:5] == [202] * 5 and codes.count(202) <= 6, codes
        r = anon.post("/status/subscribe", data={"email": "x@example.net"}, headers=flood)
        assert r.status_code == 429 and "Retry-After" in r.headers
        assert "too many subscription requests" in r.text and "Fix: wait" in r.text

        # A real customer from elsewhere is served, and the answer says nothing about the list.
        r = anon.post("/status/subscribe", data={"email": "Customer@Example.com"}, headers=customer)
        assert r.status_code == 200 and "Check your inbox" in r.text
        body = _wait_mail(smtp, "customer@example.com")
        assert "Confirm" in smtp.to("customer@example.com")[0].subject
        link = _link(body)
        assert link.startswith(f"{s.url}/status/confirm?t=")
        assert s.db.one(
            "SELECT state FROM status_subscribers WHERE email = 'customer@example.com'"
        ) == {"state": "pending"}

        r = anon.get(link.removeprefix(s.url))
        assert r.status_code == 200 and "Subscribed: customer@example.com" in r.text
        assert anon.get(link.removeprefix(s.url)).status_code == 200  # again: still fine

        # The same answer for an address that is already subscribed, and no second mail.
        r = anon.post("/status/subscribe", json={"email": "customer@example.com"}, headers=customer)
        assert r.status_code == 202 and r.json()["pending"] is True
        r2 = anon.post("/status/subscribe", json={"email": "new@example.org"}, headers=customer)
        assert r2.json() == r.json()

        tampered = link.removeprefix(s.url)[:-4] + "0000"
        r = anon.get(tampered)
        assert r.status_code == 403 and "not valid" in r.text
        ack = links.make_token(key=workspace_key(s.ctx.workspace.state_dir), incident_id=1, who="a")
        assert anon.get(f"/status/confirm?t={ack}").status_code == 403
        r = anon.post("/status/subscribe", json={"email": "not an address"}, headers=customer)
        assert r.status_code == 422 and r.json()["field"] == "email"
    assert s.audit_actions(action="status.subscribe.confirmed")

    # A published update goes to the confirmed customer only, never to the flood's addresses.
    c, csrf = signin(s.url, "pete", PW)
    with closing(c):
        r = c.post(
            "/incidents",
            data={
                "csrf": csrf,
                "title": "Internal title",
                "type": "outage",
                "services": ["payment"],
                "impact": "significant",
                "urgency": "high",
                "commander": "pete",
            },
        )
        assert r.status_code == 303, r.text
        ref = r.headers["location"].rsplit("/", 1)[1]
        c.post(
            f"/incidents/{ref}/updates",
            data={"csrf": csrf, "audience": "public", "text": "Card payments are failing"},
        )
        publish = re.search(
            rf"/incidents/{ref}/updates/\d+/publish", c.get(f"/incidents/{ref}").text
        )
        assert publish
        r = c.post(publish.group(0), data={"csrf": csrf})
        assert r.status_code == 303
    update = _wait_mail(smtp, "customer@example.com", n=2)
    assert "Card payments are failing" in update
    fake_mail = [m for m in smtp.mails if m.to.endswith("@example.net")]
    assert all("Confirm" in m.subject for m in fake_mail)  # confirmation requests only
    updates = s.db.query("SELECT recipient FROM notifications WHERE kind = 'update'")
    assert len(updates) == 1 and "customer@example.com" in updates[0]["recipient"]

    # Every update carries the address's own unsubscribe link: opening it changes nothing
    # (mail scanners open links), the button does; a forged link is refused.
    stop = re.search(r"To stop these emails: (http://\S+/status/unsubscribe\?t=\S+)", update)
    assert stop, update
    path = stop.group(1).removeprefix(s.url)
    with closing(httpx.Client(base_url=s.url, timeout=30)) as anon:
        page = anon.get(path)
        assert page.status_code == 200 and "Stop sending incident updates to" in page.text
        assert "customer@example.com" in page.text
        assert (
            s.db.one("SELECT COUNT(*) AS n FROM status_subscribers WHERE state = 'confirmed'")["n"]
            == 1
        )
        token = path.split("t=", 1)[1]
        forged = anon.post("/status/unsubscribe", data={"t": token[:-4] + "0000"})
        assert forged.status_code == 403 and "not valid" in forged.text
        confirm_token = _link(body).split("t=", 1)[1]  # a confirmation link cannot stand in
        assert anon.post("/status/unsubscribe", data={"t": confirm_token}).status_code == 403
        done = anon.post("/status/unsubscribe", data={"t": token})
        assert done.status_code == 200
        assert "Unsubscribed: customer@example.com will get no more" in done.text
        assert anon.post("/status/unsubscribe", data={"t": token}).status_code == 200  # again
    assert not s.db.query("SELECT 1 FROM status_subscribers WHERE email = 'customer@example.com'")
    assert s.audit_actions(action="status.unsubscribed")


# -- the domain: caps, expiry, the link ---------------------------------------------------------
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with incident_env(tmp_path) as e:
        yield e


def _ask(
    env: Env,
    email: str,
    client: str,
    now: datetime,
    *,
    per_client: int = subscribers.PENDING_PER_CLIENT,
    max_pending: int = subscribers.PENDING_MAX,
) -> int | None:
    return subscribers.subscribe(
        db=env.db,
        email=email,
        client=client,
        key=env.config.key,
        public_url="https://status.example.com",
        now=now,
        per_client=per_client,
        max_pending=max_pending,
    )


def _token(env: Env, email: str) -> str:
    body = env.db.one(
        "SELECT message FROM notifications WHERE kind = 'subscription' AND recipient LIKE ?"
        " ORDER BY id DESC",
        (f'%"{email}"%',),
    )
    assert body is not None
    m = re.search(r"/status/confirm\?t=([A-Za-z0-9_\-]+\.[0-9a-f]+)", body["message"])
    assert m
    return m.group(1)


def test_caps_count_only_pending_and_drop_the_oldest_first(env: Env) -> None:
    assert _ask(env, "real@example.com", "10.0.0.1", T0) is not None
    subscribers.confirm(
        db=env.db, key=env.config.key, token=_token(env, "real@example.com"), now=T0
    )
    for i in range(10):  # one client: only its 3 newest pending entries are kept
        _ask(env, f"a{i}@example.net", "10.6.6.6", T0 + timedelta(seconds=i), per_client=3)
    pending = env.db.query("SELECT email FROM status_subscribers WHERE state = 'pending'")
    assert sorted(r["email"] for r in pending) == [
        "a7@example.net",
        "a8@example.net",
        "a9@example.net",
    ]
    for i in range(10):  # many clients: the whole table keeps its 4 newest pending
        _ask(
            env,
            f"b{i}@example.net",
            f"10.7.0.{i}",
            T0 + timedelta(minutes=1, seconds=i),
            max_pending=4,
        )
    pending = env.db.query("SELECT email FROM status_subscribers WHERE state = 'pending'")
    assert len(pending) == 4 and {r["email"] for r in pending} == {
        f"b{i}@example.net" for i in range(6, 10)
    }
    # The confirmed subscriber is untouched, and a real newcomer is never refused.
    assert [r.name for r in subscribers.subscribers(db=env.db)] == ["real@example.com"]
    assert _ask(env, "late@example.com", "10.0.0.2", T0 + timedelta(minutes=2), max_pending=4)
    assert subscribers.counts(db=env.db, now=T0 + timedelta(minutes=2)) == {
        "confirmed": 1,
        "pending": 4,
    }


def test_unconfirmed_entries_expire_and_are_never_mailed_updates(env: Env) -> None:
    _ask(env, "slow@example.com", "10.0.0.1", T0)
    token = _token(env, "slow@example.com")
    assert subscribers.subscribers(db=env.db) == []  # pending: no updates
    assert (
        _ask(env, "slow@example.com", "10.0.0.1", T0 + timedelta(minutes=5)) is None
    )  # no re-mail yet
    with pytest.raises(PermissionDenied):
        subscribers.confirm(
            db=env.db, key=env.config.key, token=token, now=T0 + timedelta(hours=25)
        )
    assert _ask(env, "slow@example.com", "10.0.0.1", T0 + timedelta(hours=25)) is not None
    assert subscribers.counts(db=env.db, now=T0 + timedelta(hours=25)) == {
        "confirmed": 0,
        "pending": 1,
    }
    with pytest.raises(PermissionDenied):  # the first link belonged to the expired entry
        subscribers.confirm(
            db=env.db, key=env.config.key, token=token, now=T0 + timedelta(hours=25)
        )
    fresh = _token(env, "slow@example.com")
    assert (
        subscribers.confirm(
            db=env.db, key=env.config.key, token=fresh, now=T0 + timedelta(hours=26)
        )
        == "slow@example.com"
    )
    with pytest.raises(PermissionDenied):  # another workspace's key
        subscribers.confirm(db=env.db, key=b"other key", token=fresh, now=T0 + timedelta(hours=26))
    with pytest.raises(ValidationError):
        _ask(env, "x@y.z, evil@example.com", "10.0.0.1", T0)


def test_confirmation_mail_is_delivered_by_the_outbox(env: Env) -> None:
    nid = _ask(env, "ann@example.com", "10.0.0.1", datetime.now(UTC))
    assert nid is not None
    done = asyncio.run(
        deliver_pending(
            db=env.db,
            settings=env.config.policy.notify,
            key=env.config.webhook_key,
            owner="t",
            ids=[nid],
        )
    )
    assert [d.outcome for d in done] == ["sent"]
    mail = env.smtp.wait_for(1)[0]
    assert mail.to == "ann@example.com"
    assert "https://status.example.com/status/confirm?t=" in mail.body
    assert "within 24 hours" in mail.body


def test_the_caps_and_the_link_on_both_databases(any_db: Database) -> None:
    key = b"k" * 32
    try:
        for i in range(6):
            subscribers.subscribe(
                db=any_db,
                email=f"c{i}@example.net",
                client="10.9.9.9",
                key=key,
                public_url="http://x",
                now=T0 + timedelta(seconds=i),
                per_client=2,
            )
        rows = any_db.query("SELECT email FROM status_subscribers ORDER BY id")
        assert [r["email"] for r in rows] == ["c4@example.net", "c5@example.net"]
        msg = any_db.one(
            "SELECT message FROM notifications WHERE kind = 'subscription' ORDER BY id DESC"
        )
        assert msg is not None
        m = re.search(r"confirm\?t=([\w\-]+\.[0-9a-f]+)", msg["message"])
        assert m
        assert subscribers.confirm(db=any_db, key=key, token=m.group(1), now=T0) == "c5@example.net"
        assert [r.name for r in subscribers.subscribers(db=any_db)] == ["c5@example.net"]
    finally:
        any_db.execute("DELETE FROM status_subscribers")
        any_db.execute("DELETE FROM notifications WHERE kind = 'subscription'")


def test_migration_carries_old_subscriptions_over_as_confirmed(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    import opsbook.db._database as dbmod

    path = tmp_path / "old.db"
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(dbmod.__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", f"sqlite:///{path}")
    command.upgrade(cfg, "0004")  # the schema of the single opt-in version
    old = dbmod.connect(f"sqlite:///{path}")
    for email in ("ann@example.com", "ann@example.com", "bob@example.com"):
        recipient = subscribers.recipient_of(email).to_dict()
        old.execute(
            "INSERT INTO notifications (incident_id, kind, level, recipient, message, state,"
            " created_at) VALUES (NULL, 'subscription', 'subscribers', ?, '{}', 'active', ?)",
            (json.dumps(recipient), "2026-11-30T10:00:00.000000Z"),
        )
    old.close()
    db = open_database(f"sqlite:///{path}")
    try:
        assert [r.name for r in subscribers.subscribers(db=db)] == [
            "ann@example.com",
            "bob@example.com",
        ]
        assert db.query("SELECT DISTINCT client FROM status_subscribers") == [
            {"client": "migrated"}
        ]
        assert db.one("SELECT COUNT(*) AS n FROM notifications") == {"n": 0}
    finally:
        db.close()
