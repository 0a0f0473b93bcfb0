"""jupyter-deploy: deploy an in-memory notebook model as an authenticated HTTP service in one cell."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["deploy", "connect", "login", "logout", "panel", "set_secret", "Deployment", "DeployError",
           "load_ipython_extension"]

if TYPE_CHECKING:
    from .client import login, set_secret
    from .deployment import Deployment, deploy
    from .errors import DeployError
    from .panel import panel
    from .remote import connect

# Imported on first use so that `import jupyter_deploy` stays cheap (the manager imports the bundle module).
_LAZY = {
    "deploy": ("deployment", "deploy"),
    "Deployment": ("deployment", "Deployment"),
    "connect": ("remote", "connect"),
    "login": ("client", "login"),
    "set_secret": ("client", "set_secret"),
    "DeployError": ("errors", "DeployError"),
    "panel": ("panel", "panel"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'jupyter_deploy' has no attribute {name!r}")


def logout() -> bool:
    """Forget the stored login; whether there was one."""
    from .config import clear

    return clear()


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The jupyter-server extension (enabled on install by ``jupyter_server_config.d/jupyter_deploy.json``)."""
    return [{"module": "jupyter_deploy.serverext"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the built JupyterLab sidebar lives inside the package."""
    return [{"src": "labextension", "dest": "jupyter-deploy"}]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_deploy``: register ``%%deploy``."""
    from .magics import DeployMagics

    ipython.register_magics(DeployMagics)
