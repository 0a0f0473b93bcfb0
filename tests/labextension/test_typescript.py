"""The JupyterLab sidebar's TypeScript unit tests (labextension/test/), run by ``jlpm test`` with node's test runner."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

LABEXTENSION = Path(__file__).resolve().parents[2] / "labextension"
REQUIRE = os.environ.get("JUPYTER_DEPLOY_REQUIRE_DOCKER") == "1"


def unavailable(reason: str) -> None:
    """Fail under CI's JUPYTER_DEPLOY_REQUIRE_DOCKER=1, else skip."""
    if REQUIRE:
        pytest.fail(f"{reason} (JUPYTER_DEPLOY_REQUIRE_DOCKER=1 requires it)")
    pytest.skip(reason)


def jlpm_command() -> list[str] | None:
    """JupyterLab's pinned yarn, through its ``jlpm`` entry point, run by this Python."""
    try:
        found = list(entry_points(group="console_scripts", name="jlpm"))
    except TypeError:  # Python 3.9: entry_points() is a dict of groups
        found = [ep for ep in entry_points().get("console_scripts", []) if ep.name == "jlpm"]
    if not found:
        return None
    module, _, attr = found[0].value.partition(":")
    code = f"import sys; sys.argv[0] = 'jlpm'; from {module} import {attr} as main; sys.exit(main())"
    return [sys.executable, "-c", code]


def run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=LABEXTENSION, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def test_typescript_unit_tests() -> None:
    if shutil.which("node") is None:
        unavailable("Node.js is not installed")
    jlpm = jlpm_command()
    if jlpm is None:
        unavailable("jlpm is not installed (it comes with jupyterlab)")
    if not (LABEXTENSION / "node_modules" / "typescript").is_dir():
        install = run([*jlpm, "install"], timeout=900)
        assert install.returncode == 0, f"jlpm install failed:\n{install.stdout[-10000:]}\n{install.stderr[-10000:]}"

    result = run([*jlpm, "test"], timeout=600)
    output = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, f"jlpm test failed:\n{output[-20000:]}"
    # node --test's summary: tests ran, and none failed.
    passed = re.search(r"^# pass (\d+)$", output, re.MULTILINE)
    assert passed and int(passed.group(1)) > 0, f"no TypeScript test ran:\n{output[-5000:]}"
    assert re.search(r"^# fail 0$", output, re.MULTILINE), output[-20000:]
