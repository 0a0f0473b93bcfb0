"""``%%deploy`` in a real kernel: errors a user can act on, without a traceback wall."""

from __future__ import annotations

import json

import nbformat
import requests
from nbclient import NotebookClient


def run_cells(sources: list[str], env_dir) -> list:
    """Execute cells in a real kernel, keeping going after errors; return the cells."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(env_dir)}}).execute()
    return nb.cells


def errors(cell) -> list:
    """The error outputs of a cell."""
    return [o for o in cell.outputs if o.output_type == "error"]


def test_magic_errors_are_clear(manager, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DEPLOY_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.delenv("JUPYTER_DEPLOY_URL", raising=False)
    monkeypatch.delenv("JUPYTER_DEPLOY_TOKEN", raising=False)
    cells = run_cells([
        "%load_ext jupyter_deploy",
        "%%deploy nothing\nx = 1",
        "%%deploy svc --sample missing_var\ndef f(a):\n    return a",
        "%%deploy svc\ndef f(a):\n    return a",
        f"import jupyter_deploy\njupyter_deploy.login({manager.url!r}, 'admin', {manager.password!r})",
        "%%deploy Bad_Name\ndef f(a):\n    return a",
        "%%deploy echo --version 1.0.0 --monitor\ndef echo(a: int, b: str = 'x') -> list:\n    return [a, b]",
        "dep = _\nprint(dep.version, dep.status)\nprint(dep.connect().echo(3))",
    ], tmp_path)
    assert not errors(cells[0])
    (err,) = errors(cells[1])
    assert err.ename == "CaptureError" and "defines no public function" in err.evalue
    (err,) = errors(cells[2])
    assert "missing_var" in err.evalue
    (err,) = errors(cells[3])
    assert err.ename == "ConfigError" and "jupyter-deploy login" in err.evalue
    # A deploy error shows its message, not a Python traceback.
    assert not any("Traceback" in line or "File " in line for line in err.traceback)
    (err,) = errors(cells[5])
    assert "Bad_Name" in err.evalue
    assert not errors(cells[6]), cells[6].outputs
    assert "1.0.0 running" in cells[7].outputs[0].text
    assert "[3, 'x']" in cells[7].outputs[0].text
    # --monitor with no names keeps every entrypoint's calls.
    records = requests.get(f"{manager.url}/api/services/echo/monitor", headers=manager.headers()).json()["records"]
    assert [json.loads(r["request"]) for r in records] == [{"a": 3}]
