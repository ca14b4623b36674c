"""An SBOM of what runs, in CycloneDX 1.5 JSON (built with the maintained cyclonedx-python-lib):
the sandbox's services as applications with the versions they run, and the Python
distributions they run on as libraries with their package URLs (PCI DSS 6.3.2)."""

from __future__ import annotations

import json
from typing import Any

from opsbook.secops.vulns import what_runs


def build_sbom(*, services: list[dict[str, Any]], version: str) -> dict[str, Any]:
    """The SBOM as a CycloneDX 1.5 JSON document. ``services`` are the sandbox's status entries
    (name, version, revision, replicas); each becomes an application that depends on the
    ``opsbook`` distribution it runs as, and every distribution of the interpreter is a
    library with its package URL."""
    from cyclonedx.model import Property  # noqa: PLC0415 - heavy, on use
    from cyclonedx.model.bom import Bom  # noqa: PLC0415
    from cyclonedx.model.component import Component, ComponentType  # noqa: PLC0415
    from cyclonedx.output.json import JsonV1Dot5  # noqa: PLC0415
    from packageurl import PackageURL  # noqa: PLC0415

    bom = Bom()
    root = Component(
        name="banking-platform (opsbook sandbox)",
        version=version,
        type=ComponentType.APPLICATION,
        bom_ref="banking-platform",
    )
    bom.metadata.component = root
    libraries: dict[str, Component] = {}
    for name, ver in what_runs():
        libraries[name] = Component(
            name=name,
            version=ver,
            type=ComponentType.LIBRARY,
            bom_ref=f"pkg:pypi/{name}@{ver}",
            purl=PackageURL(type="pypi", name=name, version=ver),
        )
    apps: list[Component] = []
    for s in services:
        app = Component(
            name=str(s["name"]),
            version=str(s.get("version") or "unknown"),
            type=ComponentType.APPLICATION,
            bom_ref=f"service:{s['name']}",
            description=f"revision {s.get('revision')}, {s.get('replicas')} replica(s)",
            properties=[
                Property(name=f"opsbook:{key}", value=str(s[key]))
                for key in ("revision", "replicas", "port")
                if s.get(key) is not None
            ],
        )
        apps.append(app)
        bom.components.add(app)
    for lib in libraries.values():
        bom.components.add(lib)
    bom.register_dependency(root, [*apps, *libraries.values()])
    runtime = libraries.get("opsbook")  # every service is an opsbook process
    if runtime is not None:
        for app in apps:
            bom.register_dependency(app, [runtime])
    doc: dict[str, Any] = json.loads(JsonV1Dot5(bom).output_as_string())
    return doc
