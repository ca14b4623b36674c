"""Password hashes: Argon2id (argon2-cffi) with OWASP's minimum parameters (19 MiB, t=2, p=1),
which keeps a sign-in around 20 ms so it does not stall the server's event loop."""

from __future__ import annotations

import secrets
from functools import cache
from typing import TYPE_CHECKING

from opsbook.errors import ValidationError

if TYPE_CHECKING:
    from argon2 import PasswordHasher

MIN_LENGTH = 12
MAX_LENGTH = 1024


@cache
def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher  # noqa: PLC0415 - only sign-in paths pay for it

    return PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise ValidationError(
            f"the password is too short ({len(password)} characters)",
            field="password",
            hint=f"use at least {MIN_LENGTH} characters; a passphrase of several words is best",
        )
    if len(password) > MAX_LENGTH:
        raise ValidationError(
            "the password is too long", field="password", hint=f"at most {MAX_LENGTH} characters"
        )


def hash_password(password: str) -> str:
    check_strength(password)
    return _hasher().hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored``. With no stored hash a dummy hash is checked
    so that unknown accounts take as long to refuse as known ones."""
    from argon2.exceptions import VerificationError, VerifyMismatchError  # noqa: PLC0415

    target = stored or _dummy_hash()
    try:
        ok = _hasher().verify(target, password[:MAX_LENGTH])
    except (VerifyMismatchError, VerificationError, ValueError):
        return False
    return bool(ok) and stored is not None


def needs_rehash(stored: str) -> bool:
    return bool(_hasher().check_needs_rehash(stored))


@cache
def _dummy_hash() -> str:
    return _hasher().hash(secrets.token_urlsafe(16))


def generate_password() -> str:
    """A one-time password people can type: 4 groups of 5 letters and digits."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(4))
