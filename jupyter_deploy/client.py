"""The client SDK: every HTTP call to the manager goes through ``ManagerClient``."""

from __future__ import annotations

import json
import os
from typing import Any, Iterator
from urllib.parse import quote

import requests

from jupyter_deploy_contract import read_error

from . import config
from .bundle import Bundle
from .errors import ConnectionFailed, DeployError, TimedOut, error_for_status

DEFAULT_TIMEOUT = 60.0
"""Seconds a request (a call to a service included) may take before this client gives up on it."""
TIMEOUT_ENV = "JUPYTER_DEPLOY_TIMEOUT"
"""Environment variable that sets the default timeout, in seconds."""
LONG_TIMEOUT = 300.0
"""Seconds allowed, at least, to uploads and to promote, rollback, stop, start and delete, which wait for runners."""
EVENTS_TIMEOUT = (10.0, 900.0)
"""Connect and read timeouts of a deploy's event stream, which is quiet while a layer builds."""
FOLLOW_CONNECT_TIMEOUT = 10.0
"""Connect timeout of a followed log (which may then be quiet for as long as the service is)."""
_TIMEOUT_HINT = f"timeout=SECONDS on connect() or ManagerClient, or ${TIMEOUT_ENV}"


def default_timeout() -> float:
    """``$JUPYTER_DEPLOY_TIMEOUT`` when it holds a number of seconds, else DEFAULT_TIMEOUT."""
    try:
        value = float(os.environ.get(TIMEOUT_ENV, ""))
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if value > 0 else DEFAULT_TIMEOUT


class ManagerClient:
    """Talks to one manager with one token; raises DeployError subclasses mapped from HTTP status."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float | None = None,
                 need_token: bool = True):
        self.url, self.token = config.resolve(url, token, need_token=need_token)
        self.timeout = timeout if timeout is not None else default_timeout()
        self._http = requests.Session()

    @property
    def long_timeout(self) -> float:
        """The timeout of requests that wait for runners or carry a bundle: the client's, or LONG_TIMEOUT if longer."""
        return max(self.timeout, LONG_TIMEOUT)

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if extra:
            headers.update(extra)
        return headers

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
        """Send a request; raise the matching DeployError on an error status or no answer."""
        kwargs.setdefault("timeout", self.timeout)
        url = f"{self.url}{path}"
        try:
            resp = self._http.request(method, url, headers=self._headers(headers), **kwargs)
        except requests.ConnectionError as exc:
            # ConnectTimeout lands here too: the manager could not be reached at all.
            raise ConnectionFailed(f"cannot reach the manager at {self.url}: is it running? ({exc.__class__.__name__})") from exc
        except requests.Timeout as exc:
            # The manager took the request and may still be on it (a long call, a slow build): say whose limit it was.
            timeout = kwargs["timeout"]
            seconds = timeout[-1] if isinstance(timeout, tuple) else timeout
            raise TimedOut(
                f"no answer from {self.url}{path.split('?', 1)[0]} within {seconds:g} s (the client's timeout, "
                f"set with {_TIMEOUT_HINT}); the request may still be running there",
                reason="client-timeout",
            ) from exc
        if resp.status_code >= 400:
            raise self._error(resp)
        return resp

    @staticmethod
    def _error(resp: requests.Response) -> DeployError:
        try:
            body = resp.json()
            message, reason = read_error(body, resp.reason)
        except ValueError:
            body, message, reason = None, (resp.text.strip() or resp.reason), None
        return error_for_status(resp.status_code, message, reason, detail=body)

    # auth
    def login(self, username: str, password: str) -> dict[str, Any]:
        """Exchange a password for a token (does not store it)."""
        return self.request("POST", "/api/login", json={"username": username, "password": password}).json()

    def whoami(self) -> dict[str, Any]:
        """Who the token belongs to and its scope."""
        return self.request("GET", "/api/whoami").json()

    def health(self) -> dict[str, Any]:
        """The manager's health answer."""
        return self.request("GET", "/api/health").json()

    # services
    def services(self) -> list[dict[str, Any]]:
        """Every service with its main version's status."""
        return self.request("GET", "/api/services").json()["services"]

    def service(self, name: str) -> dict[str, Any]:
        """One service: versions, entrypoints, sample, requirements."""
        return self.request("GET", f"/api/services/{name}").json()

    def upload(self, name: str, bundle: Bundle) -> dict[str, Any]:
        """Upload a bundle; the manager answers at once and builds in the background."""
        return self.request(
            "POST",
            f"/api/services/{name}/versions",
            data=bundle.data,
            headers={"Content-Type": "application/x-tar", "X-Bundle-SHA256": bundle.sha256},
            timeout=self.long_timeout,
        ).json()

    def events(self, name: str, version: str, since: int = 0) -> Iterator[dict[str, Any]]:
        """Follow a deploy's progress events until it finishes (resuming after a dropped stream)."""
        seq = since
        while True:
            resp = self.request(
                "GET",
                f"/api/services/{name}/versions/{version}/events",
                params={"follow": 1, "since": seq},
                stream=True,
                timeout=EVENTS_TIMEOUT,
            )
            finished = False
            try:
                for line in resp.iter_lines():
                    if not line:
                        continue
                    event = json.loads(line)
                    seq = event.get("seq", seq) + 1
                    yield event
                    if event.get("kind") == "result":
                        finished = True
                        return
            except requests.RequestException:
                pass
            finally:
                resp.close()
            if finished:
                return

    def logs(self, name: str, tail: int = 200, version: str | None = None) -> str:
        """The last lines of a service's log."""
        params: dict[str, Any] = {"tail": tail}
        if version:
            params["version"] = version
        return self.request("GET", f"/api/services/{name}/logs", params=params).text

    def follow_logs(self, name: str, tail: int = 200, version: str | None = None) -> Iterator[str]:
        """The last lines of a service's log, then new lines as they are written (until closed)."""
        params: dict[str, Any] = {"tail": tail, "follow": 1}
        if version:
            params["version"] = version
        resp = self.request("GET", f"/api/services/{name}/logs", params=params, stream=True,
                            timeout=(FOLLOW_CONNECT_TIMEOUT, None))
        try:
            yield from resp.iter_lines(decode_unicode=True)
        finally:
            resp.close()

    def promote(self, name: str, version: str) -> dict[str, Any]:
        """Make a version main (zero downtime: it must pass its health check first)."""
        return self.request("POST", f"/api/services/{name}/promote", json={"version": version}, timeout=self.long_timeout).json()

    def rollback(self, name: str) -> dict[str, Any]:
        """Make the previous main version main again."""
        return self.request("POST", f"/api/services/{name}/rollback", timeout=self.long_timeout).json()

    def act(self, name: str, action: str, version: str | None = None) -> dict[str, Any]:
        """Stop, start or restart a service (every running version) or one version of it."""
        if action not in ("stop", "start", "restart"):
            raise ValueError(f"unknown action {action!r}: use stop, start or restart")
        where = f"/api/services/{name}/versions/{version}" if version else f"/api/services/{name}"
        return self.request("POST", f"{where}/{action}", timeout=self.long_timeout).json()

    def delete_version(self, name: str, version: str) -> dict[str, Any]:
        """Stop and remove one version of a service (not its main version)."""
        return self.request("DELETE", f"/api/services/{name}/versions/{version}", timeout=self.long_timeout).json()

    def delete(self, name: str, keep_images: bool = False) -> None:
        """Stop and remove a service."""
        self.request("DELETE", f"/api/services/{name}", params={"keep_images": int(keep_images)}, timeout=self.long_timeout)

    def events_log(self, service: str | None = None) -> list[dict[str, Any]]:
        """Recorded events, newest first."""
        params = {"service": service} if service else {}
        return self.request("GET", "/api/events", params=params).json()["events"]

    # tokens
    def create_token(
        self, service: str | None = None, scope: str | None = None, expires_in: float | None = None, note: str | None = None
    ) -> dict[str, Any]:
        """A new token: invoke for ``service`` by default, else ``scope``."""
        body: dict[str, Any] = {"scope": scope or ("invoke" if service else "deploy")}
        if service:
            body["service"] = service
        if expires_in:
            body["expires_in"] = expires_in
        if note:
            body["note"] = note
        return self.request("POST", "/api/tokens", json=body).json()

    def tokens(self) -> list[dict[str, Any]]:
        """Tokens visible to the caller (no secrets)."""
        return self.request("GET", "/api/tokens").json()["tokens"]

    def revoke(self, token_id: str) -> None:
        """Revoke a token by id."""
        self.request("DELETE", f"/api/tokens/{token_id}")

    # secrets
    def set_secret(self, name: str, value: str) -> dict[str, Any]:
        """Set a secret (encrypted by the manager); running versions using it restart with the new value."""
        return self.request("PUT", f"/api/secrets/{quote(name, safe='')}", json={"value": value}, timeout=900).json()

    def secrets(self) -> list[dict[str, Any]]:
        """Every secret's name, times and the versions that use it (never a value)."""
        return self.request("GET", "/api/secrets").json()["secrets"]

    def delete_secret(self, name: str, force: bool = False) -> dict[str, Any]:
        """Remove a secret; ``force`` even while versions use it."""
        return self.request("DELETE", f"/api/secrets/{quote(name, safe='')}", params={"force": int(force)}).json()

    # users
    def users(self) -> list[dict[str, Any]]:
        """Every user with role and creation time (admins only)."""
        return self.request("GET", "/api/users").json()["users"]

    def add_user(self, username: str, password: str, role: str = "deployer") -> dict[str, Any]:
        """Create a user of role admin, deployer or viewer (admins only); the new user's record."""
        body = {"username": username, "password": password, "role": role}
        return self.request("POST", "/api/users", json=body).json()

    def remove_user(self, username: str) -> None:
        """Delete a user and revoke all their tokens (admins only)."""
        self.request("DELETE", f"/api/users/{quote(username, safe='')}")

    def set_password(self, username: str, password: str) -> None:
        """Set a user's password (admins for anyone, every user for themself)."""
        self.request("POST", f"/api/users/{quote(username, safe='')}/password", json={"password": password})

    # invoking
    def invoke_raw(self, name: str, entrypoint: str, body: bytes | str) -> Any:
        """POST an already-encoded JSON body to an entrypoint; return the decoded answer."""
        resp = self.request(
            "POST", f"/services/{name}/{entrypoint}", data=body, headers={"Content-Type": "application/json"}
        )
        return resp.json()


def login(url: str, username: str = "admin", password: str | None = None) -> dict[str, Any]:
    """Log in to a manager and store the token in the config dir (mode 0600)."""
    if password is None:
        import getpass

        password = getpass.getpass(f"Password for {username} at {url}: ")
    client = ManagerClient(url, token=None, need_token=False)
    try:
        answer = client.login(username, password)
    finally:
        client.close()
    path = config.save(client.url, answer["token"], username)
    return {"url": client.url, "username": username, "scope": answer.get("scope"), "config": str(path)}


def set_secret(name: str, value: str | None = None, url: str | None = None, token: str | None = None) -> dict[str, Any]:
    """Set a secret on the manager (asking for the value, unechoed, when none is given); never print its value."""
    if value is None:
        import getpass

        value = getpass.getpass(f"Value of secret {name} (not shown): ")
    client = ManagerClient(url, token)
    try:
        return client.set_secret(name, value)
    finally:
        client.close()
