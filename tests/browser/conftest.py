"""Headless Debian Chromium driven by Playwright (never `playwright install`), shared by the
browser tests. Screenshots go to artifacts/screenshots/ at the repository root."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium's connections are refused by this machine's
# closed network, many at a time.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


def shot(page, name: str, max_height: int | None = None) -> None:
    """A full-page screenshot taken with a viewport as tall as the page (the admin's sticky sidebar
    smears in Chromium's stitched full-page captures), at most `max_height` px if given."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    height = page.evaluate("document.documentElement.scrollHeight")
    if max_height is not None:
        height = min(height, max_height)
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
    page.screenshot(path=str(SHOTS / name))
    page.set_viewport_size(size)


@pytest.fixture
def browser_page(request, monkeypatch):
    """A page in a fresh context; the viewport is 1280 px wide unless the test module sets
    VIEWPORT_WIDTH."""
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium chromium-driver)")
    # Playwright's sync API runs an event loop in this thread; the test also uses the ORM here.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    width = getattr(request.module, "VIEWPORT_WIDTH", 1280)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()
            # With Playwright's loop running, the ORM in this thread got connections of its own
            # (asgiref locals follow the loop's context): close them, or they outlive the test.
            from django.db import connections

            connections.close_all()
