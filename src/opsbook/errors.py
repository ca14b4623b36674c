"""The one error root of opsbook and its tree.

Every error a user can cause or meet derives from :class:`OpsbookError`. Adapters (CLI, API)
map the tree to exit codes and HTTP statuses in exactly one place each, using ``exit_code`` and
``http_status``; nothing else catches broad exceptions.

::

    OpsbookError                      exit 1  (a failed check or run)
    ├── UsageError                    exit 2  bad command-line use, bad flag combination
    │   └── ValidationError           exit 2  bad input with a location (file:line:col / field)
    │       ├── RunbookFormatError            a runbook that cannot be parsed
    │       ├── ParameterError                a parameter value that is not allowed
    │       └── ExpressionError               an invalid CEL expression or template
    ├── NotFoundError                 exit 2  unknown runbook, procedure, environment, execution
    ├── WorkspaceError                exit 2  no workspace, unreadable workspace files
    ├── DatabaseError                 exit 2  a database that cannot be opened or migrated
    ├── PermissionDenied              exit 2  a role that may not do this, self-approval
    ├── ConflictError                 exit 2  an illegal state transition, a stale approval
    ├── SecretError                   exit 2  a secret that cannot be resolved
    ├── StepError                     exit 1  a step that failed (carried in results, not raised
    │                                         through the engine)
    └── AuditIntegrityError           exit 1  the audit chain does not verify
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where in a file an error points: 1-based line and column."""

    path: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line and self.col:
            return f"{self.path}:{self.line}:{self.col}"
        if self.line:
            return f"{self.path}:{self.line}"
        return self.path


class OpsbookError(Exception):
    """Root of every opsbook error.

    ``hint`` is the fix, said to the user; ``location`` points at the file and line (or the
    API ``field``) at fault; ``retryable`` tells automation whether trying again may help.
    """

    exit_code: int = 1
    http_status: int = 500
    code: str = "error"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        location: Location | None = None,
        field: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.location = location
        self.field = field
        self.retryable = retryable

    def render(self) -> str:
        """One line (two with a hint) for a terminal: ``path:line:col: message`` then the fix."""
        prefix = f"{self.location}: " if self.location else ""
        if self.field and not self.location:
            prefix = f"{self.field}: "
        text = f"{prefix}{self.message}"
        if self.hint:
            text += f"\n  fix: {self.hint}"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "error": self.code,
            "message": self.message,
            "hint": self.hint,
            "location": str(self.location) if self.location else None,
            "field": self.field,
            "retryable": self.retryable,
        }


class UsageError(OpsbookError):
    exit_code = 2
    http_status = 400
    code = "usage"


class ValidationError(UsageError):
    http_status = 422
    code = "validation"


class RunbookFormatError(ValidationError):
    code = "runbook_format"


class ParameterError(ValidationError):
    code = "parameter"


class ExpressionError(ValidationError):
    code = "expression"


class NotFoundError(OpsbookError):
    exit_code = 2
    http_status = 404
    code = "not_found"


class WorkspaceError(OpsbookError):
    exit_code = 2
    http_status = 500
    code = "workspace"


class DatabaseError(OpsbookError):
    exit_code = 2
    http_status = 503
    code = "database"


class PermissionDenied(OpsbookError):
    exit_code = 2
    http_status = 403
    code = "permission_denied"


class ConflictError(OpsbookError):
    exit_code = 2
    http_status = 409
    code = "conflict"


class SecretError(OpsbookError):
    exit_code = 2
    http_status = 500
    code = "secret"


class StepError(OpsbookError):
    exit_code = 1
    code = "step_failed"


class AuditIntegrityError(OpsbookError):
    exit_code = 1
    http_status = 500
    code = "audit_integrity"
