"""Suggested procedures for an incident: by affected service, type and alert; the procedure
the alert itself links comes first (the banking runbooks from `opsbook init`)."""

from __future__ import annotations

from opsbook.incidents.service import declare, declare_from_alert
from opsbook.incidents.suggest import alert_hints, suggest_for
from opsbook.runbooks.catalogue import load_catalogue
from tests.incidents.harness import Env

LINKED = "troubleshooting#service-connectivity"


def test_the_procedure_the_alert_links_comes_first(env: Env) -> None:
    catalogue = load_catalogue(env.ws.runbooks_dir)
    plain = declare(
        db=env.db,
        config=env.config,
        title="Payments down",
        actor="alice",
        services=["payment"],
        severity="SEV2",
    ).incident
    unlinked = [s.ref for s in suggest_for(db=env.db, catalogue=catalogue, incident=plain)]
    assert LINKED in catalogue.refs() and unlinked[0] != LINKED  # by service and type alone
    out = declare_from_alert(
        db=env.db,
        config=env.config,
        alert_name="ProbeFailing",
        service="payment",
        severity="SEV2",
        runbook=LINKED,
    )
    found = suggest_for(db=env.db, catalogue=catalogue, incident=out.incident)
    assert found[0].ref == LINKED and "linked from the alert" in found[0].reasons
    assert alert_hints(db=env.db, incident=out.incident) == ("ProbeFailing", (LINKED,))


def test_an_attached_alert_adds_its_link(env: Env) -> None:
    first = declare_from_alert(
        db=env.db, config=env.config, alert_name="ErrorRate", service="payment", severity="SEV2"
    )
    again = declare_from_alert(
        db=env.db,
        config=env.config,
        alert_name="ErrorRate",
        service="payment",
        severity="SEV2",
        runbook=f"https://wiki.example/runbooks/{LINKED}",
    )
    assert again.created is False
    catalogue = load_catalogue(env.ws.runbooks_dir)
    found = suggest_for(db=env.db, catalogue=catalogue, incident=first.incident)
    assert found[0].ref == LINKED
