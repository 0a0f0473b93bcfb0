"""The jupyter-deploy manager: builds captured notebook models into services and serves them."""

from __future__ import annotations

__version__ = "0.1.0"
