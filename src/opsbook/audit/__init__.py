"""The audit trail: one append-only, hash-chained log of every state-changing action.

Execution journal events live in the same log (``execution_id`` set), so the record of what a
run did and the record of who did what are one chain. Each record's hash covers the previous
record's hash, its own id, time, actor, action, subject, execution id and the SHA-256 of its
(redacted) payload; ``audit_head`` holds the newest id and hash so deleting the newest records
is detected too. Signed checkpoints of the head, kept in a witness outside the database, make
a recomputed or truncated chain detectable (:mod:`opsbook.audit._witness`, ADR 0010). See
docs/audit.md for the formula an auditor can recompute without opsbook.
"""

from opsbook.audit._log import (
    AuditRecord,
    canonical_json,
    record,
    record_hash,
    records_written,
)
from opsbook.audit._verify import VerifyReport, verify
from opsbook.audit._witness import (
    WitnessConfig,
    WitnessError,
    config_for,
    sign_checkpoint,
    sign_own,
)

__all__ = [
    "AuditRecord",
    "VerifyReport",
    "WitnessConfig",
    "WitnessError",
    "canonical_json",
    "config_for",
    "record",
    "record_hash",
    "records_written",
    "sign_checkpoint",
    "sign_own",
    "verify",
]
