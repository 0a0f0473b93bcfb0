"""The service runner: loads one bundle and serves its entrypoints over HTTP.

This package is the only place a user's pickle is ever loaded. It is copied
verbatim into images and process stages as the top-level package
``jupyter_deploy_runner`` and started with
``python -m jupyter_deploy_runner --bundle DIR [--host H] [--port P]``, so it
imports only the stdlib, tornado and cloudpickle (pandas and numpy lazily, when
the manifest needs them) and refers to its own modules with relative imports.
"""

from __future__ import annotations

from pathlib import Path

EXIT_REFUSED = 3
"""Exit status when the bundle cannot run here (version or checksum mismatch, bad bundle dir)."""

EXIT_LOAD_FAILED = 4
"""Exit status when the checks passed but unpickling the payload failed."""

TOP_LEVEL_NAME = "jupyter_deploy_runner"
"""The package name runtimes copy this directory to."""


def package_dir() -> Path:
    """The directory runtimes copy as ``jupyter_deploy_runner``."""
    return Path(__file__).resolve().parent
