"""Tracing: local modules by value, installed ones by reference, a fitted model's features."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import cloudpickle
import pytest

from jupyter_deploy.capture import capture

from .capturing import call_in_fresh_process, notebook, pin


# --- local helper modules and installed packages ---------------------------


@pytest.fixture
def helper_module(tmp_path: Path):
    """A helper file on sys.path, as next to a notebook; removed afterwards."""
    name = f"helpers_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "notebook_dir"
    folder.mkdir()
    (folder / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import numpy as np

            SCALE = 3


            class Box:
                def __init__(self, value):
                    self.value = value


            def scale(values):
                return np.asarray(values) * SCALE
            """
        )
    )
    sys.path.insert(0, str(folder))
    try:
        yield name
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(name, None)


def test_local_helper_module_is_captured_by_value(helper_module: str, tmp_path: Path) -> None:
    before = cloudpickle.list_registry_pickle_by_value()
    ns = notebook(
        f"""
        import {helper_module} as helpers
        from {helper_module} import Box, scale

        def run(values: list) -> list:
            return (scale(values) + helpers.SCALE).tolist() + [Box(7).value]
        """
    )
    bundle = capture([ns["run"]], name="helpers")
    assert cloudpickle.list_registry_pickle_by_value() == before
    requirements = bundle.manifest["requirements"]
    assert pin("numpy") in requirements
    assert not any(helper_module in r for r in requirements)
    got = call_in_fresh_process(tmp_path, bundle.data, "run", {"values": [1, 2]}, forbidden=[helper_module])
    assert got == [6, 9, 7]


def test_installed_packages_are_referenced_not_copied() -> None:
    ns = notebook(
        """
        from sklearn.metrics import accuracy_score

        def accuracy(truth: list, predicted: list) -> float:
            return float(accuracy_score(truth, predicted))
        """
    )
    before = cloudpickle.list_registry_pickle_by_value()
    bundle = capture([ns["accuracy"]], name="metrics")
    assert cloudpickle.list_registry_pickle_by_value() == before
    # By reference the payload names the function; by value it would carry sklearn's code.
    assert bundle.manifest["payload"]["size"] < 4000
    assert pin("scikit-learn") in bundle.manifest["requirements"]
    assert bundle.manifest["inferred"]["modules"]["sklearn"] == "scikit-learn"


# --- model features ----------------------------------------------------------


FEATURES_NOTEBOOK = """
import numpy as np
import pandas as pd
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

iris = load_iris(as_frame=True)
X, y = iris.data, iris.target
pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
array_model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X.to_numpy(), y)
unfitted = make_pipeline(StandardScaler(), LogisticRegression())
SCALE = 2.0

def predict(data: pd.DataFrame) -> list:
    return pipe.predict(data).tolist()

def predict_array(x: np.ndarray) -> list:
    return array_model.predict(x).tolist()

def double(x: float) -> float:
    return x * SCALE

def untrained(x: float) -> str:
    return repr(unfitted)

def make_closure(model):
    def closed(x: np.ndarray) -> list:
        return model.predict(x).tolist()
    return closed

closed = make_closure(array_model)
"""


def test_features_of_a_pipeline_fitted_on_a_dataframe() -> None:
    ns = notebook(FEATURES_NOTEBOOK)
    manifest = capture([ns["double"], ns["predict"]], name="feat", sample=ns["X"].head()).manifest
    assert manifest["features"] == {
        "names": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"],
        "n": 4,
        "source": "pipe",
    }


def test_features_of_a_model_fitted_on_an_array_have_no_names() -> None:
    ns = notebook(FEATURES_NOTEBOOK)
    manifest = capture([ns["predict_array"]], name="feat").manifest
    assert manifest["features"] == {"names": None, "n": 4, "source": "array_model"}
    # A closure variable is named too; the first model met wins.
    assert capture([ns["closed"]], name="feat").manifest["features"]["source"] == "model"
    assert capture([ns["predict_array"], ns["predict"]], name="feat").manifest["features"]["source"] == "array_model"


def test_no_fitted_model_no_features() -> None:
    ns = notebook(FEATURES_NOTEBOOK)
    assert "features" not in capture([ns["double"]], name="feat").manifest
    assert "features" not in capture([ns["untrained"]], name="feat").manifest
