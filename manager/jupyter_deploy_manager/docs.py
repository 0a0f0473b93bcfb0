"""Interactive API pages (Swagger UI shipped in the swagger-ui-bundle package, no CDN) and OpenAPI routes."""

from __future__ import annotations

import html
import json
from pathlib import Path

from .errors import ApiError
from .handlers import BaseHandler
from .openapi import service_document


def swagger_ui_dir() -> Path:
    """Where the installed Swagger UI assets are."""
    import swagger_ui_bundle

    return Path(str(swagger_ui_bundle.swagger_ui_path))


PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="{static}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{static}/favicon-32x32.png">
  <style>
    body {{ margin: 0; font-family: sans-serif; }}
    #jd-auth {{ padding: 12px 20px; background: #f6f8fa; border-bottom: 1px solid #d0d7de; }}
    #jd-auth form {{ display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }}
    #jd-auth input {{ font-family: monospace; width: 34em; padding: 4px; }}
    #jd-error {{ color: #cf222e; margin-top: 6px; }}
  </style>
</head>
<body>
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
  <script>
  (function () {{
    const specUrl = {spec_url};
    const needsToken = {needs_token};
    const storeKey = "jupyter-deploy-token:" + specUrl;
    function render(spec, token) {{
      // Remembered here, not in load(), so the public page keeps a #token= across reloads too.
      if (token) {{ sessionStorage.setItem(storeKey, token); }}
      const options = {{dom_id: "#swagger-ui", deepLinking: true, tryItOutEnabled: true,
                        displayRequestDuration: true}};
      if (spec) {{ options.spec = spec; }} else {{ options.url = specUrl; }}
      if (token) {{
        options.onComplete = function () {{ window.ui.preauthorizeApiKey("bearerAuth", token); }};
      }}
      window.ui = SwaggerUIBundle(options);
    }}
    function load(token) {{
      const error = document.getElementById("jd-error");
      error.textContent = "";
      fetch(specUrl, {{headers: {{Authorization: "Bearer " + token}}}})
        .then(function (resp) {{
          return resp.json().then(function (body) {{
            if (!resp.ok) {{ throw new Error(body.message || resp.statusText); }}
            return body;
          }});
        }})
        .then(function (spec) {{
          document.getElementById("jd-auth").hidden = true;
          render(spec, token);
        }})
        .catch(function (e) {{ error.textContent = "Could not load the API description: " + e.message; }});
    }}
    document.getElementById("jd-auth-form").addEventListener("submit", function (ev) {{
      ev.preventDefault();
      load(document.getElementById("jd-token").value.trim());
    }});
    // A token in the fragment is never sent to the server nor logged.
    const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
    const token = fromHash || sessionStorage.getItem(storeKey);
    if (fromHash) {{ history.replaceState(null, "", location.pathname + location.search); }}
    if (!needsToken) {{ render(null, token); }}
    else if (token) {{ load(token); }}
  }})();
  </script>
</body>
</html>
"""


def page(title: str, spec_url: str, needs_token: bool, static: str = "/static/swagger-ui") -> str:
    """The HTML of an interactive API page."""
    return PAGE.format(
        title=html.escape(title),
        static=static,
        # "</" inside an inline script would end it: escape it whatever the URL holds.
        spec_url=json.dumps(spec_url).replace("</", "<\\/"),
        needs_token="true" if needs_token else "false",
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
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(page("jupyter-deploy manager API", "/api/openapi.json", needs_token=False))
