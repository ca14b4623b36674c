"""Deployment strategies on Kubernetes: the commands a platform team runs (Helm, kubectl and the
Argo Rollouts kubectl plugin), built over :class:`~opsbook.platforms.kubernetes.KubernetesPlatform`
(its namespace, kube context, ``run`` and ``dry_run``). With ``dry_run`` every operation returns
the exact commands (``would_run``) and the manifests it would send, and runs nothing.

What each strategy is on the cluster:

- **rolling**: the chart's own rolling update of the service's Deployment:
  ``helm upgrade RELEASE CHART --reuse-values --set SERVICE.image.tag=V --wait`` then
  ``kubectl rollout status deployment/SERVICE``. The cluster runs no analysis for it.
- **canary**: an Argo ``Rollout`` named after the service (the chart's, or one with a
  ``workloadRef`` to the service's Deployment). opsbook merge-patches the Rollout's
  ``spec.strategy.canary.steps`` from the steps (``setWeight`` → ``analysis`` → ``pause``
  per step), then ``kubectl argo rollouts set image SERVICE SERVICE=IMAGE:V`` starts the
  canary. The Argo controller then moves the weights, runs the analysis at each step, aborts on
  a failed analysis (all traffic back on the stable version) and promotes after the last step,
  keeping the old ReplicaSet ``scaleDownDelaySeconds`` (``keep_old_for``).
- **blue-green**: Argo's ``blueGreen`` strategy on the same Rollout, not the adapter's
  green-slot Deployments (:meth:`KubernetesPlatform.deploy`): Argo switches the active Service,
  runs the analysis as ``postPromotionAnalysis`` with all the traffic and, when it fails,
  switches back to the old ReplicaSet, which ``scaleDownDelaySeconds`` keeps running. The slot
  approach has no controller to do that switch-back without a person, and with Argo ``promote``,
  ``abort``, ``status`` and ``undo`` are the same commands for both progressive strategies.

Before patching, ``start`` reads the Rollout: it refuses when the Rollout's strategy is not the
one asked for (the chart fixes it; a Rollout has exactly one), or when a rollout is already in
progress (``set image`` would restart it with another version).

**Setting a weight.** The plugin has no ``set weight`` command (its ``set`` has only ``image``).
The weights are the Rollout's ``setWeight`` steps and the controller moves through them; what a
platform team does by hand is ``kubectl argo rollouts promote`` (skip the current pause or
analysis, go to the next step) or ``promote --full`` (straight to 100 %). :meth:`set_weight`
does exactly that: it reads the Rollout, promotes when the weight asked for is the next
``setWeight`` step (``--full`` for 100), does nothing when it is the current one, and refuses
any other weight, naming the weights the Rollout has. Patching the steps mid-rollout to invent
a weight would change the release's plan behind the change record's back.

**Analysis.** :meth:`render_analysis_template` turns one opsbook analysis template (the plain
mapping of ``deployments.yaml``) into an Argo ``AnalysisTemplate``: a ``prometheus`` metric keeps
its query (``{{ service }}`` becomes ``{{args.service}}``) against the environment's
``monitoring.prometheus``, and ``result`` in the condition becomes ``result[0]`` (Prometheus
answers a vector). A ``sandbox`` metric, or a condition on ``baseline`` (the stable version's
value, which an Argo metric does not have), is refused with the fix.

Status comes from ``kubectl get rollout NAME -o json`` (``kubectl argo rollouts get rollout`` has
no ``-o json``: it prints a tree) and the Rollout's ReplicaSets (the stable version is the image
of the ReplicaSet whose ``rollouts-pod-template-hash`` is ``status.stableRS``).

Every parameter is validated (service names from the environment, DNS labels; versions like
``1.5.0`` or ``1.5.0-rc.1``) and every command is an argv list: nothing goes through a shell.
Auditing is the caller's (the ``deploy.*`` actions), as for the adapter.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opsbook.errors import ConflictError, OpsbookError, StepError, UsageError, ValidationError
from opsbook.platforms import _argo

if TYPE_CHECKING:
    from opsbook.platforms.kubernetes import KubernetesPlatform

STRATEGIES = ("rolling", "blue-green", "canary")
COMMAND_TIMEOUT = 600.0

_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # DNS-1123 label
_IMAGE = re.compile(r"[a-z0-9][a-z0-9._-]*(:[0-9]+)?(/[a-z0-9][a-z0-9._-]*)*")


class KubernetesRollouts:
    """Release strategies over a :class:`KubernetesPlatform` (composition: its namespace,
    context, ``run`` and ``dry_run``)."""

    def __init__(self, platform: KubernetesPlatform) -> None:
        self.platform = platform

    @property
    def dry_run(self) -> bool:
        return bool(self.platform.dry_run)

    @property
    def namespace(self) -> str:
        return self.platform.namespace

    # -- validation ----------------------------------------------------------------------------

    def service(self, service: str) -> str:
        """``service`` if the environment knows it and it is a Kubernetes name."""
        from opsbook.platforms.base import service_names  # noqa: PLC0415

        svc = str(service)
        known = service_names(self.platform.environment)
        if known and svc not in known:
            raise UsageError(
                f"unknown service {svc!r}",
                field="service",
                hint=f"use one of: {', '.join(known)}",
            )
        if not _LABEL.fullmatch(svc):
            raise UsageError(
                f"{svc!r} is not a service name",
                field="service",
                hint="a service is a Kubernetes name: lower-case letters, digits and '-'",
            )
        return svc

    @staticmethod
    def version(version: str) -> str:
        """``version`` if it is a semantic version that can be an image tag."""
        text = str(version)
        if not _VERSION.fullmatch(text):
            raise ValidationError(
                f"version must be a semantic version such as 1.5.0 or 1.5.0-rc.1, not {text!r}",
                field="version",
                hint="give the release's version exactly as its image is tagged (no '+build':"
                " image tags cannot contain '+')",
            )
        return text

    def image(self, service: str) -> str:
        """The image repository of ``service``: its ``image`` in the environment, else
        ``REGISTRY/SERVICE``."""
        entry = next(
            (
                s
                for s in self.platform.environment.get("services") or []
                if isinstance(s, Mapping) and s.get("name") == service
            ),
            {},
        )
        repo = entry.get("image") or (
            f"{self.platform.environment['registry']}/{service}"
            if self.platform.environment.get("registry")
            else None
        )
        if not repo:
            raise ValidationError(
                f"no image repository for service {service!r}",
                field="registry",
                hint="add registry: bankingplatformacr.azurecr.io to the environment file (or"
                f" image: REGISTRY/{service} on the service)",
            )
        if not _IMAGE.fullmatch(str(repo)):
            raise ValidationError(
                f"{repo!r} is not an image repository",
                field="registry",
                hint="write it like bankingplatformacr.azurecr.io/payment (no tag, lower case)",
            )
        return str(repo)

    # -- running -------------------------------------------------------------------------------

    def _rollout_name(self, service: str) -> str:
        return service

    async def _run(self, argv: list[str], stdin: str | None) -> str:
        return await self.platform.run(argv, stdin=stdin)

    async def _do(
        self,
        commands: Sequence[tuple[list[str], str | None]],
        *,
        before: Sequence[tuple[list[str], str]] = (),
        manifests: Mapping[str, Any] | None = None,
        **result: Any,
    ) -> dict[str, Any]:
        """Run ``commands`` (argv, stdin) in order, or describe them in a dry run. ``before``
        are reads already made (argv, a summary of what they said)."""
        shown = {"manifests": _yaml(manifests)} if manifests else {}
        if self.dry_run:
            return {
                "would_run": [shlex.join(c) for c, _ in [*before, *commands]],
                "platform": self.platform.name,
                **result,
                **shown,
            }
        outputs = [said for _, said in before]
        for argv, stdin in commands:
            outputs.append((await self._run(argv, stdin)).strip())
        return {
            **result,
            "ran": [shlex.join(c) for c, _ in [*before, *commands]],
            "output": outputs,
            "platform": self.platform.name,
            **shown,
        }

    async def _read_rollout(self, svc: str) -> dict[str, Any]:
        return _json(await self.platform.run(self._get_rollout(svc)), f"rollout {svc}")

    def _get_rollout(self, svc: str) -> list[str]:
        return self.platform.kubectl("get", "rollout", self._rollout_name(svc), "-o", "json")

    def _get_replicasets(self, svc: str) -> list[str]:
        return self.platform.kubectl("get", "replicasets", "-l", f"app={svc}", "-o", "json")

    def _argo(self, *args: str) -> list[str]:
        return self.platform.kubectl("argo", "rollouts", *args)

    # -- operations ----------------------------------------------------------------------------

    async def start(
        self,
        *,
        service: str,
        version: str,
        strategy: str,
        steps: Sequence[Mapping[str, Any]] | None = None,
        analysis_name: str | None = None,
        analysis_template: Mapping[str, Any] | None = None,
        keep_old_for: float = 60.0,
    ) -> dict[str, Any]:
        """Start the release of ``version`` of ``service`` with ``strategy``; the cluster
        carries it on (Argo for canary and blue-green). With ``analysis_template`` (opsbook's
        format) the AnalysisTemplate ``analysis_name`` is applied first."""
        svc, ver = self.service(service), self.version(version)
        if strategy not in STRATEGIES:
            raise UsageError(
                f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}",
                field="strategy",
            )
        if strategy != "canary" and steps:
            raise UsageError(
                f"steps are for the canary strategy, not {strategy}",
                field="steps",
                hint="leave steps out, or deploy with strategy canary",
            )
        if analysis_template is not None and not analysis_name:
            raise UsageError("an analysis template needs its name", field="analysis_name")
        base: dict[str, Any] = {"service": svc, "version": ver, "strategy": strategy}
        if strategy == "rolling":
            chart = self.platform
            upgrade = [
                chart.helm(
                    "upgrade",
                    chart.release,
                    chart.chart,
                    "--reuse-values",
                    "--set",
                    f"{svc}.image.tag={ver}",
                    "--wait",
                    "--timeout",
                    "10m",
                ),
                chart.kubectl("rollout", "status", f"deployment/{svc}", "--timeout=300s"),
            ]
            note = "rolling is the chart's rolling update: the cluster runs no analysis for it"
            return await self._do([(c, None) for c in upgrade], **base, note=note)

        # everything that can be refused is, before any command runs
        image = f"{self.image(svc)}:{ver}"
        if strategy == "canary":
            _argo.canary_steps(steps)
        if analysis_name:
            _argo.template_name(analysis_name)
        tmpl = (
            self.render_analysis_template(name=analysis_name, template=analysis_template)
            if analysis_template is not None and analysis_name
            else None
        )
        uses = _argo.template_args(analysis_template) if analysis_template is not None else set()
        traffic_routing, stable_version = True, None
        before: list[tuple[list[str], str]] = []
        if self.dry_run:
            before = [(self._get_rollout(svc), ""), (self._get_replicasets(svc), "")]
            if "stable_version" in uses:
                stable_version = "<the stable version, read at start>"
        else:
            ro = await self._read_rollout(svc)
            rs = _json(await self.platform.run(self._get_replicasets(svc)), "replicasets")
            traffic_routing = self._check_startable(svc, strategy, ro)
            stable_version = _argo.rs_version(ro, rs.get("items") or [], svc, _argo.stable_hash(ro))
            before = [
                (self._get_rollout(svc), f"rollout {svc}: {_argo.strategy_of(ro)}, ready to start"),
                (self._get_replicasets(svc), f"stable version: {stable_version or 'unknown'}"),
            ]
            if "stable_version" in uses and not stable_version:
                raise OpsbookError(
                    f"the analysis compares with the stable version of {svc}, which the"
                    " cluster does not show",
                    hint="check `kubectl get replicasets -l app="
                    f"{svc}`; or drop {{{{ stable_version }}}} from the query",
                )
        rollout = self.render_rollout(
            service=svc,
            version=ver,
            strategy=strategy,
            steps=steps,
            analysis_name=analysis_name,
            keep_old_for=keep_old_for,
            traffic_routing=traffic_routing,
            stable_version=stable_version if "stable_version" in uses else None,
            analysis_seconds=_argo.analysis_seconds(analysis_template),
        )
        kept = int(
            (rollout["spec"]["strategy"].get("blueGreen") or {}).get("scaleDownDelaySeconds") or 0
        )
        if kept > round(_argo.seconds(keep_old_for, "keep_old_for")):
            base["note"] = (
                f"the old version is kept {kept}s, not {keep_old_for}s: as long as the analysis"
                " runs (Argo cancels it when it scales the old version down)"
            )
        commands: list[tuple[list[str], str | None]] = []
        manifests: dict[str, Any] = {}
        if tmpl is not None:
            commands.append(
                (self.platform.kubectl("apply", "-f", "-"), json.dumps(tmpl, sort_keys=True))
            )
            manifests[f"AnalysisTemplate/{analysis_name}"] = tmpl
        patch = {"spec": rollout["spec"]}
        manifests[f"Rollout/{svc} (merge patch)"] = rollout
        name = self._rollout_name(svc)
        commands.append(
            (
                self.platform.kubectl(
                    "patch", "rollout", name, "--type", "merge", "--patch", json.dumps(patch)
                ),
                None,
            )
        )
        commands.append((self._argo("set", "image", name, f"{svc}={image}"), None))
        return await self._do(
            commands,
            before=before,
            manifests=manifests,
            **base,
            rollout=name,
            analysis=analysis_name,
            keep_old_for=keep_old_for,
        )

    def _check_startable(self, svc: str, strategy: str, ro: Mapping[str, Any]) -> bool:
        """Refuse a Rollout of another strategy or one in progress; whether it routes traffic
        (only then may a canary keep its old version with ``scaleDownDelaySeconds``)."""
        spec_strategy = (ro.get("spec") or {}).get("strategy") or {}
        want = "canary" if strategy == "canary" else "blueGreen"
        have = _argo.strategy_of(ro)
        if want not in spec_strategy:
            raise UsageError(
                f"the Rollout {svc} uses the {have} strategy, not {want}",
                field="strategy",
                hint=f"deploy {svc} with strategy {'canary' if have == 'canary' else 'blue-green'},"
                " or change the Rollout's strategy in the chart",
            )
        st = ro.get("status") or {}
        stable, current = _argo.stable_hash(ro), st.get("currentPodHash")
        if stable and current and stable != current and not st.get("abort"):
            raise ConflictError(
                f"a rollout of {svc} is in progress ({st.get('phase') or 'Progressing'},"
                f" step {st.get('currentStepIndex', '-')})",
                hint=f"finish it first: kubectl argo rollouts promote {svc} (or abort {svc})",
            )
        return bool((spec_strategy.get("canary") or {}).get("trafficRouting"))

    async def set_weight(self, *, service: str, weight: int) -> dict[str, Any]:
        """Move the canary to ``weight`` %: ``promote`` to the Rollout's next ``setWeight``
        step, ``promote --full`` for 100 (see the module's docstring)."""
        svc = self.service(service)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 < weight <= 100:
            raise UsageError(
                f"weight must be a whole percentage from 1 to 100, not {weight!r}",
                field="weight",
                hint="to send all traffic back to the stable version, abort the rollout",
            )
        name = self._rollout_name(svc)
        full = weight == 100
        promote = self._argo("promote", name, *(["--full"] if full else []))
        if self.dry_run:
            return await self._do(
                [(promote, None)],
                before=[] if full else [(self._get_rollout(svc), "")],
                service=svc,
                weight=weight,
                note="promote moves the Rollout to its next setWeight step; opsbook first"
                " checks that this step's weight is the one asked for",
            )
        if full:
            return await self._do([(promote, None)], service=svc, weight=weight)
        ro = await self._read_rollout(svc)
        view = _argo.rollout_status(ro, [], service=svc)
        read = (self._get_rollout(svc), f"weight {view['weight']}%, step {view['step']}")
        if view["weight"] == weight and not view["aborted"]:
            return {
                "ran": [shlex.join(read[0])],
                "output": [read[1]],
                "platform": self.platform.name,
                "service": svc,
                "weight": weight,
                "note": f"{svc} already has {weight}% of the traffic",
            }
        following = _argo.following_step(ro)
        if view["aborted"] or following.get("setWeight") != weight:
            listed = ", ".join(f"{w}%" for w in _argo.step_weights(ro)) or "none"
            now = "is aborted" if view["aborted"] else f"is at step {view['step']}"
            then = (
                f"its next step sets {following['setWeight']}%"
                if "setWeight" in following
                else f"its next step is {_argo.describe_step(following)}"
            )
            raise UsageError(
                f"the Rollout {svc} {now}; {then}, not {weight}%",
                field="weight",
                hint=f"its steps set {listed}: ask for the next one when the Rollout pauses"
                " after a step's analysis, promote --full for 100, or start a release whose"
                " steps include this weight",
            )
        return await self._do([(promote, None)], before=[read], service=svc, weight=weight)

    async def promote(self, *, service: str, full: bool = False) -> dict[str, Any]:
        """``kubectl argo rollouts promote [--full]``: the next step, or straight to 100 %."""
        svc = self.service(service)
        name = self._rollout_name(svc)
        argv = self._argo("promote", name, *(["--full"] if full else []))
        return await self._do([(argv, None)], service=svc, full=bool(full))

    async def abort(self, *, service: str, reason: str | None = None) -> dict[str, Any]:
        """``kubectl argo rollouts abort``: all traffic back on the stable version."""
        svc = self.service(service)
        argv = self._argo("abort", self._rollout_name(svc))
        extra: dict[str, Any] = {"reason": reason} if reason else {}
        return await self._do([(argv, None)], service=svc, aborted=True, **extra)

    async def undo(self, *, service: str, revision: int | None = None) -> dict[str, Any]:
        """``kubectl argo rollouts undo [--to-revision=N]`` (the previous revision by default):
        the Rollout rolls out that revision's template with its strategy."""
        svc = self.service(service)
        if revision is not None and (
            isinstance(revision, bool) or not isinstance(revision, int) or revision < 1
        ):
            raise UsageError(
                f"revision must be a positive whole number, not {revision!r}",
                field="revision",
                hint="leave it out for the previous revision",
            )
        args = ["undo", self._rollout_name(svc)]
        if revision:
            args.append(f"--to-revision={revision}")
        return await self._do([(self._argo(*args), None)], service=svc, revision=revision)

    async def status(self, *, service: str) -> dict[str, Any]:
        """``{phase, stable_version, canary_version, weight, step, steps, message, ...}`` from
        ``kubectl get rollout NAME -o json`` and the Rollout's ReplicaSets."""
        svc = self.service(service)
        commands = [self._get_rollout(svc), self._get_replicasets(svc)]
        if self.dry_run:
            return await self._do([(c, None) for c in commands], service=svc)
        ro = await self._read_rollout(svc)
        rs = _json(await self.platform.run(commands[1]), "replicasets")
        return {
            **_argo.rollout_status(ro, rs.get("items") or [], service=svc),
            "platform": self.platform.name,
        }

    # -- manifests -----------------------------------------------------------------------------

    def render_rollout(
        self,
        *,
        service: str,
        version: str,
        strategy: str,
        steps: Sequence[Mapping[str, Any]] | None,
        analysis_name: str | None,
        keep_old_for: float = 60.0,
        traffic_routing: bool = True,
        stable_version: str | None = None,
        analysis_seconds: float = 0.0,
    ) -> dict[str, Any]:
        """The Rollout's strategy section (``spec.strategy``), as the merge patch ``start``
        sends. Canary steps are ``setWeight``, then the analysis, then the pause. A blue-green
        keeps the old version at least ``analysis_seconds`` (how long the analysis runs): Argo
        cancels a post-promotion analysis when ``scaleDownDelaySeconds`` runs out."""
        svc, ver = self.service(service), self.version(version)
        if strategy == "rolling":
            raise UsageError(
                "rolling is the chart's rolling update, not an Argo Rollout strategy",
                field="strategy",
                hint="use canary or blue-green for an Argo Rollout",
            )
        if strategy not in STRATEGIES:
            raise UsageError(
                f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}",
                field="strategy",
            )
        keep = _argo.seconds(keep_old_for, "keep_old_for")
        ref: dict[str, Any] | None = None
        if analysis_name:
            _argo.template_name(analysis_name)
            args = [
                {"name": "service", "value": svc},
                {"name": "version", "value": ver},
                {"name": "namespace", "value": self.namespace},
            ]
            if stable_version:
                args.append({"name": "stable_version", "value": stable_version})
            ref = {"templates": [{"templateName": analysis_name}], "args": args}
        body: dict[str, Any]
        if strategy == "canary":
            rendered: list[dict[str, Any]] = []
            for weight, pause in _argo.canary_steps(steps):
                rendered.append({"setWeight": weight})
                if ref is not None:
                    rendered.append({"analysis": ref})
                if pause > 0:
                    rendered.append({"pause": {"duration": _argo.go_duration(pause)}})
            body = {"canary": {"steps": rendered}}
            if traffic_routing:  # Argo refuses it without traffic routing
                body["canary"]["scaleDownDelaySeconds"] = round(keep)
        else:
            if ref is not None:
                keep = max(keep, analysis_seconds)
            body = {
                "blueGreen": {"autoPromotionEnabled": True, "scaleDownDelaySeconds": round(keep)}
            }
            if ref is not None:
                body["blueGreen"]["postPromotionAnalysis"] = ref
        return {
            "apiVersion": _argo.API_VERSION,
            "kind": "Rollout",
            "metadata": {"name": self._rollout_name(svc), "namespace": self.namespace},
            "spec": {"strategy": body},
        }

    def render_analysis_template(self, *, name: str, template: Mapping[str, Any]) -> dict[str, Any]:
        """An Argo ``AnalysisTemplate`` from one opsbook analysis template (``deployments.yaml``
        format, already parsed; ``AnalysisTemplate.to_dict()``)."""
        monitoring = self.platform.environment.get("monitoring") or {}
        return _argo.analysis_template(
            name=name,
            template=template,
            namespace=self.namespace,
            prometheus=monitoring.get("prometheus") if isinstance(monitoring, Mapping) else None,
        )


# -- helpers ------------------------------------------------------------------------------------


def _json(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise StepError(
            f"`kubectl get {what} -o json` did not answer a JSON object",
            hint="check the kubectl version and that the Argo Rollouts CRDs are installed",
        )
    return data


def _yaml(manifests: Mapping[str, Any] | None) -> dict[str, str]:
    import yaml  # noqa: PLC0415 - deferred: import cost

    return {
        key: yaml.safe_dump(value, sort_keys=False, default_flow_style=False)
        for key, value in (manifests or {}).items()
    }
