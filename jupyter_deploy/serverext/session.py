"""``JupyterDeploy``: what the server extension knows of the manager and the user's login, and the calls it makes."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from traitlets import Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from .. import config
from ..client import ManagerClient
from ..errors import ConfigError, ConnectionFailed, DeployError, Unauthorized

T = TypeVar("T")


class JupyterDeploy(LoggingConfigurable):
    """Talks to the manager on behalf of the Jupyter server's user; the token never reaches the browser."""

    manager_url = Unicode(
        "",
        help="URL of the jupyter-deploy manager. Empty: the URL of the stored login (`jupyter-deploy login URL`).",
    ).tag(config=True)

    public_url = Unicode(
        "",
        help="The manager's URL as the browser reaches it, for docs links (default: manager_url).",
    ).tag(config=True)

    config_dir = Unicode(
        help="Where the login is stored (shared with kernels and the CLI of the same user).",
    ).tag(config=True)

    request_timeout = Float(30.0, help="Seconds to wait for the manager on ordinary calls.").tag(config=True)

    docs_token_hours = Integer(
        12, help="Lifetime of the invoke tokens made for docs tabs (one per service, reused until near expiry)."
    ).tag(config=True)

    @default("manager_url")
    def _default_manager_url(self) -> str:
        return os.environ.get("JUPYTER_DEPLOY_URL", "")

    @default("config_dir")
    def _default_config_dir(self) -> str:
        return str(config.config_dir())

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._docs_tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    # where and who
    def login_state(self) -> tuple[str | None, str | None, str | None]:
        """The manager URL, the token for it and the username, from configuration, environment and the stored login."""
        stored = config.load(Path(self.config_dir))
        url = (self.manager_url or stored.get("url") or "").rstrip("/") or None
        token = os.environ.get("JUPYTER_DEPLOY_TOKEN")
        username = None
        # A stored token is only good for the manager it was issued by.
        if not token and stored.get("token") and (stored.get("url") or "").rstrip("/") == url:
            token, username = stored["token"], stored.get("username")
        return url, token, username

    def browser_url(self, url: str) -> str:
        """The manager URL as the browser sees it."""
        return (self.public_url or url).rstrip("/")

    def client(self, timeout: float | None = None) -> ManagerClient:
        """A client with the user's login; ConfigError when there is none."""
        url, token, _ = self.login_state()
        if not url:
            raise ConfigError(
                "no manager configured: log in here, run `jupyter-deploy login URL`, "
                "or set c.JupyterDeploy.manager_url",
                reason="not-logged-in",
            )
        if not token:
            raise ConfigError(f"not logged in to {url}", reason="not-logged-in")
        return ManagerClient(url, token, timeout=timeout or self.request_timeout)

    def call(self, fn: Callable[[ManagerClient], T], timeout: float | None = None) -> T:
        """Run ``fn`` with a fresh client (blocking: handlers run this in a thread)."""
        client = self.client(timeout)
        try:
            return fn(client)
        finally:
            client.close()

    # state and login
    def status(self) -> dict[str, Any]:
        """Configured? logged in? reachable? Never raises: the sidebar picks its view from this."""
        url, token, username = self.login_state()
        state: dict[str, Any] = {
            "manager_url": url,
            "public_url": self.browser_url(url) if url else None,
            "logged_in": False,
            "username": username,
            "role": None,
            "reachable": False,
            "message": None,
            "reason": None,
        }
        if not url:
            state.update(message="no manager configured yet", reason="not-logged-in")
            return state
        if not token:
            # Still say whether the manager answers, so the form can tell "wrong URL" from "log in".
            probe = ManagerClient(url, None, timeout=5, need_token=False)
            try:
                probe.health()
                state.update(reachable=True, message=f"not logged in to {url}", reason="not-logged-in")
            except DeployError as exc:
                state.update(message=exc.message, reason="manager-unreachable")
            finally:
                probe.close()
            return state
        client = ManagerClient(url, token, timeout=5)
        try:
            who = client.whoami()
            state.update(
                logged_in=True, reachable=True, username=who.get("username") or username, role=who.get("role")
            )
        except Unauthorized:
            state.update(
                reachable=True, message=f"the stored login for {url} is no longer valid: log in again",
                reason="not-logged-in",
            )
        except ConnectionFailed as exc:
            state.update(logged_in=True, message=exc.message, reason="manager-unreachable")
        except DeployError as exc:
            state.update(message=exc.message, reason=exc.reason or "manager-error")
        finally:
            client.close()
        return state

    def login(self, url: str, username: str, password: str) -> dict[str, Any]:
        """Log in to a manager and store the token server-side; the new status."""
        url = url.strip().rstrip("/")
        client = ManagerClient(url, None, timeout=self.request_timeout, need_token=False)
        try:
            answer = client.login(username, password)
        finally:
            client.close()
        config.save(url, answer["token"], username, directory=Path(self.config_dir))
        if self.manager_url and self.manager_url.rstrip("/") != url:
            # The user chose another manager in the form: follow it for this server's lifetime.
            self.manager_url = url
        self.log.info("jupyter-deploy: logged in to %s as %s", url, username)
        return self.status()

    def logout(self) -> dict[str, Any]:
        """Forget the stored login; the new status."""
        config.clear(Path(self.config_dir))
        with self._lock:
            self._docs_tokens.clear()
        return self.status()

    # services
    def services(self) -> list[dict[str, Any]]:
        """Every service with its versions."""

        def fetch(client: ManagerClient) -> list[dict[str, Any]]:
            return [client.service(item["name"]) for item in client.services()]

        return self.call(fetch)

    def docs_link(self, name: str) -> str:
        """The service's docs page URL, authorized with an invoke token of that service only."""
        url, _, _ = self.login_state()
        key = (url or "", name)
        with self._lock:
            cached = self._docs_tokens.get(key)
        if cached is not None and not self._still_valid(url or "", cached[0], name):
            cached = None
        if cached is None or cached[1] - time.time() < 600:
            expires_in = self.docs_token_hours * 3600.0

            def make(client: ManagerClient) -> str:
                client.service(name)  # a clear 404 for an unknown service before making a token
                return client.create_token(service=name, expires_in=expires_in, note="JupyterLab docs tab")["token"]

            cached = (self.call(make), time.time() + expires_in)
            with self._lock:
                self._docs_tokens[key] = cached
        return f"{self.browser_url(url or '')}/services/{name}/docs#token={cached[0]}"

    def forget_docs_token(self, name: str) -> None:
        """Drop a service's cached docs token (the manager revokes it when the service is deleted)."""
        with self._lock:
            for key in [k for k in self._docs_tokens if k[1] == name]:
                del self._docs_tokens[key]

    def _still_valid(self, url: str, token: str, name: str) -> bool:
        """Whether a cached invoke token still works (it may have been revoked from the dashboard or CLI)."""
        probe = ManagerClient(url, token, timeout=self.request_timeout)
        try:
            return probe.whoami().get("service") == name
        except DeployError:
            return False
        finally:
            probe.close()
