"""Headless Chromium for browser tests: Debian's /usr/bin/chromium driven by playwright.

Use the `page` fixture (a fresh playwright Page, 1280x900) with pytest-django's `live_server`:

    @pytest.mark.browser
    def test_something(page, live_server):
        page.goto(f"{live_server.url}/galaxies/")

Tests using it are skipped (with the reason) when chromium or playwright is missing; `make
browser` installs chromium. Launch flags as measured in /work/shared/NOTES.md.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.utils import CHROMIUM, LAUNCH_ARGS


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the test session."""
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"chromium not found at {CHROMIUM} (run `make browser`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed")
    # pytest-django's live_server and sync playwright share the thread's event-loop checks.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page (own cookies) in the session's Chromium; console errors collected in page.console_errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20000)
    pg.console_errors = []
    pg.on("console", lambda msg: pg.console_errors.append(msg.text) if msg.type == "error" else None)
    yield pg
    context.close()
