"""Quick reference cards (issue 15, the seed's "Quick Reference Cards") as data rendered for
people: emergency contacts, critical system information, common commands and escalation,
built from ``contacts.yaml``, ``incident_policy.yaml`` and the environment files, so a card is
never out of date with what opsbook pages and runs.

A card is sections of rows (label, value, note). It renders as compact text for a terminal (one
screen), JSON, and a printable HTML page (A4, no external assets; the console serves the same
card with its stylesheet); PDF is that page printed by headless Chromium
(:mod:`opsbook.monitoring.pdf`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opsbook.errors import ValidationError

if TYPE_CHECKING:
    from opsbook.workspace import Environment, Workspace

KINDS = ("contacts", "system", "commands", "escalation")
TITLES = {
    "contacts": "Emergency contacts",
    "system": "Critical system information",
    "commands": "Common commands",
    "escalation": "Escalation",
}
SERVICES = ("account", "transaction", "payment", "notification")


@dataclass(frozen=True)
class Row:
    label: str
    value: str
    note: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"label": self.label, "value": self.value, "note": self.note}


@dataclass(frozen=True)
class Section:
    title: str
    rows: tuple[Row, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "rows": [r.to_dict() for r in self.rows]}


@dataclass(frozen=True)
class Card:
    kind: str
    title: str
    subtitle: str
    sections: tuple[Section, ...]
    sources: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.title,
            "subtitle": self.subtitle,
            "sections": [s.to_dict() for s in self.sections],
            "sources": list(self.sources),
        }


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        import difflib  # noqa: PLC0415

        close = difflib.get_close_matches(kind, KINDS, n=1)
        raise ValidationError(
            f"no card {kind!r}",
            field="kind",
            hint=(f"did you mean {close[0]}? " if close else "") + f"cards: {', '.join(KINDS)}",
        )
    return kind


def _contacts_doc(ws: Workspace) -> dict[str, Any]:
    from opsbook.incidents._yamlfile import load_yaml  # noqa: PLC0415

    doc = load_yaml(ws.contacts_path, what="the contacts file")  # missing: file named, exit 2
    if not isinstance(doc.data, dict) or not isinstance(doc.data.get("levels"), list):
        raise doc.error(
            "contacts.yaml must list escalation levels under levels:",
            "levels",
            hint="see the contacts.yaml `opsbook init` writes",
        )
    return doc.data


def _contacts(ws: Workspace) -> Card:
    data = _contacts_doc(ws)
    sections: list[Section] = []
    for lv in data["levels"]:
        if not isinstance(lv, dict):
            continue
        rows = []
        for c in lv.get("contacts") or []:
            if not isinstance(c, dict):
                continue
            reach = " · ".join(str(c[k]) for k in ("phone", "email") if c.get(k))
            rows.append(
                Row(str(c.get("role") or c.get("name") or "?"), reach, str(c.get("when") or ""))
            )
        title = str(lv.get("title") or lv.get("name"))
        if lv.get("availability"):
            title += f" ({lv['availability']})"
        sections.append(Section(title, tuple(rows)))
    external = [
        Row(
            str(e.get("name")),
            " · ".join(str(e[k]) for k in ("phone", "contact", "email") if e.get(k)),
            str(e.get("when") or ""),
        )
        for e in data.get("external") or []
        if isinstance(e, dict)
    ]
    if external:
        sections.append(Section("External support", tuple(external)))
    return Card(
        "contacts",
        TITLES["contacts"],
        "Who to call, and when",
        tuple(sections),
        (ws.contacts_path.name,),
    )


def _environments(ws: Workspace, env: str | None) -> list[Environment]:
    from opsbook.workspace import load_environment  # noqa: PLC0415

    names = [env] if env else ws.environment_names()
    return [load_environment(ws, n) for n in names]


def _system(ws: Workspace, env: str | None) -> Card:
    sections: list[Section] = []
    sources: list[str] = []
    for e in _environments(ws, env):
        d = e.data
        sources.append(f"environments/{e.path.name}")
        rows = [Row("Platform", str(e.platform), str(d.get("class") or ""))]
        for key, label in (
            ("cluster", "Kubernetes cluster"),
            ("namespace", "Namespace"),
            ("resource_group", "Resource group"),
            ("subscription", "Subscription"),
            ("helm_release", "Helm release"),
            ("api_base", "API"),
            ("key_vault", "Key Vault"),
            ("registry", "Container registry"),
            ("failover_group", "SQL failover group"),
        ):
            if d.get(key):
                rows.append(Row(label, str(d[key])))
        regions = d.get("regions")
        if isinstance(regions, dict) and regions:
            rows.append(Row("Regions", ", ".join(f"{v} ({k})" for k, v in regions.items())))
        dbs = d.get("databases")
        if isinstance(dbs, dict):
            for name, spec in dbs.items():
                if isinstance(spec, dict) and (spec.get("host") or spec.get("server")):
                    host = str(spec.get("host") or spec.get("server"))
                    extra = f"database {spec['database']}" if spec.get("database") else ""
                    rows.append(Row(f"Database {name}", host, extra))
        mon = d.get("monitoring")
        if isinstance(mon, dict):
            for name, url in mon.items():
                if url:
                    rows.append(Row(str(name).replace("_", " ").title(), str(url)))
        if e.platform == "local":
            rows.append(Row("Sandbox", "opsbook sandbox status", "the local banking platform"))
        title = f"{e.name}: {d.get('description')}" if d.get("description") else e.name
        sections.append(Section(title, tuple(rows)))
    return Card(
        "system",
        TITLES["system"],
        "Where things run (from the environment files; no credentials)",
        tuple(sections),
        tuple(sources),
    )


def _commands(ws: Workspace, env: str | None) -> Card:
    envs = _environments(ws, env)
    sections: list[Section] = []
    for e in envs:
        n = e.name
        status = [
            Row(
                "Check all services",
                f"opsbook run system-monitoring#morning-health-check --env {n}",
            ),
            Row("Check service health", f"opsbook monitor check --env {n}", "every probe once"),
            Row("Declare an incident", "opsbook incidents declare TITLE --service SERVICE"),
        ]
        emergency = [
            Row(
                "Restart a service",
                f"opsbook run troubleshooting#service-connectivity --env {n} -p service=SERVICE",
                "platform.restart",
            ),
            Row(
                "Roll back a release",
                f"opsbook run deployment-procedures#emergency-rollback --env {n}"
                " -p service=SERVICE",
                "platform.rollback",
            ),
        ]
        if e.platform == "kubernetes":
            ns = str(e.data.get("namespace") or "NAMESPACE")
            release = str(e.data.get("helm_release") or "RELEASE")
            status += [
                Row("kubectl: pods", f"kubectl get pods -n {ns}"),
                Row("kubectl: resource use", f"kubectl top pods -n {ns}"),
            ]
            emergency += [
                Row("kubectl: restart", f"kubectl rollout restart deployment/SERVICE -n {ns}"),
                Row("kubectl: scale", f"kubectl scale deployment SERVICE --replicas=N -n {ns}"),
                Row("helm: roll back", f"helm rollback {release} REVISION -n {ns}"),
            ]
        elif e.platform == "local":
            status.append(Row("Sandbox status", f"opsbook sandbox status --env {n}"))
            emergency.append(
                Row("Sandbox: end a drill's faults", f"opsbook sandbox chaos clear --env {n}")
            )
        listed = e.data.get("commands")
        if isinstance(listed, list) and listed:
            sections.append(
                Section(
                    f"{n}: from the environment file",
                    tuple(
                        Row(str(c.get("title", "")), str(c.get("command", "")))
                        for c in listed
                        if isinstance(c, dict) and c.get("command")
                    ),
                )
            )
        sections.append(Section(f"{n}: system status", tuple(status)))
        sections.append(Section(f"{n}: emergency procedures", tuple(emergency)))
    return Card(
        "commands",
        TITLES["commands"],
        f"Services: {', '.join(SERVICES)}; every run is journaled and audited",
        tuple(sections),
        tuple(f"environments/{e.path.name}" for e in envs),
    )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds < 7200 else f"{seconds / 3600:g} h"


def _escalation(ws: Workspace) -> Card:
    from opsbook.incidents.config import load_config  # noqa: PLC0415

    data = _contacts_doc(ws)
    config = load_config(ws)
    levels = []
    for lv in data["levels"]:
        if not isinstance(lv, dict):
            continue
        levels.append(Row(str(lv.get("title") or lv.get("name")), str(lv.get("description") or "")))
        levels.extend(
            Row("", f"call the {c.get('role')}", f"when: {c.get('when')}")
            for c in lv.get("contacts") or []
            if isinstance(c, dict) and c.get("when")
        )
    policy = data.get("escalation_policy") or {}
    rules = []
    timeouts = policy.get("resolve_timeout") if isinstance(policy, dict) else None
    if isinstance(timeouts, dict):
        for sev, t in timeouts.items():
            rules.append(Row(str(sev), f"escalate when not resolved within {t}"))
    if isinstance(policy, dict) and policy.get("repeat") is not None:
        rules.append(Row("Repeat", f"page {policy['repeat']} more time(s) before the next level"))
    sev_rows = [
        Row(
            sev.name,
            sev.description,
            f"acknowledge within {_minutes(sev.ack_target)};"
            f" page {', '.join(sev.page) or 'nobody'}",
        )
        for sev in config.policy.severities.values()
    ]
    sections = [Section("Levels, in order", tuple(levels))]
    if rules:
        sections.append(Section("When to escalate", tuple(rules)))
    if sev_rows:
        sections.append(Section("Severities", tuple(sev_rows)))
    return Card(
        "escalation",
        TITLES["escalation"],
        "Who is paged, when, and how fast (contacts.yaml, incident_policy.yaml)",
        tuple(sections),
        (ws.contacts_path.name, "incident_policy.yaml"),
    )


def build(kind: str, *, workspace: Workspace, environment: str | None = None) -> Card:
    """The card ``kind`` for ``environment`` (system and commands: every environment when
    None)."""
    check_kind(kind)
    if kind == "contacts":
        return _contacts(workspace)
    if kind == "system":
        return _system(workspace, environment)
    if kind == "commands":
        return _commands(workspace, environment)
    return _escalation(workspace)


def render_text(card: Card, *, width: int = 100) -> str:
    """Compact text for a terminal: values (commands, numbers) are never cut; notes wrap under
    them."""
    import textwrap  # noqa: PLC0415

    out = [f"{card.title.upper()}: {card.subtitle}"]
    for s in card.sections:
        out.append("")
        out.append(s.title)
        label_w = min(28, max((len(r.label) for r in s.rows), default=0))
        indent = " " * (label_w + 4)
        for r in s.rows:
            line = f"  {r.label:<{label_w}}  {r.value}"
            if r.note and len(line) + len(r.note) + 4 <= width:
                out.append(f"{line}  ({r.note})")
                continue
            out.append(line)
            if r.note:
                out.extend(
                    textwrap.wrap(
                        r.note, width=width, initial_indent=indent, subsequent_indent=indent
                    )
                )
    out.append("")
    out.append(f"from {', '.join(card.sources)}")
    return "\n".join(out) + "\n"


PRINT_CSS = """
@page { size: A4; margin: 14mm; }
body { font: 10pt/1.35 system-ui, sans-serif; color: #111; margin: 0; }
h1 { font-size: 16pt; margin: 0 0 2mm; }
p.sub { margin: 0 0 4mm; color: #444; }
section { break-inside: avoid; margin-bottom: 4mm; }
h2 { font-size: 11pt; border-bottom: 1px solid #999; margin: 3mm 0 1mm; }
table { border-collapse: collapse; width: 100%; }
td { padding: 0.6mm 2mm 0.6mm 0; vertical-align: top; }
td.l { font-weight: 600; width: 30%; }
td.n { color: #444; font-size: 9pt; }
code { font: 9pt ui-monospace, monospace; }
footer { margin-top: 4mm; color: #666; font-size: 8pt; }
"""


def render_body(card: Card) -> str:
    """The card's HTML body (the console wraps it in its page; the export in a printable one)."""
    parts = [
        f'<article class="card card-{card.kind}"><h1>{html.escape(card.title)}</h1>',
        f'<p class="sub">{html.escape(card.subtitle)}</p>',
    ]
    code = card.kind == "commands"
    for s in card.sections:
        parts.append(f"<section><h2>{html.escape(s.title)}</h2><table>")
        for r in s.rows:
            value = html.escape(r.value)
            value = f"<code>{value}</code>" if code else value
            parts.append(
                f'<tr><td class="l">{html.escape(r.label)}</td><td>{value}</td>'
                f'<td class="n">{html.escape(r.note)}</td></tr>'
            )
        parts.append("</table></section>")
    parts.append(f"<footer>From {html.escape(', '.join(card.sources))}.</footer></article>")
    return "".join(parts)


def render_html(card: Card) -> str:
    """A standalone printable page: no script, no external asset, its print styles inline."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(card.title)}</title><style>{PRINT_CSS}</style></head>"
        f"<body>{render_body(card)}</body></html>"
    )
