"""The dashboard, served at ``/`` with its assets.

Its page and style sheet are package data (``static/dashboard/``); its script, ``app.js``, is
built from ``labextension/src/dashboard`` (TypeScript sharing the JupyterLab sidebar's core)
by the same ``jlpm build:prod`` that ``pip install`` runs. It is not in git, and a wheel ships
it; an editable install made without Node.js has none, and the page then says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

import tornado.web

from .handlers import BaseHandler

log = logging.getLogger("jupyter_deploy_manager")

STATIC_DIR = Path(__file__).resolve().parent / "static" / "dashboard"
"""Where index.html, style.css and the built app.js are (package data, so they ship in the wheel)."""

SCRIPT = "app.js"
"""The built script, in STATIC_DIR."""

# The page loads only its own files and talks only to this manager: the policy makes that a rule
# the browser enforces, and keeps the page out of other sites' frames.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page's Content-Security-Policy: its own files, calls to this manager only, no framing."""

_warned = False


def script_built() -> bool:
    """Whether the dashboard's script was built into the package."""
    return (STATIC_DIR / SCRIPT).is_file()


class DashboardHandler(BaseHandler):
    """``GET /``: the dashboard page; it logs in with ``POST /api/login`` and keeps the token per tab."""

    def get(self) -> None:
        """Serve index.html with headers that keep it self-contained and unframed (or say it was not built)."""
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        # Revalidated on every visit so an upgraded manager never runs an old page against a new API.
        self.set_header("Cache-Control", "no-cache")
        if not script_built():
            # A page without its script would be a login form that does nothing: say what is missing.
            _warn_not_built()
            self.set_status(503)
            self.finish((STATIC_DIR / "not-built.html").read_bytes())
            return
        self.finish((STATIC_DIR / "index.html").read_bytes())


def _warn_not_built() -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(
            "the dashboard's script %s was not built (installed without Node.js?); "
            "run `jlpm build:prod` in labextension/ or reinstall with Node.js 18+",
            STATIC_DIR / SCRIPT,
        )


class DashboardStaticHandler(tornado.web.StaticFileHandler):
    """``GET /static/dashboard/{file}``: the page's script and style sheet."""

    def set_extra_headers(self, path: str) -> None:
        """Revalidate (cheap, by ETag) instead of caching blindly, for the same reason as the page."""
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Content-Type-Options", "nosniff")
