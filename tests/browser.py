"""What the browser tests share: a page visit that records its requests and errors, and screenshots."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

# Kept after a run (git-ignored) so people can see what the pages looked like.
SCREENSHOTS = Path(__file__).resolve().parent / "artifacts" / "screenshots"
# Pages fetch, render and call services: generous for a loaded CI machine.
TIMEOUT_MS = 30_000


@dataclass
class Visit:
    """A page plus everything it asked the network for and every script error it hit."""

    page: Page
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    js_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def assert_only_manager(self, manager_url: str) -> None:
        """Every request went to the manager: assets are served locally, nothing from a CDN."""
        assert self.requests, "the page made no requests"
        elsewhere = [url for url in self.requests if not url.startswith(manager_url + "/")]
        assert not elsewhere, f"requests outside the manager: {elsewhere}"


@contextmanager
def visit(browser: Browser, url: str, height: int = 1000, clipboard: bool = False) -> Iterator[Visit]:
    """Open ``url`` in a fresh browser context (its own sessionStorage) and record what it does."""
    from playwright.sync_api import expect

    # expect() has its own 5 s default, separate from the context's.
    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(viewport={"width": 1280, "height": height})
    context.set_default_timeout(TIMEOUT_MS)
    if clipboard:
        parts = urlsplit(url)
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=f"{parts.scheme}://{parts.netloc}")
    page = context.new_page()
    seen = Visit(page)
    page.on("request", lambda request: seen.requests.append(request.url))
    page.on("requestfailed", lambda request: seen.failed.append(request.url))
    page.on("pageerror", lambda error: seen.js_errors.append(str(error)))
    page.on("console", lambda msg: seen.console_errors.append(msg.text) if msg.type == "error" else None)
    try:
        page.goto(url)
        yield seen
    finally:
        context.close()


def screenshot(page: Page, name: str, down_to: str | None = None) -> None:
    """Save the whole page, or its top down to the element ``down_to``, under tests/artifacts/screenshots."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    clip = None
    if down_to is not None:
        # bounding_box() is relative to the scrolled viewport; a full-page clip needs page coordinates.
        bottom = page.locator(down_to).evaluate("el => el.getBoundingClientRect().bottom + scrollY")
        clip = {"x": 0, "y": 0, "width": page.viewport_size["width"], "height": bottom + 20}
    page.screenshot(path=SCREENSHOTS / name, full_page=True, clip=clip)
