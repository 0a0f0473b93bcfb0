"""The dashboard, served at ``/`` with its assets.

Its page and style sheet are package data (``static/dashboard/``); its script, ``app.js``, is
built from ``labextension/src/dashboard`` (TypeScript sharing the JupyterLab sidebar's core)
by the same ``jlpm build:prod`` that ``pip install`` runs. It is not in git, and a wheel ships
it; an editable install made without Node.js has none, and the page then says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .handlers import BaseHandler
from .pages import CONTENT_SECURITY_POLICY, PageStaticHandler, set_page_headers

log = logging.getLogger("jupyter_deploy_manager")

STATIC_DIR = Path(__file__).resolve().parent / "static" / "dashboard"
"""Where index.html, style.css and the built app.js are (package data, so they ship in the wheel)."""

SCRIPT = "app.js"
"""The built script, in STATIC_DIR."""

# The policy is the one of every page of the manager (pages.py); named here too for the dashboard's tests.
__all__ = ["CONTENT_SECURITY_POLICY", "DashboardHandler", "DashboardStaticHandler", "STATIC_DIR", "script_built"]

_warned = False


def script_built() -> bool:
    """Whether the dashboard's script was built into the package."""
    return (STATIC_DIR / SCRIPT).is_file()


class DashboardHandler(BaseHandler):
    """``GET /``: the dashboard page; it logs in with ``POST /api/login`` and keeps the token per tab."""

    def get(self) -> None:
        """Serve index.html with headers that keep it self-contained and unframed (or say it was not built)."""
        set_page_headers(self)
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


class DashboardStaticHandler(PageStaticHandler):
    """``GET /static/dashboard/{file}``: the page's script and style sheet."""
