"""Interactive API pages (Swagger UI shipped in the swagger-ui-bundle package, no CDN) and OpenAPI routes."""

from __future__ import annotations

import html
from pathlib import Path

from .errors import ApiError
from .handlers import BaseHandler
from .openapi import service_document
from .pages import set_page_headers


def swagger_ui_dir() -> Path:
    """Where the installed Swagger UI assets are."""
    import swagger_ui_bundle

    return Path(str(swagger_ui_bundle.swagger_ui_path))


STATIC_DIR = Path(__file__).resolve().parent / "static" / "docs"
"""The pages' own script and style sheet (package data), served at ``/static/docs/``."""

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="{static}/swagger-ui.css">
  <link rel="stylesheet" href="/static/docs/docs.css">
  <link rel="icon" type="image/png" href="{static}/favicon-32x32.png">
</head>
<body>
  <div id="jd-docs" data-spec-url="{spec_url}" data-needs-token="{needs_token}" hidden></div>
  <div id="jd-auth" {auth_hidden}>
    <form id="jd-auth-form">
      <label for="jd-token"><b>{title}</b> &mdash; bearer token</label>
      <input id="jd-token" name="token" type="password" autocomplete="off" placeholder="jdt_...">
      <button type="submit" id="jd-authorize">Authorize</button>
    </form>
    <div id="jd-error" role="alert"></div>
  </div>
  <div id="swagger-ui"></div>
  <script src="{static}/swagger-ui-bundle.js"></script>
  <script src="/static/docs/docs.js"></script>
</body>
</html>
"""


def page(title: str, spec_url: str, needs_token: bool, static: str = "/static/swagger-ui") -> str:
    """The HTML of an interactive API page; its script (static/docs/docs.js) reads what to load from #jd-docs."""
    return PAGE.format(
        title=html.escape(title),
        static=static,
        # An attribute, not script text: escaped as such, whatever the URL holds.
        spec_url=html.escape(spec_url, quote=True),
        needs_token="1" if needs_token else "0",
        auth_hidden="" if needs_token else "hidden",
    )


class ServiceDocs:
    """Answers ``openapi.json`` and ``docs`` for a service or one of its versions."""

    @staticmethod
    def document(handler: BaseHandler, name: str, version: str | None) -> dict:
        """The OpenAPI document, after checking the caller may use the service."""
        principal = handler.principal()
        if not (principal.may_view() or principal.may_invoke(name)):
            raise ApiError(403, f"this token cannot read service {name!r}", "forbidden")
        service, record = handler.deployments.version_record(name, version)
        version = record.version
        base = f"{handler.request.protocol}://{handler.request.host}/services/{name}"
        if service["main_version"] != version:
            base += f"/versions/{version}"
        return service_document(name, version, record.manifest, base)

    @staticmethod
    def page(handler: BaseHandler, name: str, version: str | None) -> str:
        """The docs page; it asks for a token before loading the document."""
        prefix = f"/services/{name}" + (f"/versions/{version}" if version else "")
        title = f"{name} {version}" if version else name
        return page(title, f"{prefix}/openapi.json", needs_token=True)


class ApiDocsHandler(BaseHandler):
    """``GET /api/docs``: the manager's own API page."""

    def get(self) -> None:
        """Serve the page; the manager's document is public, calls need the Authorize button."""
        set_page_headers(self)
        self.finish(page("jupyter-deploy manager API", "/api/openapi.json", needs_token=False))
