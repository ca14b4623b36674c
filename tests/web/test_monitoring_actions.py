"""Console actions on alerts over real HTTP: acknowledge, silence with matchers, end a silence;
CSRF required, ``alerts:manage`` required (403, audited), refusals flashed back."""

from __future__ import annotations

import html
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from opsbook.monitoring import alerts
from opsbook.monitoring.webhook import parse_webhook
from tests.api.harness import Served, serve
from tests.monitoring.test_alerts import payload
from tests.web.console import signin

PW = "correct horse battery staple"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(Path(tmp_path_factory.mktemp("console-mon")) / "ws") as s:
        s.account("oncall", ["operator"], password=PW)
        s.account("watcher", ["viewer"], password=PW)
        _, incoming = parse_webhook(payload(3))
        alerts.ingest(
            s.db,
            alerts=incoming,
            source="alertmanager",
            actor="am",
            runbook_for=lambda a: None,
        )
        yield s


def flash(response: httpx.Response) -> str:
    return unquote(response.cookies.get("opsbook_flash", ""))


def test_acknowledge_silence_and_end_it(site: Served) -> None:
    c, csrf = signin(site.url, "oncall", PW)
    with closing(c):
        page = c.get("/monitoring").text
        assert ">Acknowledge</button>" in page and 'name="matchers"' in page
        first = site.db.query("SELECT id FROM mon_alerts ORDER BY id")[0]["id"]
        r = c.post(f"/monitoring/alerts/{first}/ack", data={"csrf": csrf, "comment": "on it"})
        assert r.status_code == 303 and "acknowledged by oncall" in flash(r)
        assert ">Acknowledge</button>" in c.get("/monitoring").text  # the other two alerts
        assert site.db.one("SELECT acked_by FROM mon_alerts WHERE id = ?", (first,)) == {
            "acked_by": "oncall"
        }
        r = c.post(
            "/monitoring/silences",
            data={
                "csrf": csrf,
                "matchers": "service=payment\npod=~p[12]",
                "duration": "2h",
                "comment": "pods being replaced",
            },
        )
        assert r.status_code == 303 and "Silence" in flash(r), flash(r)
        (silence,) = alerts.list_silences(site.db)
        assert silence["matchers"] == ["service=payment", "pod=~p[12]"]
        assert silence["created_by"] == "oncall"
        shown = html.unescape(c.get("/monitoring").text)
        assert "pod=~p[12]" in shown and "End now" in shown
        bad = c.post(
            "/monitoring/silences",
            data={"csrf": csrf, "matchers": "pod=~(", "duration": "2h", "comment": "x"},
        )
        assert bad.status_code == 303 and "Not done" in flash(bad)
        assert "regular expression" in flash(bad)
        bad = c.post(
            "/monitoring/silences",
            data={"csrf": csrf, "matchers": "pod=p1", "duration": "soon", "comment": "x"},
        )
        assert "not a duration" in flash(bad)
        r = c.post(f"/monitoring/silences/{silence['id']}/expire", data={"csrf": csrf})
        assert r.status_code == 303 and "ended by oncall" in flash(r)
        assert alerts.list_silences(site.db) == []
        assert c.post("/monitoring/silences/999999/expire", data={"csrf": csrf}).status_code == 404


def test_forms_need_the_token_and_the_permission(site: Served) -> None:
    c, _ = signin(site.url, "oncall", PW)
    with closing(c):
        no_token = c.post("/monitoring/silences", data={"matchers": "a=b", "comment": "x"})
        assert no_token.status_code in (401, 403)
    v, vcsrf = signin(site.url, "watcher", PW)
    with closing(v):
        page = v.get("/monitoring").text
        assert ">Acknowledge</button>" not in page and 'name="matchers"' not in page
        denied = v.post(
            "/monitoring/silences",
            data={"csrf": vcsrf, "matchers": "a=b", "duration": "1h", "comment": "x"},
        )
        assert denied.status_code == 403
    assert any(e["actor"] == "watcher" for e in site.audit_actions(action="access.denied"))
    assert alerts.list_silences(site.db) == []
