"""Browser tests: Debian's chromium, headless, driven by Playwright's Python package.

Playwright is only the driver here: the browser is the system's (`apt-get install chromium`), so
`playwright install`, which downloads a browser build of its own, is never needed. Without that
browser the tests skip with the reason; with MODELGATE_E2E_REQUIRED=1 (as CI sets it) they fail
instead, so a CI run cannot pass by silently not running them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("MODELGATE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000


def _unavailable(reason: str) -> None:
    if os.environ.get("MODELGATE_E2E_REQUIRED", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"MODELGATE_E2E_REQUIRED is set, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(
            f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the browser tests need the playwright package (pip install -e '.[dev]')")
    with pytest.MonkeyPatch.context() as patch:
        # Playwright's sync API keeps an asyncio loop in this thread, and Django's ORM refuses
        # to run beside one. The test's own queries never run concurrently with the loop (it
        # only turns while a Playwright call waits), so they are safe; only for these tests.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            yield browser
            browser.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    """A factory of pages, each in its own context (its own cookies: one user each)."""
    contexts = []

    def make() -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where screenshots go: MODELGATE_E2E_SCREENSHOTS if set, else the test's temporary dir
    (never the work tree)."""
    folder = Path(os.environ.get("MODELGATE_E2E_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
