"""Form bodies (application/x-www-form-urlencoded) without extra dependencies, and the
principal of a console form post (CSRF checked)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from opsbook.api.auth import principal_of
from opsbook.errors import ValidationError
from opsbook.users.access import Principal

MAX_FORM = 64 * 1024


class Form:
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def get(self, name: str, default: str = "") -> str:
        for k, v in self.pairs:
            if k == name:
                return v
        return default

    def getlist(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]

    def startswith(self, prefix: str) -> dict[str, str]:
        return {k[len(prefix) :]: v for k, v in self.pairs if k.startswith(prefix)}


async def read_form(request: Request) -> Form:
    body = await request.body()
    if len(body) > MAX_FORM:
        raise ValidationError("the form is too large", field="body", hint="send less text")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(
            "the form is not UTF-8", field="body", hint="reload the page"
        ) from exc
    return Form(parse_qsl(text, keep_blank_values=True, max_num_fields=500))


async def form_principal(request: Request) -> tuple[Principal, Form]:
    form = await read_form(request)
    return principal_of(request, csrf_field=form.get("csrf")), form


def safe_next(target: str | None) -> str:
    """Only same-site paths: never redirect to another host after sign-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
