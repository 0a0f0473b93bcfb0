"""Helpers for the capture tests: code run as a notebook cell runs, pins, bundles loaded in a fresh interpreter."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any


def notebook(source: str, **names: Any) -> dict[str, Any]:
    """Run ``source`` the way a notebook cell runs: in a namespace called ``__main__``."""
    namespace: dict[str, Any] = {"__name__": "__main__", **names}
    exec(compile(textwrap.dedent(source), "<notebook>", "exec"), namespace)
    return namespace


def pin(dist: str) -> str:
    """``name==version`` as installed here."""
    return f"{metadata.metadata(dist)['Name']}=={metadata.version(dist)}"


def run_python(script: str, *args: str, cwd: Path) -> str:
    """Run a script in a fresh interpreter that cannot see any test-only path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


# Loads a bundle's payload in a process where neither the notebook nor its
# helper files exist, and calls an entrypoint with JSON arguments.
LOADER = textwrap.dedent(
    """
    import importlib.util, json, sys
    import cloudpickle
    from jupyter_deploy.bundle import extract

    bundle, dest, entry, kwargs, forbidden = sys.argv[1:6]
    extract(bundle, dest)
    for name in json.loads(forbidden):
        assert importlib.util.find_spec(name) is None, f"{name} should not be importable here"
    with open(dest + "/payload.pkl", "rb") as fh:
        entrypoints = cloudpickle.loads(fh.read())["entrypoints"]
    kwargs = json.loads(kwargs)
    if "data" in kwargs and isinstance(kwargs["data"], dict):
        import pandas as pd
        kwargs["data"] = pd.DataFrame(kwargs["data"])
    print(json.dumps(entrypoints[entry](**kwargs)))
    """
)


def call_in_fresh_process(tmp_path: Path, bundle_data: bytes, entry: str, kwargs: dict, forbidden: list[str]) -> Any:
    """The result of ``entry(**kwargs)`` after loading the bundle in a new interpreter."""
    service = tmp_path / f"service-{uuid.uuid4().hex[:8]}"
    service.mkdir()
    (service / "bundle.tar").write_bytes(bundle_data)
    out = run_python(
        LOADER,
        str(service / "bundle.tar"),
        str(service / "extracted"),
        entry,
        json.dumps(kwargs),
        json.dumps(forbidden),
        cwd=service,
    )
    return json.loads(out)
