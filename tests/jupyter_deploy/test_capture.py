"""Capture: validation, manifest description, payload, sample encodings, end to end."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from jupyter_deploy.bundle import read_manifest, verify
from jupyter_deploy.capture import capture, encode_sample
from jupyter_deploy.errors import CaptureError


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
    manifest = verify(iris_capture["data"])
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


# --- in-process description ------------------------------------------------


def test_future_annotations_are_resolved() -> None:
    ns = notebook(
        """
        from __future__ import annotations

        import typing
        from typing import Dict, List, Optional

        import numpy as np
        import pandas as pd

        def score(
            frame: pd.DataFrame,
            column: pd.Series,
            matrix: np.ndarray,
            count: int = 3,
            ratio: float = 0.5,
            label: str = "x",
            flag: bool = False,
            items: List[int] | None = None,
            table: dict[str, float] | None = None,
            legacy: typing.Dict[str, int] = None,
            maybe: Optional[int] = None,
            unknown: NotDefinedAnywhere = None,
            anything=object(),
            *,
            strict: bool = True,
        ) -> Dict[str, list]:
            '''Score things.'''
            return {}
        """
    )
    [entry] = capture([ns["score"]], name="types").manifest["entrypoints"]
    params = {p["name"]: p for p in entry["parameters"]}
    types = {name: p["type"] for name, p in params.items()}
    assert types == {
        "frame": "dataframe",
        "column": "series",
        "matrix": "ndarray",
        "count": "int",
        "ratio": "float",
        "label": "str",
        "flag": "bool",
        "items": "list",
        "table": "dict",
        "legacy": "dict",
        "maybe": "int",
        "unknown": "any",
        "anything": "any",
        "strict": "bool",
    }
    assert params["count"]["default"] == 3 and params["count"]["required"] is False
    assert params["items"]["default"] is None
    assert "default" not in params["anything"] and params["anything"]["required"] is False
    assert "annotation" in params["anything"] and params["anything"]["annotation"] is None
    assert params["strict"]["kind"] == "KEYWORD_ONLY"
    assert params["matrix"]["annotation"] == "numpy.ndarray"
    assert params["unknown"]["annotation"] == "NotDefinedAnywhere"
    assert params["items"]["annotation"] == "typing.List[int] | None"
    assert entry["returns"] == "typing.Dict[str, list]"
    assert entry["signature"].startswith("(frame: pandas.DataFrame, column: pandas.Series, matrix: numpy.ndarray, count: int = 3,")
    assert "unknown: NotDefinedAnywhere = None" in entry["signature"]
    assert entry["signature"].endswith("*, strict: bool = True) -> typing.Dict[str, list]")
    assert entry["doc"] == "Score things."


def test_string_annotations_that_cannot_be_evaluated_are_read_textually() -> None:
    ns = notebook(
        """
        def f(a: "pd.DataFrame", b: "Optional[np.ndarray]", c: "list[int]", d: "Mystery") -> "pd.Series":
            return a
        """
    )
    [entry] = capture([ns["f"]], name="text").manifest["entrypoints"]
    assert [p["type"] for p in entry["parameters"]] == ["dataframe", "ndarray", "list", "any"]
    assert entry["signature"] == "(a: pd.DataFrame, b: Optional[np.ndarray], c: list[int], d: Mystery) -> pd.Series"


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


# --- samples ---------------------------------------------------------------


def test_dataframe_sample_is_json_safe() -> None:
    frame = pd.DataFrame(
        {
            "x": [1.5, np.nan, 3.0, 4.0, 5.0, 6.0, 7.0],
            "kind": pd.Categorical(["a", "b", None, "a", "b", "a", "b"]),
            "name": ["u", None, "w", "x", "y", "z", "q"],
            "when": pd.to_datetime(["2024-01-01", "2024-01-02", None, "2024-01-04", "2024-01-05", "2024-01-06", "2024-01-07"]),
            "count": np.arange(7, dtype=np.int64),
            "ok": [True, False, True, False, True, False, True],
        }
    )
    sample = encode_sample(frame)
    assert sample["kind"] == "dataframe"
    assert sample["columns"] == ["x", "kind", "name", "when", "count", "ok"]
    assert sample["dtypes"]["x"] == "float64"
    assert sample["dtypes"]["kind"] == "category"
    assert sample["dtypes"]["when"].startswith("datetime64")
    assert sample["dtypes"]["count"] == "int64"
    assert len(sample["records"]) == 5
    first, second, third = sample["records"][:3]
    assert first == {"x": 1.5, "kind": "a", "name": "u", "when": "2024-01-01T00:00:00", "count": 0, "ok": True}
    assert second["x"] is None and second["name"] is None
    assert third["kind"] is None and third["when"] is None
    assert all(type(r["count"]) is int and type(r["ok"]) is bool for r in sample["records"])
    # The manifest is strict JSON: no NaN, no numpy scalars.
    json.dumps(sample, allow_nan=False)


def test_ndarray_sample() -> None:
    array = np.arange(24, dtype=np.float32).reshape(8, 3)
    array[1, 1] = np.nan
    sample = encode_sample(array)
    assert sample == {
        "kind": "ndarray",
        "shape": [None, 3],
        "dtype": "float32",
        "data": [[0.0, 1.0, 2.0], [3.0, None, 5.0], [6.0, 7.0, 8.0], [9.0, 10.0, 11.0], [12.0, 13.0, 14.0]],
    }
    assert encode_sample(np.array([1, 2, 3])) == {"kind": "ndarray", "shape": [None], "dtype": "int64", "data": [1, 2, 3]}


def test_json_samples() -> None:
    assert encode_sample(None) is None
    assert encode_sample({"a": 1, "b": [1.5, "x", None]}) == {"kind": "json", "data": {"a": 1, "b": [1.5, "x", None]}}
    assert encode_sample([np.int64(2), np.float64(0.5), np.bool_(True)]) == {"kind": "json", "data": [2, 0.5, True]}
    assert encode_sample("text") == {"kind": "json", "data": "text"}
    with pytest.raises(CaptureError, match="JSON-serialisable"):
        encode_sample({"a": object()})


def test_sample_lands_in_manifest() -> None:
    fn = _bad_namespace()["predict"]
    bundle = capture([fn], name="s", sample=np.zeros((2, 2)))
    assert read_manifest(bundle.data)["sample"] == {
        "kind": "ndarray",
        "shape": [None, 2],
        "dtype": "float64",
        "data": [[0.0, 0.0], [0.0, 0.0]],
    }


def test_dataframe_sample_schema_covers_every_row() -> None:
    n = 30
    frame = pd.DataFrame(
        {
            "count": np.arange(n, dtype=np.int64),
            "maybe": pd.array([None if i == 25 else i for i in range(n)], dtype="Int64"),
            # The only NaN is past the 5 stored rows: nullable still says so.
            "x": [np.nan if i == 20 else i / 2 for i in range(n)],
            "ok": [i % 2 == 0 for i in range(n)],
            "few": pd.Series([None if i == 27 else "abc"[i % 3] for i in range(n)], dtype=object),
            "few_str": pd.Series(["lo", "hi"] * (n // 2), dtype="string"),
            "many": [f"id-{i}" for i in range(n)],
            "kind": pd.Categorical(["b", "a"] * (n // 2), categories=["b", "a", "unused"]),
            "when": pd.date_range("2024-01-01", periods=n, freq="D"),
            "when_tz": pd.date_range("2024-01-01", periods=n, freq="h", tz="Europe/Paris"),
            "blob": pd.Series([{"k": i} for i in range(n)], dtype=object),
            "span": pd.to_timedelta(np.arange(n), unit="s"),
        }
    )
    sample = encode_sample(frame)
    assert sample["rows"] == n and len(sample["records"]) == 5
    schema = sample["schema"]
    assert list(schema) == sample["columns"]
    assert schema["count"] == {"dtype": "int64", "type": "integer", "nullable": False}
    assert schema["maybe"] == {"dtype": "Int64", "type": "integer", "nullable": True}
    assert schema["x"] == {"dtype": "float64", "type": "number", "nullable": True}
    assert schema["ok"] == {"dtype": "bool", "type": "boolean", "nullable": False}
    assert schema["few"] == {"dtype": "object", "type": "string", "nullable": True, "categories": ["a", "b", "c"]}
    assert schema["few_str"] == {"dtype": "string", "type": "string", "nullable": False, "categories": ["hi", "lo"]}
    assert schema["many"]["type"] == "string" and "categories" not in schema["many"]  # 30 distinct > 20
    assert schema["kind"] == {"dtype": "category", "type": "category", "nullable": False, "categories": ["b", "a", "unused"]}
    assert schema["when"]["type"] == "datetime" and schema["when"]["dtype"].startswith("datetime64[")
    assert schema["when_tz"]["type"] == "datetime" and schema["when_tz"]["dtype"].endswith(", Europe/Paris]")
    assert schema["blob"] == {"dtype": "object", "type": "any", "nullable": False}
    assert schema["span"]["type"] == "any"
    json.dumps(sample, allow_nan=False)


def test_string_categories_stop_at_twenty_distinct_values() -> None:
    twenty = pd.DataFrame({"s": [f"v{i:02d}" for i in range(20)] * 2})
    assert encode_sample(twenty)["schema"]["s"]["categories"] == [f"v{i:02d}" for i in range(20)]
    assert "categories" not in encode_sample(pd.DataFrame({"s": [f"v{i}" for i in range(21)]}))["schema"]["s"]


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
