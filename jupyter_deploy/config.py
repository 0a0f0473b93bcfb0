"""Where the client finds the manager URL and its token: arguments, environment, then the stored login."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import ConfigError

CREDENTIALS = "credentials.json"


def config_dir() -> Path:
    """``$JUPYTER_DEPLOY_CONFIG_DIR``, else ``~/.config/jupyter-deploy``."""
    env = os.environ.get("JUPYTER_DEPLOY_CONFIG_DIR")
    return Path(env).expanduser() if env else Path.home() / ".config" / "jupyter-deploy"


def load(directory: Path | None = None) -> dict[str, Any]:
    """The stored login, or an empty dict."""
    path = (directory or config_dir()) / CREDENTIALS
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(url: str, token: str, username: str | None, directory: Path | None = None) -> Path:
    """Store a login in a file only its owner can read."""
    directory = directory or config_dir()
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / CREDENTIALS
    # Create with 0600 from the start so the token is never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url.rstrip("/"), "token": token, "username": username}, fh)
    os.chmod(path, 0o600)
    return path


def clear(directory: Path | None = None) -> bool:
    """Forget the stored login; whether there was one."""
    path = (directory or config_dir()) / CREDENTIALS
    if path.exists():
        path.unlink()
        return True
    return False


def resolve(url: str | None = None, token: str | None = None, need_token: bool = True) -> tuple[str, str | None]:
    """Manager URL and token: explicit arguments, then JUPYTER_DEPLOY_URL/_TOKEN, then the stored login."""
    stored = load()
    url = url or os.environ.get("JUPYTER_DEPLOY_URL") or stored.get("url")
    token = token or os.environ.get("JUPYTER_DEPLOY_TOKEN") or stored.get("token")
    if not url:
        raise ConfigError(
            "no manager configured: run `jupyter-deploy login URL` or `jupyter_deploy.login(url, username, password)`, "
            "or set JUPYTER_DEPLOY_URL",
            reason="not-logged-in",
        )
    if need_token and not token:
        raise ConfigError(
            f"not logged in to {url}: run `jupyter-deploy login {url}` or set JUPYTER_DEPLOY_TOKEN",
            reason="not-logged-in",
        )
    return url.rstrip("/"), token
