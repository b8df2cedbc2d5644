"""The gateway serves the voice page and its assets (no browser needed for this part)."""

from __future__ import annotations

import httpx


def test_page_and_assets_are_served(system) -> None:
    page = httpx.get(f"{system.http_url}/", timeout=5)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/app.js">' in page.text
    for asset, kind in (
        ("app.js", "javascript"),
        ("mic-worklet.js", "javascript"),
        ("style.css", "text/css"),
        ("icon.svg", "image/svg"),
    ):
        response = httpx.get(f"{system.http_url}/static/{asset}", timeout=5)
        assert response.status_code == 200 and kind in response.headers["content-type"], asset
    assert httpx.get(f"{system.http_url}/static/missing.js", timeout=5).status_code == 404
    assert httpx.head(f"{system.http_url}/", timeout=5).status_code == 200
