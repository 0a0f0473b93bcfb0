"""Requirement inference: module -> distribution mapping, pins, closure, explicit overrides."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jupyter_deploy.errors import CaptureError
from jupyter_deploy.requirements import infer_requirements, packages_distributions


def pin(dist: str) -> str:
    """``name==version`` as installed here."""
    return f"{metadata.metadata(dist)['Name']}=={metadata.version(dist)}"


def installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def names(requirements: list[str]) -> set[str]:
    return {r.split("==")[0].lower() for r in requirements}


def test_sklearn_modules_pin_the_full_closure() -> None:
    requirements, inferred = infer_requirements({"sklearn.ensemble._forest", "sklearn.tree._tree", "numpy._core"}, None)
    for dist in ("scikit-learn", "numpy", "scipy", "joblib", "threadpoolctl", "cloudpickle"):
        assert pin(dist) in requirements
    assert inferred == {
        "direct": sorted([pin("numpy"), pin("scikit-learn")]),
        "modules": {"numpy": "numpy", "sklearn": "scikit-learn"},
        "explicit": [],
    }
    assert requirements == sorted(requirements, key=str.lower)
    assert len(requirements) == len(names(requirements))


def test_stdlib_main_builtins_and_unknown_modules_are_skipped() -> None:
    requirements, inferred = infer_requirements(
        {"__main__", "builtins", "copyreg", "collections.abc", "_thread", "my_local_helpers", "json.decoder"}, []
    )
    assert requirements == [pin("cloudpickle")]
    assert inferred == {"direct": [], "modules": {}, "explicit": []}


def test_extras_and_foreign_markers_are_not_followed() -> None:
    requirements, _ = infer_requirements({"pandas.core.frame"}, None)
    assert pin("pandas") in requirements
    assert pin("numpy") in requirements
    assert pin("python-dateutil") in requirements
    # pytest is installed here but only reachable through pandas[test]; tzdata only on Windows.
    assert "pytest" not in names(requirements)
    if sys.platform not in ("win32", "emscripten") and not installed("tzdata"):
        assert "tzdata" not in names(requirements)


@pytest.mark.skipif(not installed("ipython"), reason="IPython not installed")
def test_kernel_machinery_is_not_a_requirement() -> None:
    modules = {
        "IPython.core.display_functions",
        "ipykernel.zmqshell",
        "traitlets.traitlets",
        "jupyter_client.session",
        "jupyter_core.paths",
        "comm.base_comm",
        "jupyter_deploy.capture",
        "numpy",
    }
    requirements, inferred = infer_requirements(modules, None)
    assert not names(requirements) & {"ipython", "ipykernel", "traitlets", "jupyter-client", "jupyter_client",
                                      "jupyter-core", "jupyter_core", "comm", "jupyter-deploy", "jupyter_deploy"}
    assert pin("numpy") in requirements
    assert inferred["modules"] == {"numpy": "numpy"}

    # Asked for explicitly, it is kept and pinned.
    requirements, inferred = infer_requirements(modules, ["ipython"])
    assert pin("ipython") in requirements
    assert inferred["explicit"] == [pin("ipython")]


def test_explicit_requirements_add_and_override_by_canonical_name() -> None:
    requirements, inferred = infer_requirements(
        {"sklearn"},
        ["Scikit_Learn>=1.0", "xgboost==2.0.0", "requests>=2", "surely-not-installed-pkg", "NumPy"],
    )
    assert "Scikit_Learn>=1.0" in requirements
    assert pin("scikit-learn") not in requirements
    assert "xgboost==2.0.0" in requirements
    assert "requests>=2" in requirements
    assert pin("requests") not in requirements
    assert "surely-not-installed-pkg" in requirements
    assert pin("numpy") in requirements  # a bare installed name is pinned to the kernel's version
    assert sum(1 for r in requirements if r.lower().startswith("numpy")) == 1
    assert inferred["direct"] == [pin("scikit-learn")]
    assert inferred["explicit"] == [
        "Scikit_Learn>=1.0",
        "xgboost==2.0.0",
        "requests>=2",
        "surely-not-installed-pkg",
        pin("numpy"),
    ]


def test_explicit_bare_name_keeps_extras_and_markers() -> None:
    requirements, _ = infer_requirements(set(), ['requests[socks]; python_version >= "3"'])
    [entry] = [r for r in requirements if r.startswith("requests")]
    assert entry.startswith(f"requests[socks]=={metadata.version('requests')}")
    assert 'python_version >= "3"' in entry


def test_cloudpickle_is_always_pinned_to_the_kernel_version() -> None:
    requirements, _ = infer_requirements(set(), ["cloudpickle"])
    assert requirements == [pin("cloudpickle")]
    with pytest.raises(CaptureError, match="cloudpickle"):
        infer_requirements(set(), ["cloudpickle<1"])


@pytest.mark.parametrize("bad", ["numpy==", "not a requirement!", ""])
def test_invalid_explicit_requirement(bad: str) -> None:
    with pytest.raises(CaptureError, match="requirement"):
        infer_requirements(set(), [bad])


def test_packages_distributions_is_cached() -> None:
    assert packages_distributions() is packages_distributions()
    assert "scikit-learn" in packages_distributions()["sklearn"]


@pytest.mark.skipif(not installed("ipython"), reason="IPython not installed")
def test_capture_inside_an_ipython_shell(tmp_path: Path) -> None:
    """Functions defined in a real IPython shell: IPython objects are not requirements, the shell is refused."""
    cell = textwrap.dedent(
        """
        import numpy as np
        from IPython.display import display
        from jupyter_deploy.capture import capture

        WEIGHTS = np.array([1.0, 2.0])

        def weigh(values: list, show: bool = False) -> float:
            if show:
                display(values)
            return float(np.dot(WEIGHTS, values))

        bundle = capture([weigh], name="shell")

        def notebook_only(x):
            return get_ipython().user_ns[x]

        try:
            capture([notebook_only], name="shell")
        except Exception as exc:
            shell_error = f"{type(exc).__name__}: {exc}"
        """
    )
    script = textwrap.dedent(
        f"""
        import json
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        result = shell.run_cell({cell!r})
        result.raise_error()
        print(json.dumps({{"manifest": shell.user_ns["bundle"].manifest, "error": shell.user_ns["shell_error"]}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    manifest = out["manifest"]
    found = names(manifest["requirements"])
    assert pin("numpy") in manifest["requirements"]
    assert not found & {"ipython", "ipykernel", "traitlets", "jupyter-deploy", "jupyter_deploy"}
    assert manifest["entrypoints"][0]["signature"] == "(values: list, show: bool = False) -> float"
    assert out["error"].startswith("CaptureError: cannot capture entrypoint 'notebook_only': it reaches the IPython shell")
