"""Alerts: ingested from Alertmanager (webhook version 4) or raised by opsbook's own rules,
one row per fingerprint, idempotent (Alertmanager HA delivers the same notification more than
once), with resolve handling, acknowledgement and silences. Every change is audited."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson

from opsbook import audit
from opsbook.db import Database
from opsbook.errors import ConflictError, NotFoundError, ValidationError
from opsbook.monitoring import matchers as _matchers


def _encode(value: Mapping[str, str]) -> str:
    """Compact JSON, UTF-8 kept (what ``json`` writes with ``ensure_ascii=False``), ~10x
    faster for the two small maps of every stored alert."""
    return orjson.dumps(value).decode()


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(value: str, *, field: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(
            f"{field}: {value[:40]!r} is not an RFC 3339 time",
            field=field,
            hint="e.g. 2026-11-26T07:00:00Z",
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class IncomingAlert(NamedTuple):
    """One alert as received (a tuple: a webhook delivery builds a hundred at a time)."""

    fingerprint: str
    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: str
    ends_at: str | None

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "unnamed")


def label_fingerprint(labels: Mapping[str, str]) -> str:
    text = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


RunbookFor = Callable[[IncomingAlert], str | None]


@dataclass(frozen=True)
class IngestResult:
    received: int
    created: int
    resolved: int
    refired: int
    duplicates: int

    def to_dict(self) -> dict[str, int]:
        return {
            "received": self.received,
            "created": self.created,
            "resolved": self.resolved,
            "refired": self.refired,
            "duplicates": self.duplicates,
        }


def ingest(
    db: Database,
    *,
    alerts: Sequence[IncomingAlert],
    source: str,
    actor: str,
    runbook_for: RunbookFor,
    meta: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> IngestResult:
    """Store ``alerts`` in one transaction with one audit record for what changed."""
    when = iso(now or datetime.now(UTC))
    by_fp: dict[str, IncomingAlert] = {}
    for a in alerts:  # the last word on a fingerprint within one delivery wins
        by_fp[a.fingerprint] = a
    created: list[str] = []
    resolved: list[str] = []
    refired: list[str] = []
    dup: list[str] = []
    with db.transaction():
        existing: dict[str, dict[str, Any]] = {}
        fps = list(by_fp)
        for i in range(0, len(fps), 500):
            chunk = fps[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for row in db.query(
                "SELECT fingerprint, status, starts_at FROM mon_alerts"  # noqa: S608
                f" WHERE fingerprint IN ({marks})",
                chunk,
            ):
                existing[str(row["fingerprint"])] = row
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        refires: list[tuple[Any, ...]] = []
        runbooks: dict[tuple[str, str | None, str | None], str | None] = {}
        for fp, a in by_fp.items():
            hit = existing.get(fp)
            if hit is None:
                key = (a.alertname, a.labels.get("service"), a.labels.get("environment"))
                if key not in runbooks:
                    runbooks[key] = runbook_for(a)
                inserts.append(_insert_row(a, source=source, runbook=runbooks[key], now=when))
                created.append(fp)
            elif a.status == "resolved" and hit["status"] == "firing":
                updates.append((a.ends_at or when, when, fp))
                resolved.append(fp)
            elif (
                a.status == "firing"
                and hit["status"] == "resolved"
                and (a.starts_at > str(hit["starts_at"]))
            ):
                refires.append((a.starts_at, when, fp))
                refired.append(fp)
            else:
                dup.append(fp)
        _many(db, _INSERT, inserts)
        _many(
            db,
            "UPDATE mon_alerts SET status = 'resolved', ends_at = ?, last_received = ?,"
            " received = received + 1 WHERE fingerprint = ?",
            updates,
        )
        _many(
            db,
            "UPDATE mon_alerts SET status = 'firing', starts_at = ?, ends_at = NULL,"
            " acked_by = NULL, acked_at = NULL, ack_comment = NULL, escalated_level = 0,"
            " escalated_at = NULL, last_received = ?, received = received + 1"
            " WHERE fingerprint = ?",
            refires,
        )
        _many(
            db,
            "UPDATE mon_alerts SET last_received = ?, received = received + 1"
            " WHERE fingerprint = ?",
            [(when, fp) for fp in dup],
        )
        if created or resolved or refired:
            audit.record(
                db=db,
                actor=actor,
                action="alerts.ingested",
                subject=f"alerts:{source}",
                payload={
                    **dict(meta or {}),
                    "created": created,
                    "resolved": resolved,
                    "refired": refired,
                    "duplicates": len(dup),
                },
                ts=when,
            )
    return IngestResult(len(alerts), len(created), len(resolved), len(refired), len(dup))


_INSERT = (
    "INSERT INTO mon_alerts (fingerprint, source, alertname, service, environment, severity,"
    " status, summary, labels, annotations, runbook, starts_at, ends_at, first_received,"
    " last_received) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _insert_row(a: IncomingAlert, *, source: str, runbook: str | None, now: str) -> tuple[Any, ...]:
    labels, ann = a.labels, a.annotations
    return (
        a.fingerprint,
        source,
        a.alertname,
        labels.get("service"),
        labels.get("environment") or labels.get("env"),
        labels.get("severity", "warning"),
        a.status,
        ann.get("summary") or ann.get("description"),
        _encode(labels),
        _encode(ann),
        ann.get("runbook_url") or runbook,
        a.starts_at,
        a.ends_at if a.status == "resolved" else None,
        now,
        now,
    )


def _many(db: Database, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    if not rows:
        return
    if db.dialect == "postgresql":
        with db.raw.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), rows)
    else:
        db.raw.executemany(sql, rows)


# -- reading, acknowledging, silencing ------------------------------------------------------
def active_silences(db: Database, *, now: datetime | None = None) -> list[dict[str, Any]]:
    when = iso(now or datetime.now(UTC))
    rows = db.query(
        "SELECT * FROM mon_silences WHERE starts_at <= ? AND ends_at > ? ORDER BY id", (when, when)
    )
    return [_silence(r) for r in rows]


def _silence(row: dict[str, Any]) -> dict[str, Any]:
    """A stored silence for output: its matchers as texts (``service=~pay.*``)."""
    row["matchers"] = [str(m) for m in _matchers.loads(row["matchers"])]
    return row


def silenced_by(alert: Mapping[str, Any], silences: Sequence[Mapping[str, Any]]) -> int | None:
    labels = dict(alert.get("labels") or {})
    for key in ("alertname", "service", "severity", "environment"):
        if alert.get(key) is not None:
            labels.setdefault(key, str(alert[key]))
    for s in silences:
        if _matchers.all_match(s["matchers"], labels):
            return int(s["id"])
    return None


def list_alerts(
    db: Database,
    *,
    status: str | None = "firing",
    since: datetime | None = None,
    limit: int = 200,
    now: datetime | None = None,
    before: tuple[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Alerts newest first, each with ``silenced`` (the silence's id or None); ``before``
    (the last row's ``starts_at`` and ``id``) continues a page."""
    where, params = ["1 = 1"], list[str | int]()
    if status:
        where.append("status = ?")
        params.append(status)
    if since:
        where.append("last_received >= ?")
        params.append(iso(since))
    if before:
        where.append("(starts_at < ? OR (starts_at = ? AND id < ?))")
        params.extend((before[0], before[0], before[1]))
    rows = db.query(
        f"SELECT * FROM mon_alerts WHERE {' AND '.join(where)}"  # noqa: S608 - fixed text
        " ORDER BY starts_at DESC, id DESC LIMIT ?",
        (*params, limit),
    )
    silences = active_silences(db, now=now)
    for r in rows:
        r["labels"] = json.loads(r["labels"])
        r["annotations"] = json.loads(r["annotations"])
        r["silenced"] = silenced_by(r, silences)
    return rows


def get_alert(db: Database, ref: str) -> dict[str, Any]:
    row = db.one(
        "SELECT * FROM mon_alerts WHERE fingerprint = ? OR CAST(id AS TEXT) = ?", (ref, ref)
    )
    if row is None:
        raise NotFoundError(f"no alert {ref!r}", hint="see `opsbook alerts list --all`")
    return row


def acknowledge(
    db: Database, *, ref: str, actor: str, comment: str = "", now: datetime | None = None
) -> dict[str, Any]:
    when = iso(now or datetime.now(UTC))
    with db.transaction():
        row = get_alert(db, ref)
        if row["status"] != "firing":
            raise ConflictError(
                f"alert {row['id']} is {row['status']}", hint="only firing alerts are acknowledged"
            )
        db.execute(
            "UPDATE mon_alerts SET acked_by = ?, acked_at = ?, ack_comment = ? WHERE id = ?",
            (actor, when, comment or None, row["id"]),
        )
        audit.record(
            db=db,
            actor=actor,
            action="alert.acknowledged",
            subject=f"alert:{row['fingerprint']}",
            payload={"alertname": row["alertname"], "comment": comment},
            ts=when,
        )
    return get_alert(db, str(row["id"]))


def create_silence(
    db: Database,
    *,
    matchers: Mapping[str, str] | Sequence[str],
    duration: timedelta,
    actor: str,
    comment: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A silence of the alerts that satisfy every matcher, until it expires. ``matchers``
    is a ``{label: value}`` map (equalities) or matcher texts (``service=~"pay.*"``)."""
    rules = _matchers.from_input(matchers, field="matchers")
    if not rules:
        raise ValidationError(
            "a silence needs at least one matcher",
            field="matchers",
            hint="e.g. alertname=HighErrorRate service=payment",
        )
    if not comment.strip():
        raise ValidationError(
            "say why (comment)",
            field="comment",
            hint="e.g. --comment 'payment network maintenance CHG-1234'",
        )
    if not timedelta(0) < duration <= timedelta(days=30):
        raise ValidationError(
            "a silence lasts more than 0 and at most 30 days",
            field="duration",
            hint="e.g. --for 2h",
        )
    start = now or datetime.now(UTC)
    with db.transaction():
        sid = db.insert(
            "INSERT INTO mon_silences (matchers, starts_at, ends_at, created_by, comment,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                _matchers.dumps(rules),
                iso(start),
                iso(start + duration),
                actor,
                comment,
                iso(start),
            ),
        )
        audit.record(
            db=db,
            actor=actor,
            action="silence.created",
            subject=f"silence:{sid}",
            payload={
                "matchers": [str(m) for m in rules],
                "ends_at": iso(start + duration),
                "comment": comment,
            },
            ts=iso(start),
        )
    row = db.one("SELECT * FROM mon_silences WHERE id = ?", (sid,))
    assert row is not None
    return _silence(row)


def expire_silence(
    db: Database, *, silence_id: int, actor: str, now: datetime | None = None
) -> None:
    when = iso(now or datetime.now(UTC))
    with db.transaction():
        row = db.one("SELECT id, ends_at FROM mon_silences WHERE id = ?", (silence_id,))
        if row is None:
            raise NotFoundError(f"no silence {silence_id}", hint="see `opsbook alerts silences`")
        if str(row["ends_at"]) <= when:
            raise ConflictError(f"silence {silence_id} has already expired", hint="nothing to do")
        db.execute("UPDATE mon_silences SET ends_at = ? WHERE id = ?", (when, silence_id))
        audit.record(
            db=db,
            actor=actor,
            action="silence.expired",
            subject=f"silence:{silence_id}",
            payload={},
            ts=when,
        )


def list_silences(
    db: Database, *, include_expired: bool = False, now: datetime | None = None
) -> list[dict[str, Any]]:
    if not include_expired:
        return active_silences(db, now=now)
    rows = db.query("SELECT * FROM mon_silences ORDER BY id DESC LIMIT 200")
    return [_silence(r) for r in rows]
