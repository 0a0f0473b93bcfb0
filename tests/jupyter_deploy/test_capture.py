"""Capture: validation, the manifest end to end, the payload in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest

from jupyter_deploy.bundle import read_manifest
from jupyter_deploy.capture import capture
from jupyter_deploy.errors import CaptureError
from jupyter_deploy_contract import read_bundle

from .capturing import call_in_fresh_process, notebook, pin, run_python

# --- the notebook scenario -------------------------------------------------

NOTEBOOK = '''
import json
import sys

import numpy as np
import pandas as pd
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from nb_helpers import add_ratio
from jupyter_deploy.capture import capture

iris = load_iris(as_frame=True)
X, y = iris.data, iris.target
clf = RandomForestClassifier(n_estimators=25, random_state=0).fit(X, y)

SPECIES = [str(name) for name in iris.target_names]
FEATURES = list(X.columns)


class Labeler:
    """Maps class codes to species names."""

    def __init__(self, names):
        self.names = names

    def __call__(self, codes):
        return [self.names[int(code)] for code in codes]


labeler = Labeler(SPECIES)
fill_missing = lambda frame: frame.fillna(frame.mean())


def prepare(data):
    return fill_missing(data[FEATURES])


def predict(data: pd.DataFrame) -> list:
    """Predict the iris species.

    Missing measurements are filled with the column means.
    """
    return labeler(clf.predict(prepare(data)))


def petal_ratio(data: pd.DataFrame, scale: float = 1.0) -> list[float]:
    return (add_ratio(prepare(data))["ratio"] * scale).tolist()


bundle = capture([predict, petal_ratio], name="iris", sample=X.head(10))
with open(sys.argv[1] + "/bundle.tar", "wb") as fh:
    fh.write(bundle.data)
with open(sys.argv[1] + "/expected.json", "w") as fh:
    json.dump({"X": X.to_dict("list"), "predict": predict(X), "petal_ratio": petal_ratio(X, scale=2.0)}, fh)
'''

NB_HELPERS = '''
import numpy as np


def add_ratio(frame):
    out = frame.copy()
    out["ratio"] = np.round(out["petal length (cm)"] / out["petal width (cm)"], 6)
    return out
'''


@pytest.fixture(scope="module")
def iris_capture(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the notebook as ``__main__`` in its own process, next to a helper file."""
    root = tmp_path_factory.mktemp("iris")
    nb = root / "nb"
    nb.mkdir()
    (nb / "notebook.py").write_text(NOTEBOOK)
    (nb / "nb_helpers.py").write_text(NB_HELPERS)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "notebook.py", str(root)], cwd=nb, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    data = (root / "bundle.tar").read_bytes()
    return {
        "root": root,
        "data": data,
        "manifest": read_manifest(data),
        "expected": json.loads((root / "expected.json").read_text()),
    }


def test_notebook_manifest_describes_entrypoints(iris_capture: dict[str, Any]) -> None:
    manifest = iris_capture["manifest"]
    assert manifest["format"] == 1
    assert manifest["name"] == "iris"
    assert manifest["version"] is None
    assert manifest["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert manifest["cloudpickle"] == cloudpickle.__version__
    assert manifest["created"].endswith("Z")

    predict, ratio = manifest["entrypoints"]
    assert predict["name"] == "predict"
    assert predict["doc"] == "Predict the iris species."
    assert predict["signature"] == "(data: pandas.DataFrame) -> list"
    assert predict["returns"] == "list"
    [data] = predict["parameters"]
    assert data["name"] == "data"
    assert data["kind"] == "POSITIONAL_OR_KEYWORD"
    assert data["type"] == "dataframe"
    assert data["required"] is True
    assert data["annotation"].startswith("pandas.") and data["annotation"].endswith("DataFrame")
    assert "default" not in data

    assert ratio["name"] == "petal_ratio"
    assert ratio["doc"] == ""
    assert ratio["signature"] == "(data: pandas.DataFrame, scale: float = 1.0) -> list[float]"
    assert ratio["returns"] == "list[float]"
    scale = ratio["parameters"][1]
    assert scale == {
        "name": "scale",
        "kind": "POSITIONAL_OR_KEYWORD",
        "annotation": "float",
        "type": "float",
        "required": False,
        "default": 1.0,
    }


def test_notebook_requirements_are_pinned_closure(iris_capture: dict[str, Any]) -> None:
    manifest = iris_capture["manifest"]
    requirements = manifest["requirements"]
    for dist in ("scikit-learn", "numpy", "scipy", "cloudpickle", "joblib", "threadpoolctl", "pandas"):
        assert pin(dist) in requirements
    names = {r.split("==")[0].lower() for r in requirements}
    assert not names & {"ipython", "ipykernel", "traitlets", "jupyter-deploy", "jupyter_deploy", "nb-helpers", "nb_helpers"}
    assert requirements == sorted(requirements, key=lambda r: r.split("==")[0].lower())
    inferred = manifest["inferred"]
    assert pin("scikit-learn") in inferred["direct"]
    assert inferred["modules"]["sklearn"] == "scikit-learn"
    assert "nb_helpers" not in inferred["modules"]
    assert inferred["explicit"] == []


def test_notebook_sample_and_payload_checksum(iris_capture: dict[str, Any]) -> None:
    manifest = read_bundle(iris_capture["data"])[0]
    sample = manifest["sample"]
    assert sample["kind"] == "dataframe"
    assert sample["columns"] == list(iris_capture["expected"]["X"])
    assert set(sample["dtypes"].values()) == {"float64"}
    assert len(sample["records"]) == 5
    assert sample["records"][0]["sepal length (cm)"] == 5.1


def test_notebook_payload_runs_in_a_fresh_process(iris_capture: dict[str, Any], tmp_path: Path) -> None:
    expected = iris_capture["expected"]
    got = call_in_fresh_process(
        tmp_path, iris_capture["data"], "predict", {"data": expected["X"]}, forbidden=["nb_helpers", "notebook"]
    )
    assert got == expected["predict"]
    assert set(got) <= {"setosa", "versicolor", "virginica"}
    got = call_in_fresh_process(
        tmp_path,
        iris_capture["data"],
        "petal_ratio",
        {"data": expected["X"], "scale": 2.0},
        forbidden=["nb_helpers", "notebook"],
    )
    assert got == pytest.approx(expected["petal_ratio"])


def test_capture_does_not_import_pandas_or_numpy(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from jupyter_deploy.capture import capture

        def add(a: int, b: int = 2) -> int:
            return a + b

        bundle = capture([add], name="add", sample={"a": 1})
        assert bundle.manifest["sample"] == {"kind": "json", "data": {"a": 1}}
        assert bundle.manifest["entrypoints"][0]["parameters"][0]["type"] == "int"
        print(sorted(m for m in ("pandas", "numpy") if m in sys.modules))
        """
    )
    assert run_python(script, cwd=tmp_path).strip() == "[]"


def test_dict_names_lambdas_and_the_payload_round_trips() -> None:
    ns = notebook(
        """
        OFFSET = 10

        class Accumulator:
            def __init__(self, start):
                self.total = start

            def add(self, value):
                self.total += value
                return self.total

        def make_adder(n):
            def adder(x: int) -> int:
                return x + n + OFFSET
            return adder

        def accumulate(values: list) -> int:
            acc = Accumulator(0)
            for value in values:
                acc.add(value)
            return acc.total
        """
    )
    bundle = capture(
        {"double": lambda x: x * 2, "add_five": ns["make_adder"](5), "accumulate": ns["accumulate"]},
        name="misc",
        version="7",
    )
    assert [e["name"] for e in bundle.manifest["entrypoints"]] == ["double", "add_five", "accumulate"]
    assert bundle.manifest["version"] == "7"
    double = bundle.manifest["entrypoints"][0]
    assert double["signature"] == "(x)" and double["parameters"][0]["type"] == "any"
    assert double["returns"] is None
    payload = _payload(bundle.data)
    entrypoints = cloudpickle.loads(payload)["entrypoints"]
    assert entrypoints["double"](4) == 8
    assert entrypoints["add_five"](1) == 16
    assert entrypoints["accumulate"]([1, 2, 3]) == 6


def _payload(data: bytes) -> bytes:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.extractfile("payload.pkl").read()  # type: ignore[union-attr]


# --- bad input -------------------------------------------------------------


def _bad_namespace() -> dict[str, Any]:
    return notebook(
        """
        import threading

        LOCK = threading.Lock()

        def predict(x):
            return x

        def other_predict(x):
            return x

        def star(*values):
            return values

        def kwstar(x, **options):
            return x

        def guarded(x):
            with LOCK:
                return x
        """
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda ns: [lambda x: x], "lambda"),
        (lambda ns: [ns["predict"], 1], "not callable"),
        (lambda ns: ["predict"], "not callable"),
        (lambda ns: [ns["predict"], ns["predict"]], "duplicate entrypoint name 'predict'"),
        (lambda ns: {"predict": ns["predict"], "predict2": ns["other_predict"], "bad name": ns["predict"]}, "'bad name'"),
        (lambda ns: {"class": ns["predict"]}, "not a valid Python identifier"),
        (lambda ns: {1: ns["predict"]}, "must be a string"),
        (lambda ns: [ns["star"]], "'star' takes *values"),
        (lambda ns: [ns["kwstar"]], "'kwstar' takes **options"),
        (lambda ns: [], "no functions"),
        (lambda ns: 42, "functions must be"),
        (lambda ns: [int], "class"),
        (lambda ns: [ns["predict"], ns["guarded"]], "entrypoint 'guarded'"),
    ],
)
def test_bad_functions_raise_capture_error(make: Any, message: str) -> None:
    before = cloudpickle.list_registry_pickle_by_value()
    with pytest.raises(CaptureError) as info:
        capture(make(_bad_namespace()), name="bad")
    assert message in str(info.value)
    assert cloudpickle.list_registry_pickle_by_value() == before


def test_unpicklable_global_names_function_and_object() -> None:
    ns = _bad_namespace()
    with pytest.raises(CaptureError, match=r"entrypoint 'guarded'.*lock"):
        capture([ns["guarded"]], name="bad")


@pytest.mark.parametrize("name", ["", "bad name", "a/b", "-x", "x-", "Iris", "under_score", 3, "x" * 49])
def test_bad_service_name(name: Any) -> None:
    with pytest.raises(CaptureError, match="service name"):
        capture([_bad_namespace()["predict"]], name=name)


@pytest.mark.parametrize("version", ["", "1 0", "-1", "v" * 33, True, 1.5])
def test_bad_version(version: Any) -> None:
    with pytest.raises(CaptureError, match="version"):
        capture([_bad_namespace()["predict"]], name="ok", version=version)


def test_good_names_and_versions() -> None:
    fn = _bad_namespace()["predict"]
    assert capture([fn], name="iris-2", version="1.0.3").manifest["version"] == "1.0.3"
    assert capture([fn], name="x" * 48, version=4).manifest["version"] == "4"


def test_bad_requirement_and_sample() -> None:
    fn = _bad_namespace()["predict"]
    with pytest.raises(CaptureError, match="not a valid PEP 508"):
        capture([fn], name="req", requirements=["numpy=="])
    with pytest.raises(CaptureError, match="sample of type lock"):
        capture([fn], name="sample", sample=threading.Lock())


def test_explicit_requirements_override_inferred_pins() -> None:
    ns = notebook(
        """
        import numpy as np

        def total(values: list) -> float:
            return float(np.sum(values))
        """
    )
    bundle = capture(
        [ns["total"]],
        name="explicit",
        requirements=["numpy==1.26.4", "requests", "surely-not-installed-pkg>=1", "another-missing-pkg"],
    )
    requirements = bundle.manifest["requirements"]
    assert "numpy==1.26.4" in requirements
    assert pin("numpy") not in requirements
    assert pin("requests") in requirements
    assert pin("urllib3") in requirements  # an explicit installed package brings its closure
    assert "surely-not-installed-pkg>=1" in requirements
    assert "another-missing-pkg" in requirements
    assert pin("cloudpickle") in requirements
    inferred = bundle.manifest["inferred"]
    assert pin("numpy") in inferred["direct"]
    assert inferred["explicit"] == [
        "numpy==1.26.4",
        pin("requests"),
        "surely-not-installed-pkg>=1",
        "another-missing-pkg",
    ]


def test_sample_lands_in_manifest() -> None:
    fn = _bad_namespace()["predict"]
    bundle = capture([fn], name="s", sample=np.zeros((2, 2)))
    assert read_manifest(bundle.data)["sample"] == {
        "kind": "ndarray",
        "shape": [None, 2],
        "dtype": "float64",
        "data": [[0.0, 0.0], [0.0, 0.0]],
    }
