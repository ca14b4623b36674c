"""``opsbook doctor --env ENV``'s tools and access checks (issue 15, the seed's "Tools and
access"): each required tool found and at least its minimum version, cluster access
(``kubectl auth can-i``), and the environment's monitoring reachable — each failure with the fix.

Tools are run as argv lists with a timeout (never a shell). Where a check cannot run (no
kubectl, no cluster named) it says "not checked: …" as a warning instead of passing. The
environment's ``required_tools`` lists the tools, optionally with a minimum version
(``kubectl>=1.29``); the minimums below apply otherwise. On a machine without a cluster or
Azure, tests put small executables answering like the real tools (recorded answers) first on
PATH.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from opsbook.workspace import Environment

TIMEOUT = 10.0
Result = tuple[str, Literal["ok", "warning", "failed"], str, str]


@dataclass(frozen=True)
class Tool:
    name: str
    argv: tuple[str, ...]  # prints the version
    pattern: str  # the version's first group
    minimum: str
    install: str


TOOLS = {
    t.name: t
    for t in (
        Tool(
            "kubectl",
            ("kubectl", "version", "--client"),
            r"v?(\d+\.\d+(?:\.\d+)?)",
            "1.27",
            "az aks install-cli (or https://kubernetes.io/docs/tasks/tools/)",
        ),
        Tool(
            "helm",
            ("helm", "version", "--short"),
            r"v?(\d+\.\d+(?:\.\d+)?)",
            "3.12",
            "curl -fsSL https://raw.githubusercontent.com/helm/helm/main/scripts/get-helm-3 | bash",
        ),
        Tool(
            "az",
            ("az", "version", "--output", "tsv"),
            r"(\d+\.\d+(?:\.\d+)?)",
            "2.50",
            "curl -sL https://aka.ms/InstallAzureCLIDeb | sudo bash",
        ),
        Tool("git", ("git", "--version"), r"(\d+\.\d+(?:\.\d+)?)", "2.30", "apt-get install git"),
        Tool(
            "curl",
            ("curl", "--version"),
            r"curl (\d+\.\d+(?:\.\d+)?)",
            "7.68",
            "apt-get install curl",
        ),
    )
}


def _parse(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def tool_spec(entry: Any) -> tuple[str, str | None]:
    """``kubectl`` or ``kubectl>=1.29``: the name and the minimum asked for."""
    text = str(entry).strip()
    if ">=" in text:
        name, _, minimum = text.partition(">=")
        return name.strip(), minimum.strip()
    return text, None


def _run(argv: list[str]) -> tuple[int, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return -1, f"no answer within {TIMEOUT:g}s"
    except OSError as exc:
        return -1, str(exc)
    return proc.returncode, (proc.stdout + "\n" + proc.stderr).strip()


def tool_check(entry: Any) -> Result:
    name, asked = tool_spec(entry)
    tool = TOOLS.get(name)
    path = shutil.which(name)
    if path is None:
        hint = f"install it: {tool.install}" if tool else f"install {name} and put it on PATH"
        return (f"tool {name}", "failed", "not found on PATH", hint)
    if tool is None:
        return (f"tool {name}", "ok", f"{path} (no version check known for it)", "")
    code, out = _run([path, *tool.argv[1:]])
    found = re.search(tool.pattern, out)
    if code != 0 or not found:
        return (
            f"tool {name}",
            "failed",
            f"`{' '.join(tool.argv)}` did not give a version: {out[:120] or f'exit {code}'}",
            f"reinstall it: {tool.install}",
        )
    version = found.group(1)
    minimum = asked or tool.minimum
    if _parse(version) < _parse(minimum):
        return (
            f"tool {name}",
            "failed",
            f"{version} is older than {minimum}",
            f"upgrade it: {tool.install}",
        )
    return (f"tool {name}", "ok", f"{version} (>= {minimum}) at {path}", "")


def cluster_check(env: Environment) -> Result:
    """Can this identity read the environment's deployments (``kubectl auth can-i``)?"""
    namespace = env.data.get("namespace")
    if env.platform != "kubernetes":
        return ("cluster access", "ok", f"not a cluster: platform {env.platform}", "")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return (
            "cluster access",
            "warning",
            "not checked: kubectl is not installed",
            "install kubectl (see the tool check), then run doctor again",
        )
    argv = [kubectl, "auth", "can-i", "get", "deployments"]
    if namespace:
        argv += ["-n", str(namespace)]
    if env.data.get("context"):
        argv += ["--context", str(env.data["context"])]
    code, out = _run(argv)
    answer = out.strip().splitlines()[0].strip().lower() if out.strip() else ""
    cluster = env.data.get("cluster") or "the cluster"
    rg = env.data.get("resource_group")
    login = (
        f"az login; az aks get-credentials --resource-group {rg} --name {cluster}"
        if rg
        else "get credentials for the cluster (kubectl config use-context …)"
    )
    if code == 0 and answer == "yes":
        return (
            "cluster access",
            "ok",
            f"can get deployments in {namespace or 'the namespace'}",
            "",
        )
    if answer == "no":
        return (
            "cluster access",
            "failed",
            f"this identity cannot get deployments in {namespace}",
            "ask for the RBAC role binding (Tools and access: Kubernetes cluster access)",
        )
    last = next((ln.strip() for ln in reversed(out.splitlines()) if ln.strip()), f"exit {code}")
    return ("cluster access", "failed", f"{cluster} did not answer: {last[:200]}", login)


def _reachable(name: str, url: str) -> Result:
    import httpx  # noqa: PLC0415

    try:
        r = httpx.get(url, timeout=5.0, follow_redirects=False, trust_env=False)
    except httpx.HTTPError as exc:
        return (
            f"monitoring {name}",
            "failed",
            f"{url}: {type(exc).__name__}: {exc}"[:200],
            "is it up, and reachable from here (VPN, proxy)?",
        )
    if r.status_code >= 500:
        return (f"monitoring {name}", "failed", f"{url}: HTTP {r.status_code}", "is it up?")
    # 2xx/3xx/401/403: the service answers (signing in is the person's part)
    return (f"monitoring {name}", "ok", f"{url}: HTTP {r.status_code}", "")


def monitoring_checks(env: Environment) -> list[Result]:
    raw = env.data.get("monitoring") or {}
    urls = {
        str(k): str(v)
        for k, v in (raw.items() if isinstance(raw, dict) else [])
        if isinstance(v, str) and urlsplit(v).scheme in ("http", "https")
    }
    if not urls:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(urls))) as pool:
        return list(pool.map(lambda kv: _reachable(*kv), urls.items()))


def tools_and_access(env: Environment) -> list[Result]:
    """Every tools and access check for ``env`` (tools in parallel)."""
    tools = list(env.data.get("required_tools", []) or [])
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(tools)))) as pool:
        results = list(pool.map(tool_check, tools))
    if env.platform == "kubernetes":
        results.append(cluster_check(env))
    results.extend(monitoring_checks(env))
    return results
