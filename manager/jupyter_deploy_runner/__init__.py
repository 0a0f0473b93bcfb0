"""The service runner: loads one bundle and serves its entrypoints over HTTP.

This package is the only place a user's pickle is ever loaded. It is copied
verbatim, with the contract package ``jupyter_deploy_contract`` beside it, into
images and process stages and started with
``python -m jupyter_deploy_runner --bundle DIR [--host H] [--port P]``. It
imports only the stdlib, tornado, cloudpickle and the contract (pandas and
numpy lazily, when the manifest needs them), never ``jupyter_deploy`` or
``jupyter_deploy_manager`` (import-linter checks this, see pyproject.toml).
"""

from __future__ import annotations

EXIT_REFUSED = 3
"""Exit status when the bundle cannot run here (version or checksum mismatch, bad bundle dir)."""

EXIT_LOAD_FAILED = 4
"""Exit status when the checks passed but unpickling the payload failed."""

EXIT_OUT_OF_MEMORY = 5
"""Exit status after a MemoryError under ``--exit-on-memory-error`` (an address-space limit): restarted, reported
as out of memory."""
