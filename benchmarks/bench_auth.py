"""Sign-in timing by branch (issue 16 §4): a locked account, an unknown username, a wrong
password and a disabled account must take the same time, or the answer tells an attacker
whether a username exists. Goal: medians differ by less than 5 ms.

Calls ``opsbook.users.accounts.authenticate`` (the code behind ``POST /signin``) on a real
SQLite file, the branches interleaved in a random order each round so a busy machine slows
them all alike.
"""

from __future__ import annotations

import contextlib
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import median, report

from opsbook.db import Database, open_database
from opsbook.users import accounts
from opsbook.users.errors import AuthenticationError

ROUNDS = 60
GOAL_MS = 5.0
PW = "correct horse battery staple"


def main() -> int:
    policy = accounts.LockoutPolicy(max_failures=3, lockout_seconds=3600)
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        known = accounts.known_roles()
        for name in ("alice", "lucy", "dora"):
            accounts.create_account(
                db=db, actor="bench", username=name, roles=("viewer",), known=known, password=PW
            )
        accounts.set_disabled(db=db, actor="bench", username="dora", disabled=True)
        now = datetime.now(UTC)
        branches = {
            "locked": ("lucy", PW),
            "unknown": ("nobody", PW),
            "wrong_password": ("alice", "wrong password!"),
            "disabled": ("dora", PW),
        }
        for _ in range(policy.max_failures):  # lock lucy
            _try(db, "lucy", "wrong password!", policy, now)
        times: dict[str, list[float]] = {k: [] for k in branches}
        for name, password in branches.values():  # warm-up (hasher, dummy hash, statements)
            _try(db, name, password, policy, now)
        order = list(branches)
        for _ in range(ROUNDS):
            random.shuffle(order)  # no branch always runs first or after a given other
            for branch in order:
                name, password = branches[branch]
                t = time.perf_counter()
                _try(db, name, password, policy, now)
                times[branch].append((time.perf_counter() - t) * 1000)
                if branch == "wrong_password":  # keep alice below the lockout threshold
                    db.execute("UPDATE users SET failed_logins = 0 WHERE username = 'alice'")
        db.close()
    medians = {k: round(median(v), 2) for k, v in times.items()}
    spread = round(max(medians.values()) - min(medians.values()), 2)
    return report(
        "auth_branch_timing",
        spread < GOAL_MS,
        median_ms=medians,
        max_difference_ms=spread,
        goal_ms=GOAL_MS,
        rounds=ROUNDS,
    )


def _try(
    db: Database, name: str, password: str, policy: accounts.LockoutPolicy, now: datetime
) -> None:
    with contextlib.suppress(AuthenticationError):
        accounts.authenticate(db=db, username=name, password=password, policy=policy, now=now)


if __name__ == "__main__":
    sys.exit(main())
