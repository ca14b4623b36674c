"""Detection with Sigma rules (issue 14), evaluated by pySigma's SQLite backend: the rules (the
shipped ones in ``secops/sigma_rules/`` and the workspace's ``security/detections/*.yml``, which
add to them or replace one by id) are converted to SQL, and a window of events is loaded into an
in-memory SQLite table ``logs`` to run them on. Correlation rules (``event_count`` grouped by a
field over a timespan) are Sigma's own, not a home-made language.

Events: the sandbox services' JSON logs, opsbook's audit trail (``source: audit``: actor,
action, subject and the payload's fields), the ledger's transfers (``event: ledger.transfer``
with ``amount_cents`` and ``hour_utc``) and the security checks' results (``source:
security-check``: ``check_id``, ``status``). Each hit is stored once per rule, group and window
(``security_detection_hits``) and raised as an alert linking the containment procedure, so the
alert-to-incident path can declare a security incident from it."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.errors import Location, ValidationError

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.workspace import Workspace

SHIPPED = Path(__file__).parent / "sigma_rules"
RUNBOOK = "security-operations#incident-containment"
_LEVEL = {"critical": "critical", "high": "critical", "medium": "warning", "low": "info"}


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    level: str
    path: str
    queries: tuple[str, ...]
    correlation: bool
    fields: tuple[str, ...]
    referenced: bool  # a base rule a correlation uses: not alerted on by itself


def _files(workspace: Workspace | None) -> list[Path]:
    files = {p.name: p for p in sorted(SHIPPED.glob("*.yml"))}
    if workspace is not None:
        extra = workspace.root / "security" / "detections"
        for p in sorted([*extra.glob("*.yml"), *extra.glob("*.yaml")]) if extra.is_dir() else []:
            files[p.name] = p
    return list(files.values())


def load_rules(workspace: Workspace | None) -> list[Rule]:
    """Every rule, converted; a file that is not a valid Sigma rule is a ValidationError at
    the file (and the field pySigma names)."""
    import yaml  # noqa: PLC0415
    from sigma.backends.sqlite.sqlite import sqliteBackend  # noqa: PLC0415 - heavy, on use
    from sigma.collection import SigmaCollection  # noqa: PLC0415
    from sigma.correlations import SigmaCorrelationRule  # noqa: PLC0415
    from sigma.exceptions import SigmaError  # noqa: PLC0415
    from sigma.rule import SigmaRule  # noqa: PLC0415

    from opsbook.secops.detection import field_at_fault, override_by_id  # noqa: PLC0415

    texts = []
    read = [(path, path.read_text(encoding="utf-8")) for path in _files(workspace)]
    for path, text in override_by_id(read):  # a workspace rule replaces a shipped one by id
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
            for doc in docs:
                if not isinstance(doc, dict):
                    raise ValueError("a rule is a YAML mapping")
                if "correlation" in doc:
                    SigmaCorrelationRule.from_dict(doc)
                else:
                    SigmaRule.from_dict(doc)
        except (SigmaError, ValueError, yaml.YAMLError) as exc:
            bad_field, line = field_at_fault(text)
            raise ValidationError(
                f"not a valid Sigma rule: {exc}" + (f" (field {bad_field!r})" if bad_field else ""),
                location=Location(str(path), line),
                field=bad_field,
                hint="see https://sigmahq.io/docs/basics/rules.html (title, logsource,"
                " detection with a condition)",
            ) from None
        texts.append((path, text))
    collection = SigmaCollection.from_yaml("\n---\n".join(t for _, t in texts))
    collection.resolve_rule_references()
    backend = sqliteBackend()  # type: ignore[no-untyped-call]
    by_name: dict[str, str] = {}
    referenced: set[str] = set()
    out: list[Rule] = []
    sources: dict[str, str] = {}
    for path, text in texts:
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, dict) and doc.get("id"):
                sources[str(doc["id"])] = str(path)
    for rule in collection.rules:
        if isinstance(rule, SigmaRule) and rule.name:
            by_name[rule.name] = str(rule.id)
        refs = getattr(rule, "rules", None)
        if refs:
            for ref in refs:
                target = getattr(ref, "reference", ref)
                referenced.add(str(target))
    for rule in collection.rules:
        try:
            convert = (
                backend.convert_rule
                if isinstance(rule, SigmaRule)
                else backend.convert_correlation_rule
            )
            queries = tuple(convert(rule))
        except SigmaError as exc:
            raise ValidationError(
                f"this Sigma rule cannot be evaluated: {exc}",
                location=Location(sources.get(str(rule.id), "?")),
            ) from None
        name = getattr(rule, "name", None)
        is_base = isinstance(rule, SigmaRule) and (
            (name is not None and name in referenced) or str(rule.id) in referenced
        )
        out.append(
            Rule(
                id=str(rule.id),
                title=str(rule.title),
                level=str(getattr(rule.level, "name", rule.level) or "medium").lower(),
                path=sources.get(str(rule.id), "?"),
                queries=queries,
                correlation=not isinstance(rule, SigmaRule),
                fields=tuple(getattr(rule, "fields", None) or ()),
                referenced=is_base,
            )
        )
    return out


def _parse_ts(ts: str) -> datetime | None:
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


def gather_events(
    db: Database | None, *, data_dir: Path | None, ledger_url: str | None, since: datetime
) -> list[dict[str, Any]]:
    from opsbook.secops.checks.logs import tail_bytes  # noqa: PLC0415

    cutoff = since.strftime("%Y-%m-%dT%H:%M:%S")
    events: list[dict[str, Any]] = []
    if data_dir is not None and (data_dir / "logs").is_dir():
        for path in sorted((data_dir / "logs").glob("*.log")):
            data, _ = tail_bytes(path)
            for raw in data.splitlines():
                try:
                    ev = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(ev, dict) and str(ev.get("ts", "")) >= cutoff:
                    ev.setdefault("source", "sandbox")
                    ev["file"] = path.name
                    events.append(ev)
    if db is not None:
        for r in db.query(
            "SELECT id, ts, actor, action, subject, payload FROM events WHERE ts >= ? ORDER BY id",
            (cutoff,),
        ):
            try:
                payload = json.loads(r["payload"] or "{}")
            except ValueError:
                payload = {}
            ev = {k: v for k, v in payload.items() if isinstance(v, str | int | float | bool)}
            ev |= {
                "ts": r["ts"],
                "source": "audit",
                "audit_id": r["id"],
                "actor": r["actor"],
                "action": r["action"],
                "subject": r["subject"],
            }
            events.append(ev)
        for r in db.query(
            "SELECT r.check_id, r.status, r.severity, s.started_at FROM security_results r"
            " JOIN security_scans s ON s.id = r.scan_id WHERE s.started_at >= ?",
            (cutoff,),
        ):
            events.append(
                {
                    "ts": r["started_at"],
                    "source": "security-check",
                    "check_id": r["check_id"],
                    "status": r["status"],
                    "severity": r["severity"],
                }
            )
    if ledger_url is not None:
        from opsbook.sandbox.ledger import Ledger  # noqa: PLC0415

        ledger = Ledger(ledger_url)
        try:
            with ledger._tx(write=False) as q:
                rows = q(
                    "SELECT id, from_account, to_account, amount_cents, status, reference,"
                    " created_at FROM transfers WHERE created_at >= ?",
                    cutoff,
                )
        finally:
            ledger.close()
        for r in rows:
            when = _parse_ts(str(r["created_at"]))
            events.append(
                {
                    "ts": r["created_at"],
                    "source": "ledger",
                    "event": "ledger.transfer",
                    "transfer_id": r["id"],
                    "from_account": r["from_account"],
                    "to_account": r["to_account"],
                    "amount_cents": r["amount_cents"],
                    "status": r["status"],
                    "hour_utc": when.astimezone(UTC).hour if when else None,
                }
            )
    return events


def _table(events: list[dict[str, Any]], fields: set[str]) -> sqlite3.Connection:
    from opsbook.secops.detection import columns  # noqa: PLC0415

    cols = columns([*sorted(fields), "change", *(k for e in events for k in e)])
    conn = sqlite3.connect(":memory:")
    quoted = ", ".join(f'"{c}"' for c in cols)
    conn.execute(f"CREATE TABLE logs (timestamp, {quoted})")
    marks = ", ".join("?" * (len(cols) + 1))
    conn.executemany(
        f"INSERT INTO logs (timestamp, {quoted}) VALUES ({marks})",  # noqa: S608
        [
            (
                str(e.get("ts", "")).replace("T", " ").rstrip("Z")[:23],
                *(
                    v
                    if isinstance(v := e.get(c), str | int | float | type(None))
                    else json.dumps(v)
                    for c in cols
                ),
            )
            for e in events
        ],
    )
    return conn


@dataclass
class Hit:
    rule: Rule
    group_key: str
    window_start: str
    first_ts: str
    last_ts: str
    events: int
    sample: dict[str, Any]


def evaluate(rules: list[Rule], events: list[dict[str, Any]]) -> list[Hit]:
    import re  # noqa: PLC0415

    fields: set[str] = set()
    for each in rules:
        for q in each.queries:
            fields |= set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", q))
            fields |= set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*(?:=|>=|<=|<|>| LIKE| IS)", q))
    fields -= {"rowid", "timestamp", "select", "where", "and", "or", "not", "case", "when"}
    conn = _table(events, fields)
    conn.row_factory = sqlite3.Row
    hits: list[Hit] = []
    try:
        for rule in rules:
            if rule.referenced:
                continue
            for q in rule.queries:
                rows = [dict(r) for r in conn.execute(q).fetchall()]
                if rule.correlation:
                    for r in rows:
                        keys = json.loads(r["group_keys"] or "{}")
                        start = datetime.fromtimestamp(float(r["window_start"]), UTC)
                        end = datetime.fromtimestamp(float(r["window_end"]), UTC)
                        bucket = start.replace(second=0, microsecond=0)
                        bucket -= timedelta(minutes=bucket.minute % 5)
                        hits.append(
                            Hit(
                                rule,
                                ",".join(f"{k}={v}" for k, v in sorted(keys.items())) or "all",
                                bucket.isoformat().replace("+00:00", "Z"),
                                start.isoformat().replace("+00:00", "Z"),
                                end.isoformat().replace("+00:00", "Z"),
                                int(r["metric_value"] or r["event_count"] or 0),
                                {"group": keys, "count": r["metric_value"]},
                            )
                        )
                else:
                    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
                    for r in rows:
                        key = ",".join(f"{f}={r.get(f)}" for f in rule.fields) or "all"
                        hour = str(r.get("timestamp") or "")[:13]
                        groups.setdefault((key, hour), []).append(r)
                    for (key, hour), found in groups.items():
                        stamps = sorted(str(x.get("timestamp") or "") for x in found)
                        sample = {
                            k: v
                            for k, v in found[-1].items()
                            if v is not None and k not in ("message", "payload")
                        }
                        hits.append(
                            Hit(
                                rule,
                                key,
                                hour.replace(" ", "T") + ":00:00Z",
                                stamps[0],
                                stamps[-1],
                                len(found),
                                sample,
                            )
                        )
    finally:
        conn.close()
    best: dict[tuple[str, str, str], Hit] = {}  # a correlation answers once per anchor event
    for h in hits:
        slot = (h.rule.id, h.group_key, h.window_start)
        if slot not in best or h.events > best[slot].events:
            best[slot] = h
    return list(best.values())


def detect(
    *,
    db: Database,
    workspace: Workspace,
    environment: str,
    since: timedelta,
    actor: str,
    raise_alerts: bool = True,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Evaluate every rule over the window; store and alert the hits not seen before."""
    from opsbook.monitoring.alerts import IncomingAlert, ingest, iso  # noqa: PLC0415
    from opsbook.secops.detection import redact_sample  # noqa: PLC0415
    from opsbook.workspace import load_environment  # noqa: PLC0415

    when = now or datetime.now(UTC)
    env = load_environment(workspace, environment)
    data_dir = ledger_url = None
    if env.platform == "local":
        from opsbook.sandbox.lifecycle import load_config  # noqa: PLC0415

        cfg = load_config(workspace=workspace, env_name=env.name)
        data_dir, ledger_url = cfg.data_path, cfg.database_url
    rules = load_rules(workspace)
    events = gather_events(db, data_dir=data_dir, ledger_url=ledger_url, since=when - since)
    hits = evaluate(rules, events)
    new: list[Hit] = []
    stamp = iso(when)
    with db.transaction():
        for h in hits:
            sample = json.loads(json.dumps(h.sample, default=str))
            inserted = db.execute(
                "INSERT INTO security_detection_hits (rule_id, title, level, environment,"
                " group_key, window_start, first_ts, last_ts, events, sample, alert, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    h.rule.id,
                    h.rule.title,
                    h.rule.level,
                    env.name,
                    h.group_key,
                    h.window_start,
                    h.first_ts,
                    h.last_ts,
                    h.events,
                    json.dumps(redact_sample(sample)),
                    _fingerprint(h, env.name),
                    stamp,
                ),
            )
            if inserted:
                new.append(h)
        if new:
            audit.record(
                db=db,
                actor=actor,
                action="security.detected",
                subject=f"environment:{env.name}",
                payload={
                    "hits": [
                        {"rule": h.rule.id, "title": h.rule.title, "group": h.group_key}
                        for h in new[:50]
                    ]
                },
            )
    found: dict[str, Any] | None = None
    if new:  # each new hit is a finding too (source "detection"; never fixed by a later run)
        from opsbook.secops import findings  # noqa: PLC0415
        from opsbook.secops.detection import finding_inputs, rule_descriptions  # noqa: PLC0415

        found = findings.ingest(
            db,
            kind="detection",
            environment=env.name,
            source="detection",
            inputs=finding_inputs(
                {"environment": env.name, "hits": [_hit_dict(h, True) for h in new]},
                descriptions=rule_descriptions(h.rule.path for h in new),
            ),
            complete=False,
            actor=actor,
            now=when,
        )
    if new and raise_alerts:
        ingest(
            db,
            alerts=[
                IncomingAlert(
                    fingerprint=_fingerprint(h, env.name),
                    status="firing",
                    labels={
                        "alertname": h.rule.title,
                        "severity": _LEVEL.get(h.rule.level, "warning"),
                        "environment": env.name,
                        "category": "security",
                        "sigma_rule": h.rule.id,
                        "group": h.group_key[:200],
                        # escalated, it declares a security incident (at least SEV-2)
                        "type": "security",
                        "incident_severity": "SEV1" if h.rule.level == "critical" else "SEV2",
                        "service": str(h.sample.get("service") or "platform"),
                    },
                    annotations={
                        "summary": f"{h.rule.title}: {h.group_key} ({h.events} events,"
                        f" {h.first_ts[:19]} to {h.last_ts[:19]})",
                        "runbook": RUNBOOK,
                    },
                    starts_at=stamp,
                    ends_at=None,
                )
                for h in new
            ],
            source="sigma",
            actor=actor,
            runbook_for=lambda a: RUNBOOK,
        )
    return {
        "environment": env.name,
        "window": {"from": iso(when - since), "to": stamp},
        "rules": len(rules),
        "events": len(events),
        "hits": [_hit_dict(h, h in new) for h in hits],
        "new": len(new),
        "findings": None if found is None else found.get("scan"),
    }


def _hit_dict(h: Hit, new: bool) -> dict[str, Any]:
    return {
        "rule": h.rule.id,
        "title": h.rule.title,
        "level": h.rule.level,
        "group": h.group_key,
        "events": h.events,
        "first": h.first_ts,
        "last": h.last_ts,
        "new": new,
    }


def _fingerprint(h: Hit, environment: str) -> str:
    """The alert's stable identity: one per rule, environment, group and window."""
    import hashlib  # noqa: PLC0415

    key = "|".join((h.rule.id, environment, h.group_key, h.window_start))
    return "sigma-" + hashlib.sha256(key.encode()).hexdigest()[:16]
