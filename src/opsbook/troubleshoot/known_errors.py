"""Known errors (issue 12): symptom → cause → fix records that diagnosis ranks first.

A known error names a cause (one of :data:`opsbook.troubleshoot.model.CAUSES`), the fixing
procedure and its params, and its **symptoms**: a list of matchers over a diagnosis' facts and
evidence. It matches a diagnosis when every symptom matches. Matchers (one JSON object each):

``{"log": "<substring>"}``
    a log template (``facts.logs.templates[].template``) contains the text (case-insensitive).
``{"evidence": "<source>", "contains": "<substring>"}`` (not "changes")
    an evidence item from that source (platform, health, logs, signals, database,
    payment_network) on the hypothesis for the known error's cause; ``contains`` is optional.
``{"fact": "<dotted.path>", "equals": <value>}`` (or ``"above"`` / ``"below"`` a number)
    a value in the facts (``health.payment.state``, ``logs.fresh.http_500``…).

Known errors come from post-incident review action items (:func:`from_review`), from a diagnosis
whose top procedure then ran successfully (:func:`confirm_from_fix`), or by hand
(:func:`create`). Service functions are keyword-only; the caller owns the transaction; each
change is audited.
"""

from __future__ import annotations

import copy
import json
import secrets
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.audit._log import utcnow
from opsbook.errors import NotFoundError, ValidationError
from opsbook.incidents.service import get as get_incident
from opsbook.troubleshoot import store
from opsbook.troubleshoot.model import CAUSES, PROCEDURES, Evidence, Hypothesis, confidence_of

if TYPE_CHECKING:
    from opsbook.db import Database

SOURCES = ("review", "diagnosis", "manual")
#: evidence a symptom may name: not "changes", which carries the sandbox's fault record
EVIDENCE_SOURCES = (
    "platform",
    "health",
    "logs",
    "signals",
    "database",
    "payment_network",
)
#: how much a matching known error adds to its cause's score (capped at 1.0)
BOOST = 0.25
#: the score of a hypothesis a known error adds when diagnosis had none for its cause
ADDED_SCORE = 0.45

_MATCHER_HINT = (
    'write a list of matchers: {"log": "text"}, {"evidence": "health", "contains": "text"}, '
    '{"fact": "logs.fresh.http_500", "above": 5}'
)


def validate_symptoms(symptoms: object) -> list[dict[str, Any]]:
    """Check a symptom list; raise ValidationError naming the field (``symptoms[i].key``)."""
    if not isinstance(symptoms, list) or not symptoms:
        raise ValidationError(
            "symptoms must be a non-empty list of matchers", field="symptoms", hint=_MATCHER_HINT
        )
    out: list[dict[str, Any]] = []
    for i, m in enumerate(symptoms):
        where = f"symptoms[{i}]"
        if not isinstance(m, dict):
            raise ValidationError(f"{where} is not an object", field=where, hint=_MATCHER_HINT)
        kinds = [k for k in ("log", "evidence", "fact") if k in m]
        if len(kinds) != 1:
            raise ValidationError(
                f"{where} needs exactly one of log, evidence, fact (has {kinds or 'none'})",
                field=where,
                hint=_MATCHER_HINT,
            )
        kind = kinds[0]
        allowed = {
            "log": {"log"},
            "evidence": {"evidence", "contains"},
            "fact": {"fact", "equals", "above", "below"},
        }[kind]
        extra = sorted(set(m) - allowed)
        if extra:
            raise ValidationError(
                f"{where} has unknown key {extra[0]!r} for a {kind} matcher",
                field=f"{where}.{extra[0]}",
                hint=f"a {kind} matcher takes {', '.join(sorted(allowed))}",
            )
        if kind == "log":
            if not isinstance(m["log"], str) or not m["log"].strip():
                raise ValidationError(
                    f"{where}.log must be non-empty text", field=f"{where}.log", hint=_MATCHER_HINT
                )
        elif kind == "evidence":
            if m["evidence"] not in EVIDENCE_SOURCES:
                raise ValidationError(
                    f"{where}.evidence {m['evidence']!r} is not an evidence source",
                    field=f"{where}.evidence",
                    hint=f"one of {', '.join(EVIDENCE_SOURCES)}",
                )
            if "contains" in m and (not isinstance(m["contains"], str) or not m["contains"]):
                raise ValidationError(
                    f"{where}.contains must be non-empty text", field=f"{where}.contains"
                )
        else:
            if not isinstance(m["fact"], str) or not m["fact"].strip():
                raise ValidationError(
                    f"{where}.fact must be a dotted path", field=f"{where}.fact", hint=_MATCHER_HINT
                )
            if m["fact"].split(".")[0] == "changes":
                raise ValidationError(
                    f"{where}.fact may not read the 'what changed' timeline: it holds the"
                    " sandbox's fault record, which ranking never reads",
                    field=f"{where}.fact",
                    hint="match the symptoms: platform, health, logs, signals, database…",
                )
            tests = [k for k in ("equals", "above", "below") if k in m]
            if not tests:
                raise ValidationError(
                    f"{where} needs equals, above or below",
                    field=f"{where}.fact",
                    hint='{"fact": "logs.fresh.http_500", "above": 5}',
                )
            for k in ("above", "below"):
                if k in m and (isinstance(m[k], bool) or not isinstance(m[k], int | float)):
                    raise ValidationError(
                        f"{where}.{k} must be a number", field=f"{where}.{k}", hint=_MATCHER_HINT
                    )
        out.append(dict(m))
    return out


def _check_cause(cause: str) -> None:
    if cause not in CAUSES:
        raise ValidationError(
            f"unknown cause {cause!r}", field="cause", hint=f"one of {', '.join(CAUSES)}"
        )


def _row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["symptoms"] = json.loads(row["symptoms"])
    out["params"] = json.loads(row["params"])
    return out


def create(
    *,
    db: Database,
    actor: str,
    title: str,
    cause: str,
    symptoms: object,
    procedure: str | None = None,
    params: dict[str, Any] | None = None,
    service: str | None = None,
    source: str = "manual",
    source_ref: str | None = None,
) -> dict[str, Any]:
    """Record a known error; procedure and params default to the cause's fixing procedure."""
    if not title.strip():
        raise ValidationError("a known error needs a title", field="title")
    _check_cause(cause)
    if source not in SOURCES:
        raise ValidationError(
            f"unknown source {source!r}", field="source", hint=f"one of {', '.join(SOURCES)}"
        )
    checked = validate_symptoms(symptoms)
    proc, takes_service = PROCEDURES[cause]
    procedure = procedure or proc
    if "#" not in procedure:
        raise ValidationError(
            f"procedure {procedure!r} is not RUNBOOK#PROCEDURE",
            field="procedure",
            hint="e.g. troubleshooting#service-connectivity",
        )
    if params is None:
        params = {"service": service} if takes_service and service else {}
    if not isinstance(params, dict):
        raise ValidationError("params must be an object", field="params")
    ke_id = f"ke-{secrets.token_hex(4)}"
    now = utcnow()
    db.execute(
        "INSERT INTO known_errors (id, title, cause, service, symptoms, procedure, params,"
        " source, source_ref, created_by, created_at, confirmed)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
        (
            ke_id,
            title.strip(),
            cause,
            service,
            json.dumps(checked),
            procedure,
            json.dumps(params),
            source,
            source_ref,
            actor,
            now,
        ),
    )
    audit.record(
        db=db,
        actor=actor,
        action="known_error.create",
        subject=f"known_error:{ke_id}",
        payload={"title": title.strip(), "cause": cause, "source": source, "ref": source_ref},
    )
    return get(db=db, known_error_id=ke_id)


def get(*, db: Database, known_error_id: str) -> dict[str, Any]:
    row = db.one("SELECT * FROM known_errors WHERE id = ?", (known_error_id,))
    if row is None:
        raise NotFoundError(
            f"no known error {known_error_id}", hint="opsbook known-errors list shows them"
        )
    return _row(row)


def list_known_errors(
    *,
    db: Database,
    include_retired: bool = False,
    limit: int | None = None,
    after: str | None = None,
) -> list[dict[str, Any]]:
    """Known errors by id (``after`` for paging), retired ones only when asked."""
    sql = "SELECT * FROM known_errors WHERE 1 = 1"
    args: list[object] = []
    if not include_retired:
        sql += " AND retired_at IS NULL"
    if after:
        sql += " AND id > ?"
        args.append(after)
    sql += " ORDER BY id"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    return [_row(r) for r in db.query(sql, args)]


def retire(*, db: Database, actor: str, known_error_id: str, reason: str = "") -> dict[str, Any]:
    ke = get(db=db, known_error_id=known_error_id)
    if ke["retired_at"]:
        return ke
    db.execute("UPDATE known_errors SET retired_at = ? WHERE id = ?", (utcnow(), known_error_id))
    audit.record(
        db=db,
        actor=actor,
        action="known_error.retire",
        subject=f"known_error:{known_error_id}",
        payload={"reason": reason},
    )
    return get(db=db, known_error_id=known_error_id)


def _diagnosis_symptoms(diagnosis: dict[str, Any], hyp: dict[str, Any]) -> list[dict[str, Any]]:
    """Symptoms taken from a diagnosis: the evidence sources of the hypothesis, and its new
    warning/error log template when there is one."""
    symptoms: list[dict[str, Any]] = []
    seen: set[str] = set()
    for ev in hyp.get("evidence") or []:
        src = ev.get("source")
        if src in EVIDENCE_SOURCES and src != "changes" and src not in seen:
            seen.add(src)
            symptoms.append({"evidence": src})
    templates = ((diagnosis.get("facts") or {}).get("logs") or {}).get("templates") or []
    for t in templates:
        if isinstance(t, dict) and t.get("new") and t.get("template"):
            text = str(t["template"])
            # the longest stretch without a mask is what stays the same next time
            part = max(text.split("<*>"), key=len).strip()
            if len(part) >= 8:
                symptoms.append({"log": part})
            break
    return symptoms


def _diagnosis(db: Database, diagnosis_id: str) -> dict[str, Any]:
    return store.get(db, diagnosis_id)


def from_review(
    *,
    db: Database,
    actor: str,
    incident_ref: str,
    action_item: int,
    cause: str | None = None,
    symptoms: object = None,
) -> dict[str, Any]:
    """A known error from a post-incident review action item: its title is the item's; cause,
    symptoms and fix come from the incident's latest diagnosis unless given."""
    inc = get_incident(db=db, ref=incident_ref)
    item = db.one(
        "SELECT * FROM incident_actions WHERE id = ? AND incident_id = ?", (action_item, inc.id)
    )
    if item is None:
        raise NotFoundError(
            f"{inc.ref} has no action item {action_item}",
            hint=f"opsbook incidents review {inc.ref} lists its action items",
        )
    diagnosis = store.latest_for_incident(db, inc.ref)
    top = (diagnosis or {}).get("top") or None
    if cause is None:
        if top is None:
            raise ValidationError(
                f"{inc.ref} has no diagnosis to take the cause from",
                field="cause",
                hint=f"give --cause (one of {', '.join(CAUSES)}) and --symptoms",
            )
        cause = str(top["cause"])
    hyp = top if top is not None and top.get("cause") == cause else None
    if hyp is None and diagnosis is not None:
        hyp = next((h for h in diagnosis.get("hypotheses") or [] if h["cause"] == cause), None)
    if symptoms is None:
        if hyp is None or diagnosis is None:
            raise ValidationError(
                f"no diagnosis of {inc.ref} shows {cause}: give the symptoms",
                field="symptoms",
                hint=_MATCHER_HINT,
            )
        symptoms = _diagnosis_symptoms(diagnosis, hyp)
    return create(
        db=db,
        actor=actor,
        title=str(item["title"]),
        cause=cause,
        symptoms=symptoms,
        procedure=hyp.get("procedure") if hyp else None,
        params=hyp.get("params") if hyp else None,
        service=hyp.get("service") if hyp else None,
        source="review",
        source_ref=f"{inc.ref}/action/{action_item}",
    )


def confirm_from_fix(
    *, db: Database, actor: str, diagnosis_id: str, execution_id: str
) -> dict[str, Any]:
    """The execution ran the diagnosis' top procedure (same params) after the diagnosis and
    succeeded: strengthen the known error for that cause and service, or make one."""
    diagnosis = _diagnosis(db, diagnosis_id)
    top = diagnosis.get("top")
    if not top:
        raise ValidationError(
            f"diagnosis {diagnosis_id} found nothing wrong: there is no fix to confirm",
            field="diagnosis",
        )
    ex = db.one("SELECT * FROM executions WHERE id = ?", (execution_id,))
    if ex is None:
        raise NotFoundError(f"no execution {execution_id}", hint="opsbook executions list")
    runbook, _, proc = str(top["procedure"]).partition("#")
    if ex["runbook_id"] != runbook or ex["procedure_id"] != proc:
        raise ValidationError(
            f"execution {execution_id} ran {ex['runbook_id']}#{ex['procedure_id']}, not the"
            f" diagnosis' fix {top['procedure']}",
            field="execution",
            hint="confirm with the execution that ran the diagnosed fix",
        )
    ex_params = json.loads(ex["params"] or "{}")
    for key, value in (top.get("params") or {}).items():
        if ex_params.get(key) != value:
            raise ValidationError(
                f"execution {execution_id} ran with {key}={ex_params.get(key)!r}, the diagnosis"
                f" was about {key}={value!r}",
                field="execution",
            )
    if ex["state"] != "succeeded":
        raise ValidationError(
            f"execution {execution_id} did not succeed (it is {ex['state']}): a fix that did not"
            " work confirms nothing",
            field="execution",
        )
    if ex["dry_run"]:
        raise ValidationError(f"execution {execution_id} was a dry run", field="execution")
    started = str(diagnosis.get("created_at") or diagnosis.get("started_at") or "")
    if started and str(ex["created_at"]) < started[:19]:
        raise ValidationError(
            f"execution {execution_id} started before diagnosis {diagnosis_id}",
            field="execution",
            hint="a fix confirms a diagnosis only when it ran after it",
        )
    symptoms = _diagnosis_symptoms(diagnosis, top)
    if not symptoms:
        raise ValidationError(
            f"diagnosis {diagnosis_id} has no evidence to take symptoms from", field="diagnosis"
        )
    existing = db.one(
        "SELECT * FROM known_errors WHERE cause = ? AND retired_at IS NULL"
        " AND (service IS ? OR service = ?) ORDER BY confirmed DESC, id LIMIT 1",
        (top["cause"], top.get("service"), top.get("service")),
    )
    if existing is None:
        ke = create(
            db=db,
            actor=actor,
            title=str(top.get("title") or top["cause"]),
            cause=str(top["cause"]),
            symptoms=symptoms,
            procedure=str(top["procedure"]),
            params=dict(top.get("params") or {}),
            service=top.get("service"),
            source="diagnosis",
            source_ref=f"{diagnosis_id}/{execution_id}",
        )
        ke_id = str(ke["id"])
    else:
        ke_id = str(existing["id"])
    db.execute(
        "UPDATE known_errors SET confirmed = confirmed + 1, last_confirmed_at = ? WHERE id = ?",
        (utcnow(), ke_id),
    )
    audit.record(
        db=db,
        actor=actor,
        action="known_error.confirm",
        subject=f"known_error:{ke_id}",
        execution_id=execution_id,
        payload={"diagnosis": diagnosis_id, "execution": execution_id, "cause": top["cause"]},
    )
    return get(db=db, known_error_id=ke_id)


def _fact(facts: dict[str, Any], path: str) -> object:
    cur: object = facts
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


def _matches(matcher: dict[str, Any], *, facts: dict[str, Any], hyp: dict[str, Any] | None) -> bool:
    if "log" in matcher:
        needle = str(matcher["log"]).lower()
        templates = (facts.get("logs") or {}).get("templates") or []
        return any(
            needle in str(t.get("template") if isinstance(t, dict) else t).lower()
            for t in templates
        )
    if "evidence" in matcher:
        if hyp is None:
            return False
        needle = str(matcher.get("contains") or "").lower()
        return any(
            ev.get("source") == matcher["evidence"] and needle in str(ev.get("text", "")).lower()
            for ev in hyp.get("evidence") or []
        )
    value = _fact(facts, str(matcher["fact"]))
    if value is None:
        return False
    if "equals" in matcher and value != matcher["equals"]:
        return False
    try:
        if "above" in matcher and not float(value) > float(matcher["above"]):  # type: ignore[arg-type]
            return False
        if "below" in matcher and not float(value) < float(matcher["below"]):  # type: ignore[arg-type]
            return False
    except (TypeError, ValueError):
        return False
    return True


def match(
    known_error: dict[str, Any], *, hypotheses: list[dict[str, Any]], facts: dict[str, Any]
) -> dict[str, Any] | None:
    """The hypothesis a known error matches (or ``{}`` when it matches on facts alone and
    diagnosis had no hypothesis for its cause); None when a symptom does not match."""
    candidates = [
        h
        for h in hypotheses
        if h.get("cause") == known_error["cause"]
        and (known_error.get("service") is None or h.get("service") == known_error["service"])
    ]
    options: list[dict[str, Any] | None] = [*candidates] if candidates else [None]
    for hyp in options:
        if all(_matches(m, facts=facts, hyp=hyp) for m in known_error["symptoms"]):
            return hyp if hyp is not None else {}
    return None


def apply_known_errors(
    *, db: Database, hypotheses: list[dict[str, Any]], facts: dict[str, Any]
) -> list[dict[str, Any]]:
    """The hypotheses re-ranked by the known errors whose symptoms match: the cause's hypothesis
    gains :data:`BOOST`, names the known error and carries a ``known_error`` evidence item; a
    known error matching on facts alone adds its hypothesis. Sorted by score, highest first."""
    out = copy.deepcopy(hypotheses)
    known = list_known_errors(db=db)
    # the most confirmed first, so that it is the one a hypothesis names
    for ke in sorted(known, key=lambda k: (-int(k["confirmed"] or 0), str(k["id"]))):
        hyp = match(ke, hypotheses=out, facts=facts)
        if hyp is None:
            continue
        text = (
            f"matches known error {ke['id']}: {ke['title']}"
            f" (confirmed {ke['confirmed']} time{'s' if ke['confirmed'] != 1 else ''})"
        )
        evidence = {
            "source": "known_error",
            "text": text,
            "data": {"id": ke["id"], "confirmed": ke["confirmed"], "source": ke["source"]},
        }
        if not hyp:
            new = {
                "cause": ke["cause"],
                "service": ke.get("service"),
                "title": ke["title"],
                "confidence": confidence_of(ADDED_SCORE),
                "score": ADDED_SCORE,
                "evidence": [evidence],
                "procedure": ke["procedure"],
                "params": dict(ke["params"]),
                "known_error": ke["id"],
            }
            out.append(new)
            continue
        if hyp.get("known_error"):
            continue  # one known error per hypothesis: the most confirmed one
        score = min(1.0, float(hyp.get("score") or 0.0) + BOOST)
        hyp["score"] = round(score, 3)
        hyp["confidence"] = confidence_of(score)
        hyp["known_error"] = ke["id"]
        hyp.setdefault("evidence", []).append(evidence)
    out.sort(key=lambda h: -float(h.get("score") or 0.0))
    return out


def with_known_errors(
    *, db: Database, hypotheses: list[Hypothesis], facts: dict[str, Any]
) -> list[Hypothesis]:
    """:func:`apply_known_errors` for diagnose's own hypothesis objects (its fixing procedure
    stays the cause's: a known error's own procedure is shown on its page)."""
    if db.one("SELECT id FROM known_errors WHERE retired_at IS NULL LIMIT 1") is None:
        return hypotheses  # nothing to apply: diagnose's ranking as it is
    ranked = apply_known_errors(db=db, hypotheses=[h.to_dict() for h in hypotheses], facts=facts)
    return [
        Hypothesis(
            cause=str(h["cause"]),
            service=h.get("service"),
            title=str(h["title"]),
            score=float(h["score"]),
            evidence=tuple(
                Evidence(source=e["source"], text=e["text"], data=dict(e.get("data") or {}))
                for e in h.get("evidence") or []
            ),
            known_error=h.get("known_error"),
        )
        for h in ranked
    ]
