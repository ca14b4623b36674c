"""The first admin: created with a one-time password when the database has no account."""

from __future__ import annotations

from dataclasses import dataclass

from opsbook.db import Database
from opsbook.users import accounts, passwords

FIRST_ADMIN = "admin"


@dataclass(frozen=True)
class FirstAdmin:
    username: str
    password: str  # print once; only its hash is stored


def ensure_first_admin(
    *, db: Database, known: tuple[str, ...], username: str = FIRST_ADMIN
) -> FirstAdmin | None:
    """Create ``admin`` with a generated password if there is no account at all; None when
    accounts exist already (nothing is printed twice)."""
    with db.transaction():
        if accounts.count_accounts(db=db):
            return None
        password = passwords.generate_password()
        accounts.create_account(
            db=db,
            actor="opsbook",
            username=username,
            roles=["admin"],
            known=known,
            password=password,
            display_name="Administrator",
        )
    return FirstAdmin(username, password)
