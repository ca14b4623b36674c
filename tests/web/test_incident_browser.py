"""The incident console in a real browser (Debian's chromium driven by Playwright) on a phone
sized viewport, against a real `opsbook serve` process on the workspace from `opsbook init`:
declare an incident from the form, acknowledge it, see both on the timeline."""

from __future__ import annotations

from typing import Any

from tests.web.test_browser import (  # the same server and browser as the console flow
    _shots,
    browser,
    pytestmark,
    server,
    sign_in,
)

__all__ = ["browser", "pytestmark", "server"]


def test_declare_and_acknowledge_on_a_phone(server: dict[str, str], browser: Any) -> None:
    url = server["url"]
    page = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    page.set_default_timeout(20_000)
    try:
        sign_in(page, url, "admin", server["password"])
        page.get_by_role("link", name="Incidents").click()
        page.get_by_role("heading", name="Incidents").wait_for()
        form = page.locator("#declare")
        if form.get_attribute("open") is None:
            page.get_by_text("Declare an incident").click()
        page.get_by_label("Title (required)").fill("Card payments failing")
        page.get_by_label("Type").select_option("outage")
        page.get_by_role("checkbox", name="Payments").check()
        page.get_by_label("Impact", exact=True).select_option("significant")
        page.get_by_label("Urgency", exact=True).select_option("high")
        page.get_by_role("button", name="Declare and page the team").click()
        page.get_by_text("Declared INC-").wait_for()
        heading = page.get_by_role("heading", level=1).inner_text()
        ref = heading.split(" ", 1)[0]
        assert heading.endswith("Card payments failing") and ref.startswith("INC-")
        page.get_by_role("button", name=f"Acknowledge {ref}").click()
        page.get_by_text(f"{ref} acknowledged by admin; escalation stopped.").wait_for()
        assert page.get_by_role("button", name=f"Acknowledge {ref}").count() == 0
        timeline = page.locator("table").last.inner_text()
        assert "Declared SEV" in timeline and "acknowledged" in timeline
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    except Exception as exc:
        shots = _shots({"incident": page}, server["artifacts"])
        raise AssertionError(f"browser flow failed: {exc}; screenshots: {shots}") from exc
