"""The workspace's incident policy (``incident_policy.yaml``): severities, the impact × urgency
matrix, rules that raise a severity, services, and notification settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opsbook.incidents._yamlfile import YamlDoc, duration, load_yaml
from opsbook.incidents.model import IMPACTS, SEVERITIES, TYPES, URGENCIES, higher, rank
from opsbook.notify.model import CHANNELS as CHANNELS  # noqa: PLC0414 - explicit re-export
from opsbook.notify.model import NotifySettings as NotifySettings  # noqa: PLC0414 - re-export
from opsbook.workspace import Workspace

POLICY_FILE = "incident_policy.yaml"


@dataclass(frozen=True)
class SeverityPolicy:
    name: str
    description: str
    ack_target: float  # seconds; nobody acknowledged by then: page the next level
    update_every: float  # seconds between stakeholder updates
    page: tuple[str, ...]  # contacts.yaml levels paged at declaration


@dataclass(frozen=True)
class Rule:
    at_least: str
    why: str
    type: str | None = None
    service: str | None = None
    impact: tuple[str, ...] = ()

    def matches(self, *, type_: str, services: tuple[str, ...], impact: str | None) -> bool:
        if self.type and self.type != type_:
            return False
        if self.service and self.service not in services:
            return False
        return not (self.impact and impact not in self.impact)


@dataclass(frozen=True)
class Classification:
    severity: str
    reasons: tuple[str, ...]


#: Placeholders an update template may use.
TEMPLATE_FIELDS = ("ref", "severity", "status", "title", "services", "commander", "text")
DEFAULT_TEMPLATES = {
    "internal": "{ref} {severity} ({status}) — {text}",
    "public": "{text}",
}


@dataclass(frozen=True)
class Policy:
    path: Path
    severities: dict[str, SeverityPolicy]
    matrix: dict[str, dict[str, str]]
    rules: tuple[Rule, ...]
    services: dict[str, str]  # id -> display name (status page components)
    notify: NotifySettings
    templates: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES))

    def classify(
        self, *, impact: str, urgency: str, type_: str, services: tuple[str, ...]
    ) -> Classification:
        sev = self.matrix[impact][urgency]
        reasons = [f"{impact} impact × {urgency} urgency → {sev}"]
        for rule in self.rules:
            if rule.matches(type_=type_, services=services, impact=impact):
                raised = higher(sev, rule.at_least)
                if raised != sev:
                    reasons.append(f"{rule.why} → at least {rule.at_least}")
                    sev = raised
        return Classification(sev, tuple(reasons))

    def severity(self, name: str) -> SeverityPolicy:
        return self.severities[name]


def load_policy(workspace: Workspace) -> Policy:
    """Read and check ``incident_policy.yaml``; every error names the file and line."""
    doc = load_yaml(workspace.root / POLICY_FILE, what="the incident policy")
    return parse_policy(doc)


def parse_policy(doc: YamlDoc) -> Policy:
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error("the incident policy must be a mapping", hint="see `opsbook init`'s file")
    sev_raw = _mapping(doc, data, "severities")
    severities: dict[str, SeverityPolicy] = {}
    for name in SEVERITIES:
        if name not in sev_raw:
            raise doc.error(
                f"severities: {name} is missing", "severities", hint="define SEV1 to SEV4"
            )
    for name in sev_raw:
        if name not in SEVERITIES:
            raise doc.error(
                f"severities: unknown severity {name!r}",
                "severities",
                name,
                hint=f"use {', '.join(SEVERITIES)}",
            )
        body = _mapping(doc, sev_raw, name, parent=("severities",))
        page = body.get("page", [])
        if not isinstance(page, list) or not page:
            raise doc.error(
                f"severities.{name}.page must list at least one contacts.yaml level",
                "severities",
                name,
                "page",
                hint="e.g. page: [level-1]",
            )
        severities[name] = SeverityPolicy(
            name=name,
            description=str(body.get("description", "")),
            ack_target=duration(doc, body.get("ack_target"), "severities", name, "ack_target"),
            update_every=duration(
                doc, body.get("update_every"), "severities", name, "update_every"
            ),
            page=tuple(str(p) for p in page),
        )
    matrix_raw = _mapping(doc, data, "matrix")
    matrix: dict[str, dict[str, str]] = {}
    for impact in IMPACTS:
        row = matrix_raw.get(impact)
        if not isinstance(row, dict):
            raise doc.error(
                f"matrix: impact {impact!r} is missing",
                "matrix",
                hint=f"give a row for each impact: {', '.join(IMPACTS)}",
            )
        matrix[impact] = {}
        for urgency in URGENCIES:
            sev = str(row.get(urgency, "")).upper().replace("-", "")
            if sev not in SEVERITIES:
                raise doc.error(
                    f"matrix.{impact}.{urgency}: {row.get(urgency)!r} is not a severity",
                    "matrix",
                    impact,
                    hint=f"each urgency ({', '.join(URGENCIES)}) maps to one of "
                    + ", ".join(SEVERITIES),
                )
            matrix[impact][urgency] = sev
    for impact in matrix_raw:
        if impact not in IMPACTS:
            raise doc.error(
                f"matrix: unknown impact {impact!r}", "matrix", impact, hint=", ".join(IMPACTS)
            )
    services_raw = data.get("services") or {}
    if not isinstance(services_raw, dict) or not services_raw:
        raise doc.error(
            "services must map each service id to its name", "services", hint="account: Accounts"
        )
    services = {str(k): str(v) for k, v in services_raw.items()}
    rules = tuple(_rule(doc, i, r, services) for i, r in enumerate(data.get("rules") or []))
    return Policy(
        path=doc.path,
        severities=severities,
        matrix=matrix,
        rules=rules,
        services=services,
        notify=_notify(doc, data.get("notifications") or {}),
        templates=_templates(doc, data.get("templates") or {}),
    )


def _templates(doc: YamlDoc, raw: Any) -> dict[str, str]:
    """``templates: {internal: …, public: …}``: text with ``{placeholders}``, checked now so a
    typo is a file:line error and not a failed update during an incident."""
    import string  # noqa: PLC0415

    if not isinstance(raw, dict):
        raise doc.error("templates must be a mapping", "templates", hint="internal: '{text}'")
    out = dict(DEFAULT_TEMPLATES)
    for name, text in raw.items():
        if name not in DEFAULT_TEMPLATES or not isinstance(text, str):
            raise doc.error(
                f"templates.{name}: expected internal or public with a text",
                "templates",
                hint="e.g. internal: '{ref} {severity}: {text}'",
            )
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
        except ValueError as exc:
            raise doc.error(
                f"templates.{name}: {exc}", "templates", name, hint="write {{ for a brace"
            ) from None
        unknown = [f for f in fields if f not in TEMPLATE_FIELDS]
        if unknown:
            raise doc.error(
                f"templates.{name}: unknown placeholder {{{unknown[0]}}}",
                "templates",
                name,
                hint="use " + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS),
            )
        out[str(name)] = text
    return out


def _mapping(
    doc: YamlDoc, data: dict[str, Any], key: str, parent: tuple[str, ...] = ()
) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        where = ".".join((*parent, key))
        raise doc.error(
            f"{where} is missing or not a mapping", *parent, key, hint="see `opsbook init`'s file"
        )
    return value


def _rule(doc: YamlDoc, i: int, raw: Any, services: dict[str, str]) -> Rule:
    if not isinstance(raw, dict) or "at_least" not in raw:
        raise doc.error(
            f"rules[{i}] needs at_least (and type, service or impact)",
            "rules",
            i,
            hint="e.g. {service: payment, impact: [extensive], at_least: SEV1, why: ...}",
        )
    at_least = str(raw["at_least"]).upper().replace("-", "")
    if at_least not in SEVERITIES:
        raise doc.error(
            f"rules[{i}].at_least: {raw['at_least']!r} is not a severity",
            "rules",
            i,
            hint=", ".join(SEVERITIES),
        )
    type_ = raw.get("type")
    if type_ is not None and type_ not in TYPES:
        raise doc.error(
            f"rules[{i}].type: unknown type {type_!r}", "rules", i, hint=", ".join(TYPES)
        )
    service = raw.get("service")
    if service is not None and service not in services:
        raise doc.error(
            f"rules[{i}].service: unknown service {service!r}",
            "rules",
            i,
            hint="list it under services: first",
        )
    impact = raw.get("impact") or []
    impact = [impact] if isinstance(impact, str) else impact
    for imp in impact:
        if imp not in IMPACTS:
            raise doc.error(
                f"rules[{i}].impact: unknown impact {imp!r}", "rules", i, hint=", ".join(IMPACTS)
            )
    return Rule(
        at_least=at_least,
        why=str(raw.get("why", f"rule {i + 1}")),
        type=type_,
        service=service,
        impact=tuple(impact),
    )


def _notify(doc: YamlDoc, raw: Any) -> NotifySettings:
    if not isinstance(raw, dict):
        raise doc.error("notifications must be a mapping", "notifications", hint="see the default")
    channels = raw.get("channels", list(CHANNELS))
    for ch in channels:
        if ch not in CHANNELS:
            raise doc.error(
                f"notifications.channels: unknown channel {ch!r}",
                "notifications",
                "channels",
                hint=", ".join(CHANNELS),
            )
    smtp = raw.get("smtp") or {}
    retries = raw.get("retries", 2)
    if not isinstance(retries, int) or not 0 <= retries <= 10:
        raise doc.error(
            "notifications.retries must be a whole number from 0 to 10",
            "notifications",
            "retries",
            hint="e.g. retries: 2",
        )
    return NotifySettings(
        channels=tuple(channels),
        retries=retries,
        retry_delay=duration(doc, raw.get("retry_delay", "1s"), "notifications", "retry_delay"),
        timeout=duration(doc, raw.get("timeout", "10s"), "notifications", "timeout"),
        smtp_host=str(smtp.get("host", "localhost")),
        smtp_port=int(smtp.get("port", 25)),
        smtp_from=str(smtp.get("from", "opsbook@localhost")),
        smtp_starttls=bool(smtp.get("starttls", False)),
        webhook_secret_env=str(raw.get("webhook_secret_env", "OPSBOOK_WEBHOOK_SECRET")),
        public_url=str(raw.get("public_url", "http://127.0.0.1:8000")).rstrip("/"),
        sms_url=str((raw.get("sms") or {}).get("url", "") or ""),
    )


def is_downgrade(old: str, new: str) -> bool:
    return rank(new) > rank(old)
