"""Driving the console with a real HTTP client: sign in, read the CSRF token from a page."""

from __future__ import annotations

import re

import httpx

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    m = CSRF.search(html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def signin(base: str, username: str, password: str) -> tuple[httpx.Client, str]:
    """A browser-like client signed in as ``username``, and its session's CSRF token."""
    client = httpx.Client(base_url=base, timeout=30)
    page = client.get("/signin")
    r = client.post(
        "/signin",
        data={"csrf": csrf_of(page.text), "username": username, "password": password, "next": "/"},
    )
    assert r.status_code == 303, r.text
    home = client.get("/")
    assert home.status_code == 200
    return client, csrf_of(home.text)
