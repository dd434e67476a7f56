"""The specialist's page as HTTP serves it: the files, and the headers that protect it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from server.app import create_app
from server.settings import Settings
from tests.conftest import make_settings

PUBLIC_URL = "https://telemed.example.org"


@pytest.fixture
def web(sqlite_url: str, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(make_settings(sqlite_url, tmp_path / "data", public_url=PUBLIC_URL))
    with TestClient(app) as client:
        yield client


def csp_directives(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


def test_join_page_is_html_with_its_own_script_and_style(web: TestClient) -> None:
    resp = web.get("/join")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    html = resp.text
    assert '<script src="/join/assets/join.js" defer></script>' in html
    assert '<link rel="stylesheet" href="/join/assets/join.css">' in html
    # No inline script, no inline style attribute, nothing from another origin.
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
    assert " style=" not in html
    assert re.search(r"(src|href)=\"(https?:)?//", html) is None
    assert 'aria-live="polite"' in html
    assert '<html lang="en">' in html


def test_join_page_headers_forbid_inline_code_framing_caching_and_referrers(web: TestClient) -> None:
    resp = web.get("/join")
    csp = csp_directives(resp.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'", "wss://telemed.example.org"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert csp["require-trusted-types-for"] == ["'script'"]
    assert not any("'unsafe-inline'" in values or "'unsafe-eval'" in values for values in csp.values())
    assert resp.headers["referrer-policy"] == "no-referrer"
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["x-frame-options"] == "DENY"
    assert "camera=(self)" in resp.headers["permissions-policy"]


def test_plain_http_deployment_allows_ws_to_itself(sqlite_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(sqlite_url, tmp_path / "data", public_url="http://127.0.0.1:8000"))
    with TestClient(app) as client:
        csp = csp_directives(client.get("/join").headers["content-security-policy"])
    assert csp["connect-src"] == ["'self'", "ws://127.0.0.1:8000"]


@pytest.mark.parametrize(
    ("name", "media_type", "marker"),
    [
        ("join.js", "text/javascript; charset=utf-8", "use strict"),
        ("join.css", "text/css; charset=utf-8", ":root"),
    ],
)
def test_assets_are_served_with_the_same_headers(
    web: TestClient, name: str, media_type: str, marker: str
) -> None:
    resp = web.get(f"/join/assets/{name}")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == media_type
    assert marker in resp.text
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("name", ["join.html", "routes.py", "..%2Froutes.py", "%2e%2e%2f__init__.py", "x.js"])
def test_only_the_two_assets_can_be_fetched(web: TestClient, name: str) -> None:
    resp = web.get(f"/join/assets/{name}")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"


def test_the_script_never_writes_html(web: TestClient) -> None:
    """Display names come from the server: the page must only ever set them as text."""
    script = web.get("/join/assets/join.js").text
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink


def test_the_page_is_not_in_the_api_schema(web: TestClient) -> None:
    paths = web.get("/openapi.json").json()["paths"]
    assert not any(path.startswith("/join") for path in paths)


def _support(html: str) -> tuple[str, str]:
    contact = re.search(r'<meta name="telemed-support-contact" content="([^"]*)">', html)
    phone = re.search(r'<meta name="telemed-support-phone" content="([^"]*)">', html)
    assert contact is not None and phone is not None, "the page lost its help contact placeholders"
    return contact.group(1), phone.group(1)


def test_without_a_help_contact_the_page_carries_none(web: TestClient) -> None:
    assert _support(web.get("/join").text) == ("", "")


def test_the_configured_help_contact_is_in_the_page_as_escaped_text(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        sqlite_url,
        tmp_path / "data",
        support_contact='IT desk "B" <script>alert(1)</script> & co',
        support_phone="+44 1632 960123",
    )
    with TestClient(create_app(settings)) as client:
        html = client.get("/join").text
    contact, phone = _support(html)
    assert contact == "IT desk &quot;B&quot; &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"
    assert phone == "+44 1632 960123"
    assert "<script>alert" not in html


def test_a_blank_help_contact_is_none_and_a_phone_must_look_like_one() -> None:
    assert Settings(support_contact="  ", support_phone="").support_contact is None
    with pytest.raises(ValidationError):
        Settings(support_phone="call the ward")
