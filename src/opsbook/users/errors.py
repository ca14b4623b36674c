"""Errors of accounts and sign-in, in the one opsbook error tree."""

from __future__ import annotations

from opsbook.errors import OpsbookError


class AuthenticationError(OpsbookError):
    """Not signed in, a wrong password, an unknown, expired or revoked token (HTTP 401).

    The message never says which of those it was to someone who is not signed in.
    """

    exit_code = 2
    http_status = 401
    code = "unauthenticated"
