"""The three rooms keep to their imports: import-linter's contracts in pyproject.toml, run for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {
    "jupyter_deploy": REPO / "jupyter_deploy",
    "jupyter_deploy_contract": REPO / "jupyter_deploy_contract",
    "jupyter_deploy_manager": REPO / "manager" / "jupyter_deploy_manager",
    "jupyter_deploy_runner": REPO / "manager" / "jupyter_deploy_runner",
}
LINT_TIMEOUT = 300


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` on the packages found first under ``root`` with the project's contracts."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(root / "manager")]))
    script = Path(sys.executable).with_name("lint-imports")
    command = [str(script)] if script.exists() else ["lint-imports"]
    return subprocess.run([*command, "--no-cache", str(root / "pyproject.toml")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=LINT_TIMEOUT)


def test_every_room_keeps_its_contract() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


def _copy_tree(dest: Path) -> Path:
    for name, source in PACKAGES.items():
        target = dest / ("manager" if name in ("jupyter_deploy_manager", "jupyter_deploy_runner") else "") / name
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "labextension", "static"))
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_a_notebook_module_importing_the_manager_breaks_the_build(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    remote = root / "jupyter_deploy" / "remote.py"
    remote.write_text(remote.read_text() + "\nfrom jupyter_deploy_manager.runtimes import base  # noqa\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "jupyter_deploy.remote -> jupyter_deploy_manager.runtimes.base" in result.stdout


def test_a_runner_module_importing_the_manager_or_a_contract_importing_numpy_breaks_the_build(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    loader = root / "manager" / "jupyter_deploy_runner" / "loader.py"
    loader.write_text(loader.read_text() + "\nimport jupyter_deploy_manager.store  # noqa\n")
    contract = root / "jupyter_deploy_contract" / "__init__.py"
    contract.write_text(contract.read_text() + "\nimport numpy  # noqa\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "jupyter_deploy_runner.loader -> jupyter_deploy_manager.store" in result.stdout
    assert "jupyter_deploy_contract -> numpy" in result.stdout
