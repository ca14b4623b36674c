"""An SBOM of what runs, in CycloneDX 1.5 JSON (built with the maintained cyclonedx-python-lib):
the sandbox's services as applications with the versions they run, and the Python
distributions they run on as libraries with their package URLs (PCI DSS 6.3.2)."""

from __future__ import annotations

import json
from typing import Any

from opsbook.secops.vulns import what_runs


def build_sbom(*, services: list[dict[str, Any]], version: str) -> dict[str, Any]:
    from cyclonedx.model.bom import Bom  # noqa: PLC0415 - heavy, on use
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
    for s in services:
        bom.components.add(
            Component(
                name=str(s["name"]),
                version=str(s.get("version") or "unknown"),
                type=ComponentType.APPLICATION,
                bom_ref=f"service:{s['name']}",
                description=f"revision {s.get('revision')}, {s.get('replicas')} replica(s)",
            )
        )
    for name, ver in what_runs():
        bom.components.add(
            Component(
                name=name,
                version=ver,
                type=ComponentType.LIBRARY,
                bom_ref=f"pkg:pypi/{name}@{ver}",
                purl=PackageURL(type="pypi", name=name, version=ver),
            )
        )
    bom.register_dependency(root, list(bom.components))
    doc: dict[str, Any] = json.loads(JsonV1Dot5(bom).output_as_string())
    return doc
