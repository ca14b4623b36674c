"""The OpenAPI document (issues 16 and 18): clients are generated from it, so every operation
has an explicit, stable operationId in one convention; timestamps are ``date-time`` and the
states, statuses and severities are ``enum``s of exactly the values the domain accepts; a
Markdown answer is declared as ``text/markdown``; a 405 names the path's methods."""

from __future__ import annotations

import re
from typing import Any

import pytest

from opsbook.engine.states import State
from opsbook.incidents import model as incidents
from opsbook.runbooks.model import RISKS
from opsbook.users.roles import SCOPES
from tests.api.harness import Served


@pytest.fixture(scope="module")
def spec(served: Served) -> dict[str, Any]:
    document: dict[str, Any] = served.api().get("/api/v1/openapi.json").json()
    return document


def _operations(spec: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        op["operationId"]: (method.upper(), path)
        for path, item in spec["paths"].items()
        for method, op in item.items()
    }


def test_every_operation_has_a_lower_camel_case_verb_noun_id(spec: dict[str, Any]) -> None:
    ids = [op.get("operationId", "") for item in spec["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)) >= 50
    verbs = (
        "list|get|create|start|stream|attest|decide|abort|resume|receive|acknowledge|expire"
        "|lint|verify|export|disable|enable|grant|revoke|declare|update|assign|resolve|close"
    )
    bad = [i for i in ids if not re.fullmatch(rf"(?:{verbs})(?:[A-Z][a-z]+)+", i)]
    assert not bad


def test_operation_ids_are_stable(spec: dict[str, Any]) -> None:
    # Renaming one breaks every generated client: add operations, never rename them.
    ops = _operations(spec)
    assert ops["listExecutions"] == ("GET", "/api/v1/executions")
    assert ops["startExecution"] == ("POST", "/api/v1/executions")
    assert ops["getExecution"] == ("GET", "/api/v1/executions/{execution_id}")
    assert ops["decideExecutionApproval"] == ("POST", "/api/v1/executions/{execution_id}/approval")
    assert ops["receiveAlertmanagerWebhook"] == ("POST", "/api/v1/alerts/alertmanager")
    assert ops["listAuditEvents"] == ("GET", "/api/v1/audit")
    assert ops["declareIncident"] == ("POST", "/api/v1/incidents")
    assert ops["getIncidentReviewDraft"] == ("GET", "/api/v1/incidents/{ref}/review")
    assert ops["createToken"] == ("POST", "/api/v1/tokens")


def _schema(spec: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = spec["components"]["schemas"][name]
    return found


def _enum(spec: dict[str, Any], node: dict[str, Any]) -> list[str]:
    """The enum of a property (through $ref and ``X | None``)."""
    if "$ref" in node:
        return _enum(spec, _schema(spec, node["$ref"].rsplit("/", 1)[1]))
    for alt in node.get("anyOf", ()):
        if alt.get("type") != "null":
            return _enum(spec, alt)
    values: list[str] = node["enum"]
    return values


def test_states_statuses_and_severities_are_enums(spec: dict[str, Any]) -> None:
    def prop(model: str, field: str) -> dict[str, Any]:
        found: dict[str, Any] = _schema(spec, model)["properties"][field]
        return found

    assert _enum(spec, prop("Execution", "state")) == [s.value for s in State]
    assert _enum(spec, prop("StepView", "state")) == [s.value for s in State]
    assert tuple(_enum(spec, prop("ProcedureSummary", "risk"))) == RISKS
    assert _enum(spec, prop("AlertOut", "status")) == ["firing", "resolved"]
    assert tuple(_enum(spec, prop("Update", "status"))) == incidents.STATUSES
    assert tuple(_enum(spec, prop("Update", "severity"))) == incidents.SEVERITIES
    assert tuple(_enum(spec, prop("Declare", "severity"))) == incidents.SEVERITIES
    assert tuple(_enum(spec, prop("Declare", "type"))) == incidents.TYPES
    assert tuple(_enum(spec, prop("Declare", "impact"))) == incidents.IMPACTS
    assert tuple(_enum(spec, prop("Declare", "urgency"))) == incidents.URGENCIES
    assert tuple(_enum(spec, prop("Assign", "role"))) == incidents.ROLES
    assert tuple(_enum(spec, prop("IncidentOut", "status"))) == incidents.STATUSES
    assert tuple(_enum(spec, prop("IncidentOut", "severity"))) == incidents.SEVERITIES
    scopes = _schema(spec, "TokenCreate")["properties"]["scopes"]["items"]
    assert _enum(spec, scopes) == list(SCOPES)


def test_timestamps_are_date_time(spec: dict[str, Any]) -> None:
    untyped = []
    for name, schema in spec["components"]["schemas"].items():
        for field, node in schema.get("properties", {}).items():
            if field == "ts" or field.endswith(("_at", "_until")) or field == "last_received":
                alts = node.get("anyOf", [node])
                if node.get("type") == "integer":
                    continue  # seconds since the epoch (probe samples)
                if not any(a.get("format") == "date-time" for a in alts):
                    untyped.append(f"{name}.{field}")
    assert not untyped


def test_markdown_answer_is_declared(spec: dict[str, Any], served: Served) -> None:
    answer = spec["paths"]["/api/v1/incidents/{ref}/review"]["get"]["responses"]["200"]
    assert list(answer["content"]) == ["text/markdown"]


def test_405_names_every_method_of_the_path(served: Served) -> None:
    r = served.api().put("/api/v1/executions")
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, POST"
    assert r.headers["Content-Type"] == "application/problem+json"
    r = served.api().post("/api/v1/health")
    assert (r.status_code, r.headers["Allow"]) == (405, "GET")


def test_one_pagination_style(spec: dict[str, Any]) -> None:
    """Issue 18: every list that pages takes limit + cursor and answers items + next_cursor."""
    paged = []
    for path, item in spec["paths"].items():
        op = item.get("get")
        names = {p["name"] for p in (op or {}).get("parameters", ())}
        if op is None or "limit" not in names:
            continue
        paged.append(op["operationId"])
        assert "cursor" in names, path
        ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert set(_schema(spec, ref.rsplit("/", 1)[1])["properties"]) >= {"items", "next_cursor"}
    assert sorted(paged) == [
        "listAlerts",
        "listAuditEvents",
        "listExecutions",
        "listIncidents",
        "listKnownErrors",
        "listReleases",
    ]
