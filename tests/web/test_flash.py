"""Flash messages survive any text (a cookie value must be latin-1)."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.responses import Response

from opsbook.web.render import FLASH_COOKIE, with_flash


def test_a_flash_with_any_text_is_a_valid_cookie() -> None:
    response = with_flash(Response(), "Approved by Łukasz → next step")
    header = response.headers["set-cookie"]
    header.encode("latin-1")  # raises if not a valid header value
    value = header.split(";", 1)[0].removeprefix(f"{FLASH_COOKIE}=")
    assert unquote(value.strip('"')) == "Approved by Łukasz → next step"
