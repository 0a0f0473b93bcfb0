"""The jupyter-server extension: ``/jupyter-deploy/api/...`` for the JupyterLab sidebar, credentials kept server-side."""

from __future__ import annotations

from typing import Any


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Add the handlers and the session object they share to the Jupyter server."""
    from .handlers import routes
    from .session import JupyterDeploy

    session = JupyterDeploy(parent=serverapp, log=serverapp.log)
    web_app = serverapp.web_app
    web_app.settings["jupyter_deploy"] = session
    web_app.add_handlers(".*$", routes(web_app.settings["base_url"]))
    serverapp.log.info("jupyter-deploy extension loaded (manager: %s)", session.manager_url or "not configured yet")
