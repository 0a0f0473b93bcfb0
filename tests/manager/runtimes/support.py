"""What the runtime tests share: a real bundle of a numpy function, and waiting on a runner."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import cloudpickle
import numpy
import tornado

from jupyter_deploy import bundle
from jupyter_deploy_manager.runtimes.base import Lock, VersionSpec, host_python
from tests.harness import wait_for  # noqa: F401  (the runtime tests import it from here)

MODEL = '''
import numpy as np

def predict(x: list) -> float:
    """Sum of squares."""
    return float(np.square(np.asarray(x, dtype=float)).sum())
'''


HOG = '''
def hog(mb: int) -> int:
    """Hold ``mb`` MiB of touched memory, then answer how much."""
    block = b"x" * (mb * 2**20)
    return len(block) // 2**20
'''


def make_spec(
    root: Path, service: str, version: str, python: str | None = None, cloudpickle_version: str | None = None,
    hog: bool = False, extra_requirements: tuple[str, ...] = (),
) -> VersionSpec:
    """A real bundle (numpy function pickled by value) extracted under root, with the host's pins.

    With ``hog`` it serves ``hog(mb)`` too, which allocates that much memory.
    """
    # A module name that is not importable makes cloudpickle ship the function by value.
    namespace: dict[str, Any] = {"__name__": "jd_test_model"}
    exec(MODEL + (HOG if hog else ""), namespace)
    functions = {"predict": namespace["predict"], **({"hog": namespace["hog"]} if hog else {})}
    payload = cloudpickle.dumps({"entrypoints": functions}, protocol=5)
    py = python or host_python()
    reqs = [f"numpy=={numpy.__version__}", f"cloudpickle=={cloudpickle.__version__}", f"tornado=={tornado.version}",
            *extra_requirements]
    manifest = {
        "name": service, "version": version, "created": "2026-01-01T00:00:00Z", "python": py,
        "python_full": sys.version.split()[0], "cloudpickle": cloudpickle_version or cloudpickle.__version__,
        "entrypoints": [{
            "name": "predict", "doc": "Sum of squares.", "signature": "(x: list) -> float",
            "parameters": [{"name": "x", "kind": "POSITIONAL_OR_KEYWORD", "annotation": "list", "type": "list",
                            "required": True}],
            "returns": "float",
        }] + ([{
            "name": "hog", "doc": "", "signature": "(mb: int) -> int",
            "parameters": [{"name": "mb", "kind": "POSITIONAL_OR_KEYWORD", "annotation": "int", "type": "int",
                            "required": True}],
            "returns": "int",
        }] if hog else []),
        "requirements": reqs, "inferred": {"direct": reqs[:1], "modules": {"numpy": "numpy"}, "explicit": []},
        "sample": None,
    }
    packed = bundle.pack(manifest, payload)
    dest = root / "bundles" / f"{service}-{version}"
    extracted = bundle.extract(packed.data, dest)
    return VersionSpec(service, version, dest, extracted, Lock(py, tuple(reqs)))


def wait_healthy(url: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll GET /healthz until 200 or the deadline."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return json.loads(resp.read())
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"{url} not healthy within {timeout} s: {last}")


def post(url: str, body: dict[str, Any]) -> Any:
    """POST JSON, return the decoded answer."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())
