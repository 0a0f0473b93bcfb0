"""Thin tornado handlers of ``/jupyter-deploy/api/...``; the work is in ``JupyterDeploy``."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from jupyter_deploy_contract import error_body, is_service_name, is_version

from ..client import ManagerClient
from ..errors import ConfigError, ConnectionFailed, DeployError, Unauthorized
from .session import JupyterDeploy


def error_reply(exc: DeployError, *, login: bool = False) -> tuple[int, dict[str, Any]]:
    """The status and JSON body the browser gets for a DeployError."""
    if isinstance(exc, ConnectionFailed):
        return 502, error_body("manager-unreachable", exc.message)
    if isinstance(exc, ConfigError):
        return 401, error_body("not-logged-in", exc.message)
    if isinstance(exc, Unauthorized):
        if login:
            return 401, error_body("bad-credentials", exc.message)
        return 401, error_body("not-logged-in", f"the manager refused the stored login ({exc.message}): log in again")
    status = exc.status or 500
    if status >= 500:
        return 502, error_body("manager-error", f"the manager failed: {exc.message}")
    return status, error_body(exc.reason or "error", exc.message)


AUTH_RESOURCE = "jupyter_deploy"
"""What the Jupyter server's Authorizer is asked about: ``read`` (GET), ``write`` (POST, DELETE), ``execute``
(a docs link, whose token calls the service). A read-only collaborator may look, not change or delete."""


class DeployHandler(APIHandler):
    """Base: the session object, JSON bodies, DeployError → ``{"message", "reason"}``."""

    auth_resource = AUTH_RESOURCE

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """JSON errors; the Jupyter server's own refusals (its Authorizer said no) get the reason ``forbidden``."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if status_code == 403 and isinstance(exc, web.HTTPError) and not exc.reason:
            exc.reason = "forbidden"
        super().write_error(status_code, **kwargs)

    @property
    def session(self) -> JupyterDeploy:
        """The extension's service object."""
        return self.settings["jupyter_deploy"]

    def json_body(self, *required: str) -> dict[str, Any]:
        """The request's JSON object; 422 naming what is missing."""
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(422, "the body is not JSON", reason="invalid-input") from None
        if not isinstance(body, dict):
            raise web.HTTPError(422, "the body must be a JSON object", reason="invalid-input")
        missing = [key for key in required if not isinstance(body.get(key), str) or not body[key].strip()]
        if missing:
            raise web.HTTPError(422, f"missing {', '.join(missing)}", reason="invalid-input")
        return body

    async def run(self, fn: Callable[[], Any], *, login: bool = False) -> None:
        """Run blocking SDK work in a thread and answer its result as JSON (or the mapped error)."""
        try:
            result = await asyncio.get_running_loop().run_in_executor(None, fn)
        except DeployError as exc:
            status, body = error_reply(exc, login=login)
            self.set_status(status)
            self.finish(body)
            return
        self.finish(result)

    def check_names(self, name: str, version: str | None = None) -> None:
        """404 for names the manager could never have, before any call."""
        if not is_service_name(name):
            raise web.HTTPError(404, f"no service named {name!r}", reason="unknown-service")
        if version is not None and not is_version(version):
            raise web.HTTPError(404, f"no version {version!r} of service {name!r}", reason="unknown-version")


class StatusHandler(DeployHandler):
    """``GET status``: configured, logged in, reachable."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """The state the sidebar shows."""
        await self.run(self.session.status)


class LoginHandler(DeployHandler):
    """``POST login``: exchange a password for a token kept server-side."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Log in; answer the new status."""
        body = self.json_body("url", "username", "password")
        url = body["url"].strip()
        if not url.startswith(("http://", "https://")):
            raise web.HTTPError(422, f"the manager URL must start with http:// or https:// (got {url!r})", reason="invalid-input")
        await self.run(lambda: self.session.login(url, body["username"].strip(), body["password"]), login=True)


class LogoutHandler(DeployHandler):
    """``POST logout``: forget the stored login."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Log out; answer the new status."""
        await self.run(self.session.logout)


class ServicesHandler(DeployHandler):
    """``GET services``: every service with its versions."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """List services."""
        await self.run(lambda: {"services": self.session.services()})


class ServiceHandler(DeployHandler):
    """``GET`` / ``DELETE services/{name}``."""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        """One service."""
        self.check_names(name)
        await self.run(lambda: self.session.call(lambda c: c.service(name)))

    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        """Stop and remove the service."""
        self.check_names(name)

        def delete(client: ManagerClient) -> dict[str, Any]:
            client.delete(name)
            self.session.forget_docs_token(name)
            return {"deleted": name}

        await self.run(lambda: self.session.call(delete, timeout=300))


class VersionHandler(DeployHandler):
    """``DELETE services/{name}/versions/{version}``."""

    @web.authenticated
    @authorized
    async def delete(self, name: str, version: str) -> None:
        """Remove one version."""
        self.check_names(name, version)
        await self.run(lambda: self.session.call(lambda c: c.delete_version(name, version), timeout=300))


class ActionHandler(DeployHandler):
    """``POST services/{name}[/versions/{version}]/(stop|start|restart)``."""

    @web.authenticated
    @authorized
    async def post(self, name: str, version: str | None, action: str) -> None:
        """Act on the service or one version."""
        self.check_names(name, version)
        await self.run(lambda: self.session.call(lambda c: c.act(name, action, version), timeout=300))


class PromoteHandler(DeployHandler):
    """``POST services/{name}/promote`` with ``{"version": ...}``."""

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        """Make a version main."""
        self.check_names(name)
        version = self.json_body("version")["version"]
        await self.run(lambda: self.session.call(lambda c: c.promote(name, version), timeout=300))


class LogsHandler(DeployHandler):
    """``GET services/{name}/logs?tail=N&version=V``."""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        """The last lines of the service's log as ``{"text": ...}``."""
        try:
            tail = int(self.get_query_argument("tail", "200"))
        except ValueError:
            raise web.HTTPError(422, "tail must be a whole number", reason="invalid-input") from None
        tail = max(1, min(tail, 10000))
        version = self.get_query_argument("version", None) or None
        self.check_names(name, version)
        await self.run(lambda: {"text": self.session.call(lambda c: c.logs(name, tail=tail, version=version))})


class DocsLinkHandler(DeployHandler):
    """``GET services/{name}/docs-link``: the docs page, authorized for that service only."""

    @web.authenticated
    # The link carries a token that calls the service: running code, not reading.
    @authorized("execute")
    async def get(self, name: str) -> None:
        """The URL to open in a docs tab."""
        self.check_names(name)
        await self.run(lambda: {"url": self.session.docs_link(name)})


def routes(base_url: str) -> list[tuple[str, type[DeployHandler]]]:
    """The extension's routes under the server's base URL."""
    name, version = r"([^/]+)", r"([^/]+)"
    table = [
        ("status", StatusHandler),
        ("login", LoginHandler),
        ("logout", LogoutHandler),
        ("services", ServicesHandler),
        (f"services/{name}", ServiceHandler),
        (f"services/{name}/versions/{version}", VersionHandler),
        (f"services/{name}(?:/versions/{version})?/(stop|start|restart)", ActionHandler),
        (f"services/{name}/promote", PromoteHandler),
        (f"services/{name}/logs", LogsHandler),
        (f"services/{name}/docs-link", DocsLinkHandler),
    ]
    return [(url_path_join(base_url, "jupyter-deploy/api", path), handler) for path, handler in table]
