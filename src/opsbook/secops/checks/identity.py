"""Accounts, tokens and logins: brute force and token use from new addresses (the account
service's security log), dormant accounts (opsbook's and the platform's), and opsbook API tokens
that never expire, are unused or too broad."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from opsbook.secops.checks._base import CheckContext, Failure, Outcome
from opsbook.secops.checks.logs import events

WINDOW = timedelta(minutes=15)
BRUTE_FORCE = 10  # failed logins from one address in the window
DORMANT_DAYS = 90
MAX_TOKEN_DAYS = 365


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S")


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


async def brute_force(cx: CheckContext) -> Outcome:
    if cx.logs_dir is None:
        return Outcome.skipped("reads the sandbox's account log; production: the SIEM rule")
    since = _iso(cx.now - WINDOW)
    found = await asyncio.to_thread(
        lambda: list(events(cx.logs_dir / "account.log", names=("auth.login_failed",), since=since))  # type: ignore[operator]
    )
    per_source = Counter(str(e.get("src_ip") or "unknown") for e in found)
    users: dict[str, set[str]] = {}
    for e in found:
        users.setdefault(str(e.get("src_ip") or "unknown"), set()).add(str(e.get("user", "")))
    failures = [
        Failure(
            subject=f"source {ip}",
            text=f"{n} failed logins from {ip} in the last 15 minutes"
            f" against {len(users[ip])} account(s)",
            location="logs/account.log",
            detail={"source": ip, "failed_logins": n, "accounts": sorted(users[ip])[:10]},
        )
        for ip, n in per_source.most_common()
        if n >= BRUTE_FORCE
    ]
    return Outcome.of(failures, failed_logins=len(found), sources=len(per_source))


async def token_new_address(cx: CheckContext) -> Outcome:
    if cx.logs_dir is None:
        return Outcome.skipped("reads the sandbox's account log; production: the SIEM rule")
    since = _iso(cx.now - timedelta(hours=24))
    found = await asyncio.to_thread(
        lambda: list(events(cx.logs_dir / "account.log", names=("auth.token_used",), since=since))  # type: ignore[operator]
    )
    seen: Counter[tuple[str, str]] = Counter(
        (str(e.get("user")), str(e.get("src_ip"))) for e in found if e.get("new_address")
    )
    failures = [
        Failure(
            subject=f"token of {user} from {ip}",
            text=f"{user}'s token was used {n} time(s) from {ip}, an address never seen for it",
            location="logs/account.log",
            detail={"account": user, "source": ip, "uses": n},
        )
        for (user, ip), n in seen.most_common()
    ]
    return Outcome.of(failures, token_uses=len(found))


async def dormant(cx: CheckContext) -> Outcome:
    cutoff = cx.now - timedelta(days=DORMANT_DAYS)
    failures: list[Failure] = []
    checked = 0
    if cx.db is not None:
        rows = cx.db.query(
            "SELECT u.username, u.created_at, u.last_login_at, u.source,"
            " (SELECT COUNT(*) FROM user_roles r WHERE r.user_id = u.id AND r.role = 'admin')"
            " AS admin FROM users u WHERE u.disabled = 0"
        )
        for r in rows:
            checked += 1
            last = _parse(r["last_login_at"]) or _parse(r["created_at"])
            if last is not None and last < cutoff:
                days = (cx.now - last).days
                failures.append(
                    Failure(
                        subject=f"opsbook account {r['username']}",
                        text=f"opsbook account {r['username']} has not logged in for {days} days",
                        detail={"account": r["username"], "days": days, "admin": bool(r["admin"])},
                        severity="high" if r["admin"] else "medium",
                    )
                )
    if cx.data_dir is not None:
        from opsbook.sandbox import iam  # noqa: PLC0415

        for a in await asyncio.to_thread(iam.load, cx.data_dir):
            if a.get("disabled"):
                continue
            checked += 1
            last = _parse(a.get("last_login")) or _parse(a.get("created"))
            if last is not None and last < cutoff:
                days = (cx.now - last).days
                admin = a.get("kind") == "admin" or "db_owner" in a.get("roles", [])
                failures.append(
                    Failure(
                        subject=f"platform account {a['name']}",
                        text=f"platform account {a['name']} ({', '.join(a.get('roles', []))})"
                        f" has not logged in for {days} days",
                        location="sandbox iam.json",
                        detail={"account": a["name"], "days": days, "roles": a.get("roles", [])},
                        severity="high" if admin else "medium",
                    )
                )
    return Outcome.of(failures, accounts_checked=checked)


def _tokens(cx: CheckContext) -> list[dict[str, Any]]:
    if cx.db is None:
        return []
    return cx.db.query(
        "SELECT t.id, t.name, t.scopes, t.created_at, t.expires_at, t.last_used_at, u.username"
        " FROM api_tokens t JOIN users u ON u.id = t.user_id"
        " WHERE t.revoked_at IS NULL AND t.expires_at > ?",
        (cx.now.isoformat(timespec="microseconds").replace("+00:00", "Z"),),
    )


async def never_expiring(cx: CheckContext) -> Outcome:
    failures = []
    rows = _tokens(cx)
    for t in rows:
        made, until = _parse(t["created_at"]), _parse(t["expires_at"])
        if made and until and (until - made).days > MAX_TOKEN_DAYS:
            failures.append(
                Failure(
                    subject=f"token {t['id']}",
                    text=f"token {t['id']} ({t['name']}, {t['username']}) lives"
                    f" {(until - made).days} days",
                    detail={
                        "token": t["id"],
                        "owner": t["username"],
                        "expires_at": t["expires_at"],
                    },
                )
            )
    return Outcome.of(failures, active_tokens=len(rows))


async def unused(cx: CheckContext) -> Outcome:
    cutoff = cx.now - timedelta(days=DORMANT_DAYS)
    failures = []
    rows = _tokens(cx)
    for t in rows:
        last = _parse(t["last_used_at"]) or _parse(t["created_at"])
        if last and last < cutoff:
            failures.append(
                Failure(
                    subject=f"token {t['id']}",
                    text=f"token {t['id']} ({t['name']}, {t['username']}) unused for"
                    f" {(cx.now - last).days} days",
                    detail={"token": t["id"], "owner": t["username"]},
                )
            )
    return Outcome.of(failures, active_tokens=len(rows))


async def too_broad(cx: CheckContext) -> Outcome:
    failures = []
    rows = _tokens(cx)
    for t in rows:
        scopes = json.loads(t["scopes"] or "[]")
        if "admin" in scopes or "*" in scopes:
            failures.append(
                Failure(
                    subject=f"token {t['id']}",
                    text=f"token {t['id']} ({t['name']}, {t['username']}) has the admin scope",
                    detail={"token": t["id"], "owner": t["username"], "scopes": scopes},
                )
            )
    return Outcome.of(failures, active_tokens=len(rows))
