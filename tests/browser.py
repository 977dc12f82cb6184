"""Headless Chromium for the tests that look at a page: Debian's browser, driven by Playwright.

The tests never download a browser (no ``playwright install``): they drive the system's
Chromium (``apt-get install chromium``) through Playwright's ``executable_path``, with a
fresh, empty profile, and with every request that leaves 127.0.0.1 refused, so a page
that needs the internet (fonts, analytics, a CDN) shows up as a failure, not as a hang.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@contextlib.contextmanager
def chromium_page(offsite_requests: list[str] | None = None, width: int = 1280,
                  height: int = 900) -> Iterator:
    """A Playwright ``Page`` in headless Debian Chromium (``/usr/bin/chromium``).

    Requests to any host but 127.0.0.1/localhost are aborted; their URLs are appended to
    ``offsite_requests`` when a list is given, for the test to check.
    """
    if not CHROMIUM.exists():
        pytest.fail(f"The browser tests drive Debian's Chromium at {CHROMIUM}, which is "
                    "missing: install it with `sudo apt-get install chromium` (never "
                    "`playwright install`).")
    from playwright.sync_api import sync_playwright

    def refuse_offsite(route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            if offsite_requests is not None:
                offsite_requests.append(route.request.url)
            route.abort()

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, \
            sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height}, accept_downloads=True,
        )
        try:
            context.route("**/*", refuse_offsite)
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            context.close()
