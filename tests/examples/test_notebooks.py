"""The example notebooks, executed in real kernels against a real manager on both runtimes."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

NOTEBOOKS = Path(__file__).resolve().parents[2] / "examples" / "notebooks"


def run(name: str, cwd: Path) -> nbformat.NotebookNode:
    """Execute a notebook; nbclient raises on any failing cell."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def outputs(cell) -> str:
    """All text a cell showed."""
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        data = out.get("data", {})
        parts.append(data.get("text/plain", ""))
        parts.append(data.get("text/html", ""))
    return "\n".join(parts)


def expected_predictions() -> list[int]:
    """What the notebook's model predicts for the second notebook's rows, computed here independently."""
    iris = load_iris(as_frame=True)
    X_train, _, y_train, _ = train_test_split(iris.data, iris.target, random_state=0)
    model = RandomForestClassifier(n_estimators=50, random_state=0).fit(X_train, y_train)
    return model.predict(iris.data.sample(10, random_state=1)).tolist()


@pytest.mark.parametrize("runtime", ["process", "docker"])
def test_train_deploy_then_call_from_another_notebook(runtime, manager_factory, tmp_path, monkeypatch, request):
    if runtime == "docker":
        request.getfixturevalue("docker_client")
    manager = manager_factory(runtime)
    monkeypatch.setenv("JUPYTER_DEPLOY_URL", manager.url)
    monkeypatch.setenv("JUPYTER_DEPLOY_ADMIN_PASSWORD", manager.password)
    monkeypatch.setenv("JUPYTER_DEPLOY_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("JUPYTER_DEPLOY_TOKEN", raising=False)

    first = run("01_train_and_deploy.ipynb", tmp_path)
    text = "\n".join(outputs(c) for c in first.cells if c.cell_type == "code")
    # Progress, then the card with the endpoint and its token.
    assert "Deploying iris" in text and "health check" in text
    assert f"{manager.url}/services/iris/predict" in text
    assert "jupyter-deploy-card" in text and "curl -X POST" in text
    assert "service: [" in text
    service_line = next(l for l in text.splitlines() if l.startswith("service:"))
    local_line = next(l for l in text.splitlines() if l.startswith("local:"))
    assert ast.literal_eval(service_line.split(":", 1)[1].strip()) == ast.literal_eval(local_line.split(":", 1)[1].strip())

    second = run("02_call_from_another_notebook.ipynb", tmp_path)
    cells = [c for c in second.cells if c.cell_type == "code"]
    assert "Predict the iris class" in outputs(cells[1])
    printed = outputs(cells[2]).strip().splitlines()[-1]
    assert ast.literal_eval(printed) == expected_predictions()
    names = ast.literal_eval(outputs(cells[3]).strip().splitlines()[-1])
    assert set(names) <= {"setosa", "versicolor", "virginica"} and len(names) == 3
