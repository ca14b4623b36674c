from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from opsbook.audit._log import record_hash, sha256_hex
from opsbook.audit._witness import (
    KEY_SECRET,
    Checkpoint,
    WitnessConfig,
    has_lines,
    key_id,
    load_key,
    public_bytes,
    read,
    secret_key,
)
from opsbook.db import Database

_BATCH = 5000
_SKEW = 60.0  # seconds a record's time may be ahead of the verifier's clock


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: str | None = None
    #: "ok", "broken" (the chain or a checkpoint does not match), "unwitnessed" (records past
    #: the newest signed checkpoint), "no-checkpoint" (no witness yet), "not-checked".
    status: str = "not-checked"
    checkpoint_id: int | None = None
    checkpoints_checked: int = 0
    unwitnessed: tuple[tuple[int, ...], ...] = ()
    witness: str | None = None
    warnings: tuple[str, ...] = field(default=())
    key_id: str | None = None  # fingerprint of the audit key: publish it for pack auditors

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "first_bad_id": self.first_bad_id,
            "problem": self.problem,
            "status": self.status,
            "checkpoint_id": self.checkpoint_id,
            "checkpoints_checked": self.checkpoints_checked,
            "unwitnessed": [list(r) for r in self.unwitnessed],
            "witness": self.witness,
            "warnings": list(self.warnings),
            "key_id": self.key_id,
        }


@dataclass
class _Walk:
    checked: int = 0
    last: int = 0
    last_hash: str = ""
    hashes: dict[int, str] = field(default_factory=dict)
    unvouched: list[list[int]] = field(default_factory=list)
    unvouched_ages: list[float] = field(default_factory=list)
    broken: VerifyReport | None = None

    def not_vouched(self, rid: int, age: float) -> None:
        if self.unvouched and self.unvouched[-1][1] == rid - 1:
            self.unvouched[-1][1] = rid
        else:
            self.unvouched.append([rid, rid])
        self.unvouched_ages.append(age)


def _walk(
    db: Database,
    wanted: set[int],
    vouched: list[tuple[int, int]] | None,
    now: datetime,
) -> _Walk:
    """Walk the whole chain in id order; names the first record that was altered, deleted,
    reordered or inserted, keeps the hashes of ``wanted`` ids and, given ``vouched`` (sorted
    id ranges), the records outside them."""
    w = _Walk()
    vi = 0
    expected_id = 1
    prev_hash = ""
    while True:
        rows = db.query(
            "SELECT id, ts, actor, action, subject, execution_id, payload, payload_digest,"
            " prev_hash, hash FROM events WHERE id >= ? ORDER BY id LIMIT ?",
            (expected_id, _BATCH),
        )
        if not rows:
            break
        for row in rows:
            rid = int(row["id"])
            problem = None
            if rid != expected_id:
                w.broken = VerifyReport(
                    False,
                    w.checked,
                    expected_id,
                    f"record {expected_id} is missing (next is {rid})",
                    status="broken",
                )
                return w
            if row["prev_hash"] != prev_hash:
                problem = f"record {rid} does not link to record {rid - 1}"
            elif sha256_hex(str(row["payload"])) != row["payload_digest"]:
                problem = f"record {rid}: payload was altered"
            elif (
                record_hash(
                    prev_hash=prev_hash,
                    id=rid,
                    ts=str(row["ts"]),
                    actor=str(row["actor"]),
                    action=str(row["action"]),
                    subject=str(row["subject"]),
                    execution_id=row["execution_id"],
                    payload_digest=str(row["payload_digest"]),
                )
                != row["hash"]
            ):
                problem = f"record {rid}: contents were altered"
            if problem:
                w.broken = VerifyReport(False, w.checked, rid, problem, status="broken")
                return w
            prev_hash = str(row["hash"])
            if rid in wanted:
                w.hashes[rid] = prev_hash
            if vouched is not None:
                while vi < len(vouched) and vouched[vi][1] < rid:
                    vi += 1
                if vi == len(vouched) or vouched[vi][0] > rid:
                    w.not_vouched(rid, _age_seconds(str(row["ts"]), now))
            expected_id += 1
            w.checked += 1
            w.last = rid
    w.last_hash = prev_hash
    head = db.one("SELECT last_id, last_hash FROM audit_head WHERE id = 1")
    if head is None or int(head["last_id"]) != w.last or str(head["last_hash"]) != prev_hash:
        head_id = int(head["last_id"]) if head else 0
        bad = w.last + 1 if head_id > w.last else head_id or w.last
        w.broken = VerifyReport(
            False,
            w.checked,
            bad,
            f"the chain head says record {head_id} is newest but the log ends at {w.last}",
            status="broken",
        )
    return w


def _age_seconds(ts: str, now: datetime) -> float:
    """Seconds since ``ts``; a time that cannot be read, or is more than a minute in the
    future (a forger's "always young" record), counts as infinitely old."""
    try:
        when = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    age = (now - when).total_seconds()
    return float("inf") if age < -_SKEW else age


def _merge(checkpoints: tuple[Checkpoint, ...]) -> list[tuple[int, int]]:
    spans = sorted(r for c in checkpoints for r in c.ids)
    out: list[tuple[int, int]] = []
    for lo, hi in spans:
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _describe(spans: list[list[int]], limit: int = 5) -> str:
    """``[[241, 241]]`` → "record 241 is"; ``[[5, 6], [9, 9]]`` → "records 5–6, 9 are"
    (so "… is deleted" / "… are deleted" read as states)."""
    if len(spans) == 1 and spans[0][0] == spans[0][1]:
        return f"record {spans[0][0]} is"
    text = ", ".join(f"{a}" if a == b else f"{a}–{b}" for a, b in spans[:limit])
    more = f" and {len(spans) - limit} more ranges" if len(spans) > limit else ""
    return f"records {text}{more} are"


_NO_CHECKPOINT = (
    "no signed checkpoint yet: only the chain's own consistency was checked (a database"
    " writer could have recomputed it); run `opsbook audit checkpoint` to sign the current"
    " head (any command that writes records also does)"
)


def verify(
    *,
    db: Database,
    witness: WitnessConfig | None = None,
    allow_unwitnessed_tail: float | None = None,
    now: datetime | None = None,
) -> VerifyReport:
    """Check the chain and, given a ``witness``, the chain against every signed checkpoint.

    Without a witness only the chain's own consistency is checked (status "not-checked"),
    which a database writer can defeat by recomputing hashes. With one: every witness line
    must be well-formed and signed by the audit key; every checkpoint's record must exist with
    the signed hash (a recomputed chain fails here, a truncated one falls short); and every
    record must be vouched for by the checkpoint of the process that wrote it. Records no
    checkpoint vouches for fail as "not covered by a signed checkpoint" unless all of them are
    younger than ``allow_unwitnessed_tail`` seconds (a live writer that has not signed yet).
    """
    when = now or datetime.now(UTC)
    if witness is None:
        w = _walk(db, set(), None, when)
        return w.broken or VerifyReport(True, w.checked)
    where = str(witness.witness)
    key = load_key(witness, create=False)
    if key is None:
        w = _walk(db, set(), None, when)
        if w.broken:
            return replace(w.broken, witness=where)
        if has_lines(witness.witness):
            return VerifyReport(
                False,
                w.checked,
                None,
                f"the witness {where} has checkpoints but the audit signing key is not"
                f" available ({witness.key_file} or the secret {KEY_SECRET}) to check them",
                status="broken",
                witness=where,
            )
        return VerifyReport(
            True,
            w.checked,
            status="no-checkpoint",
            witness=where,
            warnings=(_NO_CHECKPOINT,) if w.checked else (),
        )
    report = _against(db, witness, public_bytes(key), allow_unwitnessed_tail, when)
    return replace(report, key_id=key_id(public_bytes(key)))


def _against(
    db: Database,
    witness: WitnessConfig,
    public: bytes,
    allow_unwitnessed_tail: float | None,
    when: datetime,
) -> VerifyReport:
    where = str(witness.witness)
    read_ = read(witness.witness, public)
    latest = read_.latest
    cpid = latest.id if latest else None
    w = _walk(db, {c.id for c in read_.checkpoints}, _merge(read_.checkpoints), when)
    if w.broken:
        return replace(w.broken, witness=where, checkpoint_id=cpid)
    if read_.problems:
        more = len(read_.problems) - 1
        return VerifyReport(
            False,
            w.checked,
            None,
            read_.problems[0] + (f" (and {more} more bad lines)" if more else ""),
            status="broken",
            witness=where,
            checkpoint_id=cpid,
        )
    if latest is None:
        if w.last and witness.key_file.exists() and secret_key(witness) is None:
            return VerifyReport(
                False,
                w.checked,
                None,
                f"the witness {where} is missing or empty but the signing key"
                f" {witness.key_file} exists: checkpoints were signed and the witness removed",
                status="broken",
                witness=where,
            )
        return VerifyReport(
            True,
            w.checked,
            status="no-checkpoint",
            witness=where,
            warnings=(_NO_CHECKPOINT,) if w.last else (),
        )
    matched = 0
    for cp in sorted(read_.checkpoints, key=lambda c: c.id):
        if cp.id == 0:  # an export of an empty log
            continue
        if cp.id > w.last:
            return VerifyReport(
                False,
                w.checked,
                w.last + 1,
                f"the log ends at record {w.last} but a signed checkpoint (witness line"
                f" {cp.line}, signed {cp.signed_at}) covers record {cp.id}: "
                + _describe([[w.last + 1, cp.id]])
                + " missing (deleted)",
                status="broken",
                checkpoints_checked=matched,
                witness=where,
                checkpoint_id=cpid,
            )
        if w.hashes.get(cp.id) != cp.hash:
            return VerifyReport(
                False,
                w.checked,
                _last_good(read_.checkpoints, cp.id, w) + 1,
                f"record {cp.id} does not match its signed checkpoint (witness line {cp.line},"
                f" signed {cp.signed_at}): a record up to {cp.id} was altered, inserted or"
                " deleted and the chain recomputed",
                status="broken",
                checkpoints_checked=matched,
                witness=where,
                checkpoint_id=cpid,
            )
        matched += 1
    if w.unvouched:
        spans = w.unvouched
        oldest = max(w.unvouched_ages)
        if allow_unwitnessed_tail is not None and oldest <= allow_unwitnessed_tail:
            return VerifyReport(
                True,
                w.checked,
                status="ok",
                checkpoints_checked=matched,
                unwitnessed=tuple(tuple(s) for s in spans),
                witness=where,
                checkpoint_id=cpid,
                warnings=(
                    f"{_describe(spans)} not yet covered by a signed checkpoint"
                    f" (the oldest is {oldest:.0f} s old, within --allow-unwitnessed-tail)",
                ),
            )
        return VerifyReport(
            False,
            w.checked,
            spans[0][0],
            f"{_describe(spans)} not covered by a signed checkpoint: written by a"
            " process that stopped before signing, or forged by a database writer; if"
            " `opsbook serve` is writing right now, use --allow-unwitnessed-tail SECONDS;"
            " after review, `opsbook audit checkpoint --accept-unwitnessed` vouches for them",
            status="unwitnessed",
            checkpoints_checked=matched,
            unwitnessed=tuple(tuple(s) for s in spans),
            witness=where,
            checkpoint_id=cpid,
        )
    return VerifyReport(
        True,
        w.checked,
        status="ok",
        checkpoints_checked=matched,
        witness=where,
        checkpoint_id=cpid,
    )


def _last_good(checkpoints: tuple[Checkpoint, ...], bad_id: int, w: _Walk) -> int:
    """The newest checkpoint below ``bad_id`` that still matches: the altered record is after
    it."""
    good = [c.id for c in checkpoints if c.id < bad_id and w.hashes.get(c.id) == c.hash]
    return max(good, default=0)
