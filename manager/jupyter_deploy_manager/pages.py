"""What every HTML page of the manager sends (the dashboard, the API docs pages): one policy, one place."""

from __future__ import annotations

import tornado.web

# A page loads only its own files and talks only to this manager: the policy makes that a rule the
# browser enforces (so even markup that slipped into a page fetches nothing elsewhere and runs no
# inline script), and keeps the page out of other sites' frames.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The pages' Content-Security-Policy: their own files, calls to this manager only, no framing."""

PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated on every visit so an upgraded manager never runs an old page against a new API.
    "Cache-Control": "no-cache",
}
"""The headers of every HTML page."""


DOCS_FRAME_ANCESTORS = "*"
"""Default framing of service docs pages, which the JupyterLab sidebar embeds (ManagerApp.docs_frame_ancestors)."""


def set_page_headers(handler: tornado.web.RequestHandler, frame_ancestors: str | None = None) -> None:
    """Give ``handler``'s answer the headers of an HTML page of the manager.

    ``frame_ancestors`` lets the page be framed by those origins (the service docs pages, which the
    sidebar embeds); every other page may be framed by nobody.
    """
    for name, value in PAGE_HEADERS.items():
        handler.set_header(name, value)
    if frame_ancestors is not None and frame_ancestors.strip() not in ("", "'none'", "none"):
        handler.clear_header("X-Frame-Options")
        policy = CONTENT_SECURITY_POLICY.replace("frame-ancestors 'none'", f"frame-ancestors {frame_ancestors}")
        handler.set_header("Content-Security-Policy", policy)


class PageStaticHandler(tornado.web.StaticFileHandler):
    """A page's scripts and style sheets: revalidated (cheap, by ETag) and never sniffed into another type."""

    def set_extra_headers(self, path: str) -> None:
        """Revalidate instead of caching blindly, for the same reason as the pages."""
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Content-Type-Options", "nosniff")
