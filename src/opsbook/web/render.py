"""Templates and the helpers they use. Jinja2 autoescapes everything; runbook Markdown is
rendered with raw HTML disabled, so a runbook cannot inject markup into the console."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from opsbook.api.auth import session_of

if TYPE_CHECKING:
    from jinja2 import Environment

HERE = Path(__file__).parent
FLASH_COOKIE = "opsbook_flash"

NAV = (
    ("/", "Dashboard", "executions:read"),
    ("/runbooks", "Runbooks", "runbooks:read"),
    ("/runbooks/stats", "Runbook stats", "runbooks:read"),
    ("/changes", "Changes", "runbooks:read"),
    ("/training", "Training", "runbooks:read"),
    ("/security", "Security", "runbooks:read"),
    ("/backups", "Backups", "runbooks:read"),
    ("/releases", "Releases", "runbooks:read"),
    ("/executions", "Executions", "executions:read"),
    ("/monitoring", "Monitoring", "monitoring:read"),
    ("/incidents", "Incidents", "incidents:read"),
    ("/diagnose", "Diagnose", "monitoring:read"),
    ("/logs", "Logs", "monitoring:read"),
    ("/reference", "Quick reference", "runbooks:read"),
    ("/audit", "Audit", "audit:read"),
    ("/users", "Users", "users:read"),
)


@cache
def _markdown() -> Any:
    from markdown_it import MarkdownIt  # noqa: PLC0415

    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def markdown(text: str) -> Markup:
    html = _markdown().render(text or "")
    return Markup(html)  # noqa: S704 - markdown-it escapes text; raw HTML is disabled


def strip_front_matter(source: str) -> str:
    if source.startswith("---\n"):
        end = source.find("\n---", 4)
        if end != -1:
            return source[end + 4 :].lstrip("\n")
    return source


def when(ts: str | None) -> str:
    if not ts:
        return ""
    try:
        dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return ts
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


@cache
def environment() -> Environment:
    from jinja2 import Environment, FileSystemLoader, select_autoescape  # noqa: PLC0415

    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["markdown"] = markdown
    env.filters["when"] = when
    env.filters["seconds"] = seconds
    return env


def render(
    request: Request, name: str, *, status: int = 200, principal: Any = None, **values: Any
) -> HTMLResponse:
    session = session_of(request)
    flash = request.cookies.get(FLASH_COOKIE)
    if flash is not None:
        flash = unquote(flash)
    nav = [
        (
            href,
            label,
            (href == "/" and request.url.path == "/")
            or (href != "/" and request.url.path.startswith(href)),
        )
        for href, label, perm in NAV
        if principal is not None and principal.can(perm)
    ]
    html = (
        environment()
        .get_template(name)
        .render(
            request=request,
            principal=principal,
            csrf=session.csrf_token if session else "",
            nav=nav,
            flash=flash,
            path=request.url.path,
            **values,
        )
    )
    response = HTMLResponse(html, status_code=status)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def with_flash(response: Response, message: str) -> Response:
    # Percent-encoded: a cookie value must be latin-1 (a name like "Łukasz" or an arrow is not).
    response.set_cookie(
        FLASH_COOKIE, quote(message[:300], safe=""), max_age=60, httponly=True, samesite="lax"
    )
    return response
