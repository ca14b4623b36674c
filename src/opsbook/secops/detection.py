"""What the Sigma detection (:mod:`opsbook.secops.sigma`) needs around the rules themselves:
workspace rules overriding shipped ones by ``id``, the field (and line) a malformed rule is
refused for, the redaction of a hit's sample, and each hit as a :class:`FindingInput` (source
``detection``) for the findings store.

The rules stay Sigma files parsed and converted by pySigma; nothing here reads a detection
itself."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook.secops.model import FindingInput, Severity, fingerprint

if TYPE_CHECKING:
    from opsbook.engine.redaction import Redactor

MASK = "***"
#: A sample field whose name says it holds a credential is never stored, whatever its value.
_SECRET_KEY = re.compile(
    r"(?i)(pass(word|wd)?|secret|token(?!_id)|authorization|api[_-]?key|cookie|session|"
    r"private[_-]?key|credential|cvv|cvc|pin\b)"
)
#: Sigma levels to finding severities.
_SEVERITY: dict[str, Severity] = {
    "critical": "critical",
    "high": "high",
    "medium": "medium",
    "low": "low",
    "informational": "info",
}
_PCI_TAG = re.compile(r"pci[-_.]?dss[-_.]?(\d+(?:\.\d+)*)", re.I)
_PCI_TEXT = re.compile(r"PCI DSS ([\d.,\s]+)")


def _rule_id(doc: object) -> str | None:
    if isinstance(doc, dict) and doc.get("id"):
        return str(doc["id"])
    return None


def override_by_id(texts: Sequence[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """Later files win: a file (the workspace's) whose rule has the ``id`` of an earlier file's
    (a shipped one) replaces that file. Files that do not parse are kept, to be refused naming
    themselves."""
    import yaml  # noqa: PLC0415

    ids: list[set[str]] = []
    for _, text in texts:
        try:
            found = {i for d in yaml.safe_load_all(text) if (i := _rule_id(d)) is not None}
        except yaml.YAMLError:
            found = set()
        ids.append(found)
    kept: list[tuple[Path, str]] = []
    for n, item in enumerate(texts):
        later = set().union(*ids[n + 1 :]) if n + 1 < len(ids) else set()
        if ids[n] and ids[n] <= later:
            continue  # every rule of this file is redefined by a later one
        kept.append(item)
    return kept


_REQUIRED = ("title", "logsource", "detection")
_CORRELATION_REQUIRED = ("type", "rules", "timespan")


def field_at_fault(text: str) -> tuple[str | None, int]:
    """The rule's field a malformed Sigma file is missing or gets wrong, and its line (0 when
    unknown): what a ValidationError names besides the file."""
    import yaml  # noqa: PLC0415

    try:
        nodes = list(yaml.compose_all(text))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return None, (mark.line + 1) if mark else 0
    except yaml.YAMLError:
        return None, 0
    for node in nodes:
        if not isinstance(node, yaml.MappingNode):
            return "rule", node.start_mark.line + 1 if node is not None else 0
        keys = {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}
        line = node.start_mark.line + 1
        if "correlation" in keys:
            corr = keys["correlation"]
            if not isinstance(corr, yaml.MappingNode):
                return "correlation", corr.start_mark.line + 1
            inner = {k.value: v for k, v in corr.value if isinstance(k, yaml.ScalarNode)}
            for name in _CORRELATION_REQUIRED:
                if name not in inner:
                    return f"correlation.{name}", corr.start_mark.line + 1
            if "condition" not in inner and inner["type"].value != "temporal":
                return "correlation.condition", corr.start_mark.line + 1
            continue
        for name in _REQUIRED:
            if name not in keys:
                return name, line
        det = keys["detection"]
        if not isinstance(det, yaml.MappingNode):
            return "detection", det.start_mark.line + 1
        inner = {k.value: v for k, v in det.value if isinstance(k, yaml.ScalarNode)}
        if "condition" not in inner:
            return "detection.condition", det.start_mark.line + 1
        if not isinstance(keys["logsource"], yaml.MappingNode):
            return "logsource", keys["logsource"].start_mark.line + 1
        if "level" in keys:
            level = keys["level"]
            if not isinstance(level, yaml.ScalarNode) or level.value not in _SEVERITY:
                return "level", level.start_mark.line + 1
    return None, 0


_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,127}")


def columns(keys: Iterable[str]) -> list[str]:
    """The columns of the events table: each field name once (SQLite's names ignore case, the
    first spelling wins), ``timestamp`` left to the table itself, and a name that is not a plain
    identifier left out, so no log line can stop the rules from running."""
    seen: dict[str, str] = {"timestamp": "timestamp"}
    for key in keys:
        if isinstance(key, str) and _COLUMN.fullmatch(key) and key.lower() not in seen:
            seen[key.lower()] = key
    return sorted(v for k, v in seen.items() if k != "timestamp")


def _mask_pans(text: str) -> str:
    from opsbook.secops.pan import find_pans  # noqa: PLC0415

    data = text.encode()
    hits = find_pans(data)
    for byte_offset, masked in reversed(hits):
        offset = len(data[:byte_offset].decode(errors="ignore"))
        end, seen = offset, 0
        while end < len(text) and seen < len(masked):
            if text[end].isdigit():
                seen += 1
            end += 1
        text = text[:offset] + masked + text[end:]
    return text


def redact_sample(sample: Mapping[str, Any], *, redactor: Redactor | None = None) -> dict[str, Any]:
    """A hit's sample as it may be stored and shown: a field named like a credential is
    ``***``, a card number is masked to its first six and last four digits, and every secret the
    redactor knows (the workspace's, once resolved) is ``***`` in every form it takes."""
    out: dict[str, Any] = {}
    for key, value in sample.items():
        if isinstance(value, Mapping):
            out[key] = redact_sample(value, redactor=redactor)
            continue
        if _SECRET_KEY.search(str(key)) and value not in (None, "", True, False):
            out[key] = MASK
            continue
        if isinstance(value, str | int) and not isinstance(value, bool):
            text = _mask_pans(str(value))
            if redactor is not None:
                text = redactor.redact(text)
            out[key] = value if text == str(value) else text
            continue
        out[key] = value
    return out


def _requirements(tags: Iterable[str], description: str) -> tuple[str, ...]:
    found: list[str] = []
    for tag in tags:
        if m := _PCI_TAG.search(tag):
            found.append(m.group(1))
    for m in _PCI_TEXT.finditer(description):
        found += [p.strip().rstrip(".") for p in m.group(1).split(",") if p.strip(" .")]
    return tuple(dict.fromkeys(found))


def finding_inputs(
    result: Mapping[str, Any],
    *,
    descriptions: Mapping[str, tuple[str, Sequence[str]]] | None = None,
) -> list[FindingInput]:
    """Each hit of :func:`opsbook.secops.sigma.detect`'s result as a finding candidate (source
    ``detection``): the rule is the finding's rule, the group (the source address, the actor)
    its subject, so the same attacker seen again is the same finding. ``descriptions`` maps a
    rule id to its (description, tags), from which the PCI DSS requirements are read."""
    environment = str(result["environment"])
    out: dict[str, FindingInput] = {}
    for hit in result.get("hits", []):
        rule_id = f"sigma.{hit['rule']}"
        subject = str(hit["group"])
        description, tags = (descriptions or {}).get(str(hit["rule"]), ("", ()))
        fi = FindingInput(
            source="detection",
            rule_id=rule_id,
            title=str(hit["title"]),
            severity=_SEVERITY.get(str(hit["level"]), "medium"),
            subject=subject,
            environment=environment,
            location=None,
            detail=redact_sample(
                {
                    "events": hit.get("events"),
                    "first": hit.get("first"),
                    "last": hit.get("last"),
                    "group": subject,
                }
            ),
            requirements=_requirements(tags, description),
            fingerprint=fingerprint(rule_id, environment, subject),
        )
        out.setdefault(fi.identity, fi)  # several windows of one group: one finding
    return list(out.values())


def rule_descriptions(paths: Iterable[str]) -> dict[str, tuple[str, list[str]]]:
    """``{rule id: (description, tags)}`` read from the rule files (for :func:`finding_inputs`)."""
    import yaml  # noqa: PLC0415

    out: dict[str, tuple[str, list[str]]] = {}
    for p in dict.fromkeys(paths):
        path = Path(p)
        if not path.is_file():
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if (rid := _rule_id(doc)) is not None and isinstance(doc, dict):
                tags = [str(t) for t in doc.get("tags") or []]
                out[rid] = (str(doc.get("description") or ""), tags)
    return out
