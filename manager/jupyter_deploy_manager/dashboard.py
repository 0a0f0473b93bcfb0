"""The dashboard: one page of vanilla JS shipped inside the package, served at ``/`` with its assets."""

from __future__ import annotations

from pathlib import Path

import tornado.web

from .handlers import BaseHandler

STATIC_DIR = Path(__file__).resolve().parent / "static" / "dashboard"
"""Where index.html, app.js and style.css are (package data, so they ship in the wheel)."""

# The page loads only its own files and talks only to this manager: the policy makes that a rule
# the browser enforces, and keeps the page out of other sites' frames.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page's Content-Security-Policy: its own files, calls to this manager only, no framing."""


class DashboardHandler(BaseHandler):
    """``GET /``: the dashboard page; it logs in with ``POST /api/login`` and keeps the token per tab."""

    def get(self) -> None:
        """Serve index.html with headers that keep it self-contained and unframed."""
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        # Revalidated on every visit so an upgraded manager never runs an old page against a new API.
        self.set_header("Cache-Control", "no-cache")
        self.finish((STATIC_DIR / "index.html").read_bytes())


class DashboardStaticHandler(tornado.web.StaticFileHandler):
    """``GET /static/dashboard/{file}``: the page's script and style sheet."""

    def set_extra_headers(self, path: str) -> None:
        """Revalidate (cheap, by ETag) instead of caching blindly, for the same reason as the page."""
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Content-Type-Options", "nosniff")
