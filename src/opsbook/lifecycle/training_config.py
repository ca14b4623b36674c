"""``training.yaml``: certification areas and which runbooks they cover, the onboarding
checklist, the graded drill scenarios, pass marks and how long a certification is valid.

A workspace without the file gets the defaults below (the four areas of the seed, its
onboarding checklist, no scenarios) with the production gate off, so existing workspaces keep
running; ``opsbook init`` writes the file with ``require_certification: true``. Every error
names the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opsbook.errors import ValidationError

if TYPE_CHECKING:
    from opsbook.incidents._yamlfile import YamlDoc
    from opsbook.workspace import Workspace

FILE = "training.yaml"
DAY = 86400.0
DEFAULT_AREA = "platform-operations"

_AREAS = {
    "platform-operations": ("Platform operations", ()),
    "security-operations": ("Security operations", ("security-operations",)),
    "incident-response": ("Incident response", ("incident-response",)),
    "disaster-recovery": ("Disaster recovery", ("backup-recovery",)),
}
_ONBOARDING = (
    ("read-runbooks", "Read all runbooks thoroughly", None),
    ("hands-on-exercises", "Complete hands-on exercises in the sandbox", None),
    ("shadow", "Shadow an experienced team member", None),
    ("assessment", "Pass the runbook knowledge assessment", "assessment"),
    ("simulation", "Complete an incident response simulation", "drill"),
    ("production-access", "Receive production access", "certification"),
)
DONE_BY = ("assessment", "drill", "certification")


@dataclass(frozen=True)
class Area:
    id: str
    title: str
    runbooks: tuple[str, ...]


@dataclass(frozen=True)
class OnboardingItem:
    id: str
    title: str
    done_by: str | None = None  # ticked by itself when the person passes one of DONE_BY


@dataclass(frozen=True)
class FaultSpec:
    fault: str
    service: str | None = None


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    area: str
    faults: tuple[FaultSpec, ...]
    expected: tuple[str, ...]  # RUNBOOK#PROCEDURE
    time_limit: float  # seconds
    severity: str = "SEV3"  # of the drill incident

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "area": self.area,
            "faults": [{"fault": f.fault, "service": f.service} for f in self.faults],
            "expected": list(self.expected),
            "time_limit_s": self.time_limit,
            "severity": self.severity,
        }


@dataclass(frozen=True)
class TrainingConfig:
    areas: tuple[Area, ...] = field(
        default_factory=lambda: tuple(Area(k, t, r) for k, (t, r) in _AREAS.items())
    )
    onboarding: tuple[OnboardingItem, ...] = field(
        default_factory=lambda: tuple(OnboardingItem(*x) for x in _ONBOARDING)
    )
    scenarios: tuple[Scenario, ...] = ()
    require_certification: bool = False
    questions: int = 10
    pass_mark: float = 80.0
    drill_pass_mark: float = 70.0
    valid_for: float = 365 * DAY
    remind_within: float = 30 * DAY

    def area(self, area_id: str) -> Area:
        for a in self.areas:
            if a.id == area_id:
                return a
        raise ValidationError(
            f"unknown training area {area_id!r}",
            field="area",
            hint=f"areas: {', '.join(a.id for a in self.areas)} (training.yaml)",
        )

    def area_of(self, runbook_id: str) -> str:
        """The area a runbook belongs to: the one listing it, else platform operations (or
        the first area when there is no platform-operations)."""
        for a in self.areas:
            if runbook_id in a.runbooks:
                return a.id
        ids = [a.id for a in self.areas]
        return DEFAULT_AREA if DEFAULT_AREA in ids else ids[0]

    def runbooks_of(self, area_id: str, all_runbooks: list[str]) -> list[str]:
        return [r for r in all_runbooks if self.area_of(r) == area_id]

    def scenario(self, scenario_id: str) -> Scenario:
        for s in self.scenarios:
            if s.id == scenario_id:
                return s
        import difflib  # noqa: PLC0415

        names = [s.id for s in self.scenarios]
        close = difflib.get_close_matches(scenario_id, names, n=3)
        raise ValidationError(
            f"unknown drill scenario {scenario_id!r}",
            field="scenario",
            hint=(f"did you mean {', '.join(close)}? " if close else "")
            + f"scenarios in training.yaml: {', '.join(names) or 'none'}",
        )


def load_training(ws: Workspace) -> TrainingConfig:
    from opsbook.incidents._yamlfile import load_yaml  # noqa: PLC0415

    path = ws.root / FILE
    if not path.is_file():
        return TrainingConfig()
    doc = load_yaml(path, what="the training file")
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error(
            "training.yaml must be a mapping", hint="see the file `opsbook init` writes"
        )
    known = {
        "require_certification",
        "assessment",
        "drills",
        "certification",
        "areas",
        "onboarding",
        "scenarios",
    }
    for key in data:
        if key not in known:
            raise doc.error(
                f"training.yaml has no setting {key!r}",
                key,
                hint=f"settings: {', '.join(sorted(known))}",
            )
    values: dict[str, Any] = {}
    rc = data.get("require_certification", False)
    if not isinstance(rc, bool):
        raise doc.error(
            "require_certification must be true or false",
            "require_certification",
            hint="require_certification: true",
        )
    values["require_certification"] = rc
    values.update(_numbers(doc, data))
    if "areas" in data:
        values["areas"] = _areas(doc, data["areas"])
    if "onboarding" in data:
        values["onboarding"] = _onboarding(doc, data["onboarding"])
    config = TrainingConfig(**values)
    if "scenarios" in data:
        config = TrainingConfig(
            **{**values, "scenarios": _scenarios(doc, data["scenarios"], config)}
        )
    return config


def _numbers(doc: YamlDoc, data: dict[str, Any]) -> dict[str, Any]:
    from opsbook.incidents._yamlfile import duration  # noqa: PLC0415

    out: dict[str, Any] = {}
    for section, key, name, kind in (
        ("assessment", "questions", "questions", int),
        ("assessment", "pass_mark", "pass_mark", float),
        ("drills", "pass_mark", "drill_pass_mark", float),
        ("certification", "valid_for", "valid_for", "duration"),
        ("certification", "remind_within", "remind_within", "duration"),
    ):
        raw = data.get(section)
        if raw is None:
            continue
        if not isinstance(raw, dict):
            raise doc.error(f"{section} must be a mapping", section, hint=f"{section}: {{...}}")
        if key not in raw:
            continue
        value = raw[key]
        if kind == "duration":
            seconds = duration(doc, value, section, key)
            if seconds <= 0:
                raise doc.error(
                    f"{section}.{key} must be longer than zero", section, key, hint="e.g. 365d"
                )
            out[name] = seconds
        elif kind is int:
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100:
                raise doc.error(
                    f"{section}.{key} must be a whole number from 1 to 100",
                    section,
                    key,
                    hint="e.g. 10",
                )
            out[name] = value
        else:
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not 0 < value <= 100
            ):
                raise doc.error(
                    f"{section}.{key} must be a percentage above 0, at most 100",
                    section,
                    key,
                    hint="e.g. 80",
                )
            out[name] = float(value)
    return out


def _areas(doc: YamlDoc, raw: Any) -> tuple[Area, ...]:
    if not isinstance(raw, dict) or not raw:
        raise doc.error(
            "areas must map area ids to {title, runbooks}", "areas", hint="see the default"
        )
    out: list[Area] = []
    for aid, spec in raw.items():
        if not isinstance(spec, dict):
            raise doc.error(
                f"areas.{aid} must be a mapping", "areas", aid, hint="{title: ..., runbooks: [...]}"
            )
        runbooks = spec.get("runbooks", [])
        if not isinstance(runbooks, list) or not all(isinstance(r, str) for r in runbooks):
            raise doc.error(
                f"areas.{aid}.runbooks must be a list of runbook ids",
                "areas",
                aid,
                "runbooks",
                hint="runbooks: [incident-response]",
            )
        out.append(Area(str(aid), str(spec.get("title") or aid), tuple(runbooks)))
    return tuple(out)


def _onboarding(doc: YamlDoc, raw: Any) -> tuple[OnboardingItem, ...]:
    if not isinstance(raw, list):
        raise doc.error(
            "onboarding must be a list of {id, title}", "onboarding", hint="see the default"
        )
    out: list[OnboardingItem] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not item.get("id") or not item.get("title"):
            raise doc.error(
                f"onboarding[{i}] needs an id and a title",
                "onboarding",
                i,
                hint="{id: shadow, title: ...}",
            )
        done_by = item.get("done_by")
        if done_by is not None and done_by not in DONE_BY:
            raise doc.error(
                f"onboarding[{i}].done_by must be one of {', '.join(DONE_BY)}",
                "onboarding",
                i,
                "done_by",
                hint="or leave it out: the item is ticked by hand",
            )
        if any(o.id == str(item["id"]) for o in out):
            raise doc.error(
                f"onboarding item {item['id']!r} is listed twice",
                "onboarding",
                i,
                hint="rename one",
            )
        out.append(OnboardingItem(str(item["id"]), str(item["title"]), done_by))
    return tuple(out)


def _scenarios(doc: YamlDoc, raw: Any, config: TrainingConfig) -> tuple[Scenario, ...]:
    from opsbook.incidents._yamlfile import duration  # noqa: PLC0415
    from opsbook.sandbox.faults import FAULTS  # noqa: PLC0415

    if not isinstance(raw, dict):
        raise doc.error(
            "scenarios must map scenario ids to their spec", "scenarios", hint="see the default"
        )
    areas = {a.id for a in config.areas}
    out: list[Scenario] = []
    for sid, spec in raw.items():
        at = ("scenarios", sid)
        if not isinstance(spec, dict):
            raise doc.error(
                f"scenarios.{sid} must be a mapping", *at, hint="{title, area, faults, expected}"
            )
        area = str(spec.get("area", DEFAULT_AREA))
        if area not in areas:
            raise doc.error(
                f"scenarios.{sid}.area: unknown area {area!r}",
                *at,
                "area",
                hint=", ".join(sorted(areas)),
            )
        faults_raw = spec.get("faults")
        if not isinstance(faults_raw, list) or not faults_raw:
            raise doc.error(
                f"scenarios.{sid}.faults must list at least one fault",
                *at,
                hint="faults: [{fault: crash, service: payment}]",
            )
        faults: list[FaultSpec] = []
        for j, f in enumerate(faults_raw):
            if not isinstance(f, dict) or f.get("fault") not in FAULTS:
                raise doc.error(
                    f"scenarios.{sid}.faults[{j}]: unknown fault",
                    *at,
                    "faults",
                    j,
                    hint=f"faults: {', '.join(sorted(FAULTS))} (opsbook sandbox chaos list --all)",
                )
            faults.append(
                FaultSpec(str(f["fault"]), str(f["service"]) if f.get("service") else None)
            )
        expected = spec.get("expected", [])
        if not isinstance(expected, list) or not all(
            isinstance(e, str) and "#" in e for e in expected
        ):
            raise doc.error(
                f"scenarios.{sid}.expected must list RUNBOOK#PROCEDURE references",
                *at,
                "expected",
                hint="expected: [troubleshooting#service-connectivity]",
            )
        limit = duration(doc, spec.get("time_limit", "15m"), *at, "time_limit")
        severity = str(spec.get("severity", "SEV3")).upper()
        if severity not in ("SEV1", "SEV2", "SEV3", "SEV4"):
            raise doc.error(
                f"scenarios.{sid}.severity must be SEV1 to SEV4", *at, "severity", hint="SEV3"
            )
        out.append(
            Scenario(
                id=str(sid),
                title=str(spec.get("title") or sid),
                area=area,
                faults=tuple(faults),
                expected=tuple(expected),
                time_limit=limit,
                severity=severity,
            )
        )
    return tuple(out)
