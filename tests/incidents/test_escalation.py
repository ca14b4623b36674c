"""Durable escalation timers: page the next level when nobody acknowledges, never twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from opsbook.db import open_database
from opsbook.incidents import escalation, lifecycle
from opsbook.incidents.service import declare, get, timeline
from tests.incidents.harness import Env

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def _sev2(env: Env) -> str:
    return declare(
        db=env.db,
        config=env.config,
        title="Accounts down",
        actor="alice",
        services=["account"],
        severity="SEV2",
        now=T0,
    ).incident.ref


def _fire(env: Env, at: datetime, owner: str = "test") -> list[escalation.Fired]:
    out = []
    for t in escalation.due_timers(db=env.db, now=at):
        f = escalation.fire(
            db=env.db,
            timer=t,
            policy=env.config.policy,
            contacts=env.config.contacts,
            key=env.config.key,
            owner=owner,
            now=at,
        )
        if f is not None:
            out.append(f)
    return out


def _paged_levels(env: Env, ref: str) -> list[str]:
    inc = get(db=env.db, ref=ref)
    return [
        e.payload["level"]
        for e in timeline(db=env.db, incident=inc)
        if e.kind == "escalation.paged"
    ]


def test_nothing_fires_before_the_ack_target(env: Env) -> None:
    ref = _sev2(env)
    assert _fire(env, T0 + timedelta(seconds=1.9)) == []
    assert _paged_levels(env, ref) == ["level-1"]


def test_unacknowledged_escalates_level_by_level_then_repeats_then_stops(env: Env) -> None:
    ref = _sev2(env)  # ack target 2 s in the test policy
    fired = _fire(env, T0 + timedelta(seconds=2))
    assert [f.outcome for f in fired] == ["paged:level-2"]
    assert fired[0].lateness == 0
    assert _fire(env, T0 + timedelta(seconds=4))[0].outcome == "paged:level-3"
    assert _fire(env, T0 + timedelta(seconds=6))[0].outcome == "repeated:level-3"  # repeat: 1
    assert _fire(env, T0 + timedelta(seconds=8))[0].outcome == "exhausted"
    assert _fire(env, T0 + timedelta(seconds=60)) == []
    assert _paged_levels(env, ref) == ["level-1", "level-2", "level-3", "level-3"]
    assert get(db=env.db, ref=ref).level == 2


def test_acknowledging_stops_escalation(env: Env) -> None:
    ref = _sev2(env)
    lifecycle.acknowledge(db=env.db, ref=ref, actor="bob", now=T0 + timedelta(seconds=1))
    assert _fire(env, T0 + timedelta(seconds=30)) == []
    assert _paged_levels(env, ref) == ["level-1"]


def test_a_timer_fires_once_even_when_two_processes_race(env: Env) -> None:
    ref = _sev2(env)
    other = open_database(env.db.url)
    try:
        at = T0 + timedelta(seconds=3)
        timers = escalation.due_timers(db=env.db, now=at)
        assert len(timers) == 1
        a = escalation.fire(
            db=env.db,
            timer=timers[0],
            policy=env.config.policy,
            contacts=env.config.contacts,
            key=env.config.key,
            owner="a",
            now=at,
        )
        b = escalation.fire(
            db=other,
            timer=timers[0],
            policy=env.config.policy,
            contacts=env.config.contacts,
            key=env.config.key,
            owner="b",
            now=at,
        )
    finally:
        other.close()
    assert a is not None and b is None
    assert _paged_levels(env, ref) == ["level-1", "level-2"]
    pages = env.db.query("SELECT recipient FROM notifications WHERE level = 'level-2'")
    assert len(pages) == 2  # l2 and l2chat, once each


def test_update_reminders_follow_the_cadence_until_resolved(env: Env) -> None:
    ref = _sev2(env)
    lifecycle.acknowledge(db=env.db, ref=ref, actor="bob", now=T0)
    assert [f.outcome for f in _fire(env, T0 + timedelta(hours=1))] == ["reminded"]
    lifecycle.resolve(db=env.db, ref=ref, actor="bob")
    assert _fire(env, T0 + timedelta(hours=3)) == []
    kinds = [e.kind for e in timeline(db=env.db, incident=get(db=env.db, ref=ref))]
    assert kinds.count("update.due") == 1
