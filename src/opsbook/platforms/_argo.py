"""Argo Rollouts manifests and status, as pure functions (no commands): the Rollout status view,
the canary steps, and opsbook's analysis templates as Argo ``AnalysisTemplate`` objects. Used by
:mod:`opsbook.platforms.k8s_rollouts`, which explains the choices."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from opsbook.errors import UsageError, ValidationError

API_VERSION = "argoproj.io/v1alpha1"
#: The ``{{ name }}`` placeholders a prometheus query may use, passed as Argo args.
ANALYSIS_ARGS = ("service", "version", "stable_version", "namespace")

_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # DNS-1123 subdomain
_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|==|!=|&&|\|\||[<>!+\-*/()?:]))"
)
_WORDS = {"true", "false", "and", "or", "not"}


def rollout_status(
    ro: Mapping[str, Any], replicasets: Sequence[Mapping[str, Any]], *, service: str
) -> dict[str, Any]:
    """The view of a Rollout (``kubectl get rollout -o json``) and its ReplicaSets."""
    spec, st = ro.get("spec") or {}, ro.get("status") or {}
    strategy = (spec.get("strategy") or {}) if isinstance(spec, Mapping) else {}
    stable, current = stable_hash(ro), st.get("currentPodHash")
    aborted = bool(st.get("abort"))
    promoted = bool(stable) and stable == current
    desired = _image_tag(_container_image((spec.get("template") or {}).get("spec") or {}, service))
    steps = (strategy.get("canary") or {}).get("steps") or []
    index = st.get("currentStepIndex")
    weight: int
    if "blueGreen" in strategy:
        active = (st.get("blueGreen") or {}).get("activeSelector")
        weight = 100 if active and active == current and not promoted else 0
    elif promoted or aborted:
        weight = 0
    else:
        routed = ((st.get("canary") or {}).get("weights") or {}).get("canary") or {}
        weight = int(routed["weight"]) if "weight" in routed else _set_weight(steps, index)
    message = st.get("message") or next(
        (
            c.get("message")
            for c in st.get("conditions") or []
            if c.get("reason") in ("RolloutAborted", "ProgressDeadlineExceeded")
        ),
        "",
    )
    analysis = (st.get("canary") or {}).get("currentStepAnalysisRunStatus") or (
        st.get("blueGreen") or {}
    ).get("postPromotionAnalysisRunStatus")
    return {
        "service": service,
        "rollout": (ro.get("metadata") or {}).get("name"),
        "strategy": strategy_of(ro),
        "phase": st.get("phase") or _phase(ro),
        "aborted": aborted,
        "stable_version": rs_version(ro, replicasets, service, stable),
        "canary_version": None if promoted else desired,
        "weight": weight,
        "step": index,
        "steps": len(steps),
        "message": message,
        "analysis": (
            {k: analysis.get(k) for k in ("name", "status", "message") if analysis.get(k)}
            if isinstance(analysis, Mapping)
            else None
        ),
    }


def stable_hash(ro: Mapping[str, Any]) -> str | None:
    st = ro.get("status") or {}
    found = st.get("stableRS") or (st.get("canary") or {}).get("stableRS")
    return str(found) if found else None


def strategy_of(ro: Mapping[str, Any]) -> str:
    strategy = (ro.get("spec") or {}).get("strategy") or {}
    return "canary" if "canary" in strategy else "blueGreen" if "blueGreen" in strategy else "none"


def _phase(ro: Mapping[str, Any]) -> str:
    """The phase for controllers older than v1.0 (no ``status.phase``), as the plugin says it."""
    st = ro.get("status") or {}
    if st.get("abort") or any(
        c.get("reason") in ("RolloutAborted", "ProgressDeadlineExceeded")
        for c in st.get("conditions") or []
    ):
        return "Degraded"
    if (ro.get("spec") or {}).get("paused") or st.get("pauseConditions"):
        return "Paused"
    stable = stable_hash(ro)
    return "Healthy" if stable and stable == st.get("currentPodHash") else "Progressing"


def _set_weight(steps: Sequence[Mapping[str, Any]], index: Any) -> int:
    """The weight the steps before ``index`` set (100 past the last step)."""
    if not isinstance(index, int):
        return 0
    if index >= len(steps):
        return 100
    weight = 0
    for step in steps[: index + 1]:
        if isinstance(step, Mapping) and "setWeight" in step:
            weight = int(step["setWeight"])
    return weight


def step_weights(ro: Mapping[str, Any]) -> list[int]:
    steps = (((ro.get("spec") or {}).get("strategy") or {}).get("canary") or {}).get("steps")
    return [int(s["setWeight"]) for s in steps or [] if "setWeight" in s]


def following_step(ro: Mapping[str, Any]) -> dict[str, Any]:
    """The canary step after the current one (``{}`` when there is none): where one
    ``promote`` takes the Rollout."""
    steps = (((ro.get("spec") or {}).get("strategy") or {}).get("canary") or {}).get("steps")
    index = (ro.get("status") or {}).get("currentStepIndex")
    nxt = index + 1 if isinstance(index, int) else 0
    steps = list(steps or [])
    return dict(steps[nxt]) if nxt < len(steps) and isinstance(steps[nxt], Mapping) else {}


def describe_step(step: Mapping[str, Any]) -> str:
    if not step:
        return "the end (full promotion)"
    return f"{next(iter(step))}"


def _container_image(pod_spec: Mapping[str, Any], service: str) -> str:
    containers = pod_spec.get("containers") or []
    chosen = next((c for c in containers if c.get("name") == service), None)
    if chosen is None and containers:
        chosen = containers[0]
    return str((chosen or {}).get("image") or "")


def _image_tag(image: str) -> str | None:
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def rs_version(
    ro: Mapping[str, Any],
    replicasets: Sequence[Mapping[str, Any]],
    service: str,
    pod_hash: str | None,
) -> str | None:
    """The image tag of the Rollout's ReplicaSet with ``rollouts-pod-template-hash`` = hash."""
    if not pod_hash:
        return None
    uid = (ro.get("metadata") or {}).get("uid")
    name = (ro.get("metadata") or {}).get("name")
    for rs in replicasets:
        meta = rs.get("metadata") or {}
        owners = meta.get("ownerReferences") or []
        owned = any(
            o.get("kind") == "Rollout" and (o.get("uid") == uid or o.get("name") == name)
            for o in owners
        )
        if owned and (meta.get("labels") or {}).get("rollouts-pod-template-hash") == pod_hash:
            pod_spec = ((rs.get("spec") or {}).get("template") or {}).get("spec") or {}
            return _image_tag(_container_image(pod_spec, service))
    return None


def canary_steps(steps: Sequence[Mapping[str, Any]] | None) -> list[tuple[int, float]]:
    if not steps:
        raise UsageError(
            "a canary needs its steps",
            field="steps",
            hint="give steps such as [{weight: 10, pause: 15s}, {weight: 25, pause: 15s},"
            " {weight: 50, pause: 15s}] (deployments.yaml strategies.canary.steps)",
        )
    out: list[tuple[int, float]] = []
    last = 0
    for i, step in enumerate(steps):
        where = f"steps[{i}]"
        if not isinstance(step, Mapping):
            raise ValidationError("a step is {weight, pause}", field=where)
        weight = step.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int) or not last < weight <= 100:
            raise ValidationError(
                f"weight must be a whole percentage above {last} and at most 100, not {weight!r}",
                field=f"{where}.weight",
                hint="weights go up step by step, e.g. 10, 25, 50",
            )
        last = weight
        pause = step.get("pause")
        out.append((weight, 0.0 if pause is None else seconds(pause, f"{where}.pause")))
    return out


def seconds(value: Any, where: str) -> float:
    from opsbook.durations import DURATION_HINT, duration_seconds  # noqa: PLC0415

    try:
        return duration_seconds(value)
    except ValueError:
        raise ValidationError(
            f"{value!r} is not a duration", field=where, hint=DURATION_HINT
        ) from None


def go_duration(seconds: float) -> str:
    """Seconds as a Go duration (what Argo parses): 90 → ``90s``, 3600 → ``1h``, 86400 →
    ``24h``, 0.5 → ``500ms``."""
    if seconds >= 1 and float(seconds).is_integer():
        whole = int(seconds)
        for unit, size in (("h", 3600), ("m", 60)):
            if whole % size == 0:
                return f"{whole // size}{unit}"
        return f"{whole}s"
    return f"{round(seconds * 1000)}ms"


def template_name(name: str) -> str:
    if not _SUBDOMAIN.fullmatch(str(name)):
        raise ValidationError(
            f"{name!r} cannot be the name of an AnalysisTemplate",
            field="analysis",
            hint="use lower-case letters, digits, '-' and '.' (e.g. canary-default)",
        )
    return str(name)


def analysis_seconds(template: Mapping[str, Any] | None) -> float:
    """How long an analysis runs: its longest metric's count x interval."""
    longest = 0.0
    for metric in (template or {}).get("metrics") or []:
        if isinstance(metric, Mapping) and metric.get("interval") is not None:
            count = metric.get("count")
            count = count if isinstance(count, int) and not isinstance(count, bool) else 1
            longest = max(longest, count * seconds(metric["interval"], "interval"))
    return longest


def template_args(template: Mapping[str, Any]) -> set[str]:
    found: set[str] = set()
    for metric in template.get("metrics") or []:
        if isinstance(metric, Mapping):
            found.update(_PLACEHOLDER.findall(str(metric.get("query") or "")))
    return found


def condition(text: str, metric: str, where: str) -> str:
    """opsbook's condition on ``result`` as Argo's (``result[0]``: Prometheus answers a
    vector). ``baseline`` and anything beyond numbers, comparisons, arithmetic and logic are
    refused."""
    field = f"{where}.success_condition"
    if not text.strip():
        raise ValidationError(
            f"metric {metric!r} has no success_condition",
            field=field,
            hint='write one on result, e.g. "result < 0.01"',
        )
    out: list[str] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            if not text[pos:].strip():
                break
            raise ValidationError(
                f"the success_condition of metric {metric!r} cannot be given to Argo:"
                f" {text[pos:].strip()!r}",
                field=field,
                hint="keep to result, numbers, comparisons, + - * / and && || !, e.g."
                ' "result < 0.01"',
            )
        name = match.group("name")
        start = match.start("name") if name else match.end()
        out.append(text[pos:start])
        if name == "baseline":
            raise ValidationError(
                f"metric {metric!r} compares with baseline, which an Argo metric does not have",
                field=field,
                hint="compute the difference in the PromQL query (the canary's value minus the"
                " stable's, using {{ version }} and {{ stable_version }}) and test it:"
                ' "result <= 0.02"',
            )
        if name == "result":
            out.append("result[0]")
        elif name is not None and name not in _WORDS:
            raise ValidationError(
                f"the success_condition of metric {metric!r} reads {name!r}",
                field=field,
                hint="a Kubernetes analysis can test only result (the query's value)",
            )
        elif name is not None:
            out.append(name)
        pos = match.end()
    if "result[0]" not in "".join(out):
        raise ValidationError(
            f"the success_condition of metric {metric!r} does not read result",
            field=field,
            hint='test the query\'s value, e.g. "result < 0.01"',
        )
    return "".join(out).strip()


def analysis_template(
    *, name: str, template: Mapping[str, Any], namespace: str, prometheus: object
) -> dict[str, Any]:
    """An Argo ``AnalysisTemplate`` from one opsbook analysis template (``deployments.yaml``
    format, already parsed)."""
    where = f"analysis.{name}"
    template_name(name)
    metrics = template.get("metrics") if isinstance(template, Mapping) else None
    if not isinstance(metrics, Sequence) or isinstance(metrics, str) or not metrics:
        raise ValidationError(
            f"analysis template {name!r} has no metrics",
            field=f"{where}.metrics",
            hint="give at least one metric with provider: prometheus",
        )
    notes: list[str] = []
    used: set[str] = set()
    out: list[dict[str, Any]] = []
    for i, metric in enumerate(metrics):
        out.append(_metric(metric, f"{where}.metrics[{i}]", used, notes, prometheus))
    on_inconclusive = str(template.get("on_inconclusive") or "continue")
    notes.append(
        f"on_inconclusive: {on_inconclusive} - Argo pauses the Rollout on an inconclusive"
        " run: promote to continue, abort to abort"
    )
    spec: dict[str, Any] = {}
    if used:
        spec["args"] = [{"name": a} for a in ANALYSIS_ARGS if a in used]
    spec["metrics"] = out
    return {
        "apiVersion": API_VERSION,
        "kind": "AnalysisTemplate",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "opsbook"},
            "annotations": {
                "opsbook.io/source": f"deployments.yaml {where}",
                "opsbook.io/notes": "; ".join(notes),
            },
        },
        "spec": spec,
    }


def _metric(
    metric: Any, where: str, used: set[str], notes: list[str], prometheus: object
) -> dict[str, Any]:
    if not isinstance(metric, Mapping):
        raise ValidationError("a metric must be a mapping", field=where)
    mname = str(metric.get("name") or "")
    if not mname:
        raise ValidationError("a metric needs a name", field=f"{where}.name")
    provider = str(metric.get("provider") or "")
    if provider == "sandbox":
        raise ValidationError(
            f"metric {mname!r} uses the sandbox provider, which does not exist on Kubernetes",
            field=f"{where}.provider",
            hint="on Kubernetes use provider: prometheus with a PromQL query (e.g. the"
            " 5xx ratio of {{ service }} at {{ version }}) in an analysis template of its own",
        )
    if provider != "prometheus":
        raise ValidationError(
            f"metric {mname!r} has provider {provider!r}",
            field=f"{where}.provider",
            hint="use provider: prometheus on Kubernetes",
        )
    query = str(metric.get("query") or "").strip()
    if not query:
        raise ValidationError(f"metric {mname!r} has no query", field=f"{where}.query")
    argo_query = _query(query, f"{where}.query", used)
    success = condition(str(metric.get("success_condition") or ""), mname, where)
    out: dict[str, Any] = {"name": mname}
    interval = metric.get("interval")
    if interval is not None:
        out["interval"] = go_duration(seconds(interval, f"{where}.interval"))
    for key, argo in (
        ("count", "count"),
        ("failure_limit", "failureLimit"),
        ("inconclusive_limit", "inconclusiveLimit"),
        ("consecutive_error_limit", "consecutiveErrorLimit"),
    ):
        value = metric.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationError(
                f"{key} of metric {mname!r} must be a whole number, not {value!r}",
                field=f"{where}.{key}",
            )
        out[argo] = value
    if metric.get("min_requests") is not None:
        notes.append(
            f"{mname}: min_requests has no Argo equivalent (not enforced; put a traffic"
            " floor in the query if it matters)"
        )
    out["successCondition"] = success
    out["provider"] = {"prometheus": {"address": _prometheus(prometheus), "query": argo_query}}
    return out


def _prometheus(address: object) -> str:
    if not address:
        raise ValidationError(
            "the environment has no monitoring.prometheus for the analysis' queries",
            field="monitoring.prometheus",
            hint="set monitoring.prometheus to the in-cluster Prometheus, e.g."
            " http://prometheus-server.monitoring.svc:9090, in the environment file",
        )
    text = str(address)
    if not re.fullmatch(r"https?://[^\s]+", text):
        raise ValidationError(
            f"monitoring.prometheus must be an http(s) URL, not {text!r}",
            field="monitoring.prometheus",
        )
    return text


def _query(query: str, where: str, used: set[str]) -> str:
    def swap(match: re.Match[str]) -> str:
        arg = match.group(1)
        if arg not in ANALYSIS_ARGS:
            raise ValidationError(
                f"the query uses {{{{ {arg} }}}}, which the cluster cannot fill in",
                field=where,
                hint=f"placeholders: {', '.join(ANALYSIS_ARGS)}",
            )
        used.add(arg)
        return f"{{{{args.{arg}}}}}"

    return _PLACEHOLDER.sub(swap, query)
