"""End-to-end tests of the service runner: real bundles, a real subprocess, real HTTP."""

from __future__ import annotations

import ast
import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable

import cloudpickle
import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from jupyter_deploy.bundle import extract, pack
from jupyter_deploy_manager.builder import stage_runner
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[3]
RUNNER_DIR = REPO / "manager" / "jupyter_deploy_runner"
CONTRACT_DIR = REPO / "jupyter_deploy_contract"
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
DEADLINE = 60.0
_NO = object()


# ---------------------------------------------------------------- bundle helpers


def param(name: str, type_: str, default: Any = _NO, kind: str = "POSITIONAL_OR_KEYWORD") -> dict[str, Any]:
    """A manifest parameter entry as capture writes it."""
    out: dict[str, Any] = {"name": name, "kind": kind, "annotation": type_, "type": type_, "required": default is _NO}
    if default is not _NO:
        out["default"] = default
    return out


def make_manifest(name: str, entrypoints: dict[str, list[dict[str, Any]]], sample: Any = None,
                  python: str = PY, cloudpickle_version: str = cloudpickle.__version__) -> dict[str, Any]:
    """A hand-written manifest per docs/internals.md (pack fills in format and payload)."""
    return {
        "name": name,
        "version": None,
        "created": "2026-11-24T10:00:00Z",
        "python": python,
        "python_full": sys.version.split()[0],
        "cloudpickle": cloudpickle_version,
        "entrypoints": [
            {"name": ep, "doc": "", "signature": "", "parameters": params, "returns": None}
            for ep, params in entrypoints.items()
        ],
        "requirements": [f"cloudpickle=={cloudpickle.__version__}"],
        "inferred": {"direct": [], "modules": {}, "explicit": []},
        "sample": sample,
    }


def write_bundle(dest: Path, manifest: dict[str, Any], functions: dict[str, Callable[..., Any]]) -> Path:
    """Pickle ``functions`` by value, pack them with ``manifest`` and extract to ``dest``."""
    module = sys.modules[__name__]
    # Functions of this module travel by value, as a notebook's would; the
    # runner process never imports this test module.
    cloudpickle.register_pickle_by_value(module)
    try:
        payload = cloudpickle.dumps({"entrypoints": functions}, protocol=5)
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    extract(pack(manifest, payload).data, dest)
    return dest


# ---------------------------------------------------------------- runner process


class Runner:
    """A runner subprocess on a free port, logging to files."""

    def __init__(self, bundle_dir: Path, logs: Path, args: tuple[str, ...] = (),
                 command: list[str] | None = None, cwd: Path = REPO) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path, self.stderr_path = logs / "stdout.log", logs / "stderr.log"
        self._out, self._err = open(self.stdout_path, "wb"), open(self.stderr_path, "wb")
        command = command or [sys.executable, "-m", "jupyter_deploy_runner"]
        self.proc = subprocess.Popen(
            [*command, "--bundle", str(bundle_dir), "--host", "127.0.0.1", "--port", str(self.port), *args],
            stdout=self._out, stderr=self._err, cwd=cwd,
        )
        self.http = requests.Session()

    def stderr(self) -> str:
        """Everything the runner wrote to stderr so far."""
        return self.stderr_path.read_text()

    def stdout(self) -> str:
        """Everything the runner wrote to stdout so far."""
        return self.stdout_path.read_text()

    def wait_healthy(self) -> dict[str, Any]:
        """Poll /healthz until it answers; fail early when the process dies."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"runner exited with {self.proc.returncode}: {self.stderr()}")
            try:
                response = requests.get(self.url + "/healthz", timeout=2)
                if response.status_code == 200:
                    return response.json()
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        pytest.fail(f"runner not healthy after {DEADLINE}s: {self.stderr()}")

    def post(self, entrypoint: str, body: Any = None, data: Any = None) -> requests.Response:
        """POST a JSON body (or raw data) to an entrypoint."""
        if data is not None:
            return self.http.post(f"{self.url}/{entrypoint}", data=data, timeout=DEADLINE)
        return self.http.post(f"{self.url}/{entrypoint}", json=body, timeout=DEADLINE)

    def stop(self) -> None:
        """Terminate the process (if still alive) and close the log files."""
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        self._err.close()


def run_to_exit(bundle_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run the runner on a bundle that must not start; return its exit status and output."""
    return subprocess.run(
        [sys.executable, "-m", "jupyter_deploy_runner", "--bundle", str(bundle_dir),
         "--host", "127.0.0.1", "--port", str(free_port())],
        capture_output=True, text=True, timeout=DEADLINE, cwd=REPO,
    )


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until true or fail after the deadline."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


# ---------------------------------------------------------------- the served functions


def make_iris_functions(model: Any) -> dict[str, Callable[..., Any]]:
    """The iris bundle's entrypoints; closures over the trained model."""

    def predict(data: pd.DataFrame) -> Any:
        return model.predict(data)

    def proba(data):  # unannotated: the dataframe sample makes it a DataFrame
        return model.predict_proba(data)

    def columns(data: pd.DataFrame) -> dict[str, Any]:
        return {"columns": list(data.columns), "dtypes": [str(t) for t in data.dtypes], "type": type(data).__name__}

    def scalars(x: float, n: int, label: str = "a", flag: bool = False, items: list | None = None,
                opts: dict | None = None) -> dict[str, Any]:
        return {"x": x, "x_type": type(x).__name__, "n": n, "label": label, "flag": flag,
                "items": items, "opts": opts}

    def boom(n: int) -> int:
        raise ValueError("secret detail 1234")

    def outputs(kind: str) -> Any:
        return {
            "int64": np.int64(7),
            "float32": np.float32(0.5),
            "bool": np.bool_(True),
            "array": np.array([[1.0, np.nan], [np.inf, 2.0]]),
            "frame": pd.DataFrame({"a": [1, 2], "b": [0.5, np.nan],
                                   "t": [pd.Timestamp("2024-01-02T03:04:05"), pd.NaT]}),
            "series": pd.Series([1.5, np.nan, 3.0]),
            "timestamp": pd.Timestamp("2024-05-06T07:08:09"),
            "nested": {"arr": np.arange(3), "s": pd.Series(["x", "y"]), "v": np.float64(1.25), "nan": float("nan")},
            "object": object(),
        }[kind]

    def slow(marker: str, release: str) -> str:
        Path(marker).write_text("started")
        deadline = time.monotonic() + 60
        while not Path(release).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return "done"

    return {"predict": predict, "proba": proba, "columns": columns, "scalars": scalars, "boom": boom,
            "outputs": outputs, "slow": slow}


IRIS_SIGNATURES = {
    "predict": [param("data", "dataframe")],
    "proba": [param("data", "any")],
    "columns": [param("data", "dataframe")],
    "scalars": [param("x", "float"), param("n", "int"), param("label", "str", "a"), param("flag", "bool", False),
                param("items", "list", None), param("opts", "dict", None)],
    "boom": [param("n", "int")],
    "outputs": [param("kind", "str")],
    "slow": [param("marker", "str"), param("release", "str")],
}


def rowsum(x: np.ndarray) -> dict[str, Any]:
    """Sum of each row, with the dtype and shape the function saw."""
    return {"sum": x.sum(axis=1), "dtype": str(x.dtype), "shape": list(x.shape)}


def first_any(x) -> str:
    """Type of an unannotated first parameter."""
    return f"{type(x).__name__} {x.dtype}"


def frame_info(df: pd.DataFrame, s: pd.Series) -> dict[str, Any]:
    """Columns of a DataFrame built without a dataframe sample, and a Series total."""
    return {"columns": list(df.columns), "rows": len(df), "index": list(df.index), "total": s.sum()}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def iris() -> tuple[pd.DataFrame, RandomForestClassifier]:
    """The iris features and a RandomForest trained on them."""
    X = load_iris(as_frame=True).data
    y = load_iris().target
    return X, RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def iris_bundle(tmp_path_factory: pytest.TempPathFactory, iris: Any) -> Path:
    """An extracted iris bundle with a dataframe sample."""
    X, model = iris
    sample = {"kind": "dataframe", "columns": list(X.columns), "dtypes": {c: str(t) for c, t in X.dtypes.items()},
              "records": X.head(5).to_dict(orient="records")}
    manifest = make_manifest("iris", IRIS_SIGNATURES, sample=sample)
    return write_bundle(tmp_path_factory.mktemp("iris-bundle"), manifest, make_iris_functions(model))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, iris_bundle: Path):
    """A running iris service shared by the module's tests."""
    runner = Runner(iris_bundle, tmp_path_factory.mktemp("iris-logs"))
    try:
        runner.wait_healthy()
        yield runner
    finally:
        runner.stop()


@pytest.fixture(scope="module")
def array_service(tmp_path_factory: pytest.TempPathFactory):
    """A running service whose sample is an ndarray of shape (n, 4)."""
    sample = {"kind": "ndarray", "shape": [None, 4], "dtype": "float64", "data": [[1.0, 2.0, 3.0, 4.0]]}
    manifest = make_manifest("arrays", {"rowsum": [param("x", "ndarray")], "first_any": [param("x", "any")],
                                        "frame_info": [param("df", "dataframe"), param("s", "series")]},
                             sample=sample)
    bundle = write_bundle(tmp_path_factory.mktemp("array-bundle"), manifest,
                          {"rowsum": rowsum, "first_any": first_any, "frame_info": frame_info})
    runner = Runner(bundle, tmp_path_factory.mktemp("array-logs"))
    try:
        runner.wait_healthy()
        yield runner
    finally:
        runner.stop()


# ---------------------------------------------------------------- tests: serving


def test_healthz(service: Runner) -> None:
    response = requests.get(service.url + "/healthz", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok", "name": "iris", "version": None,
                               "entrypoints": list(IRIS_SIGNATURES)}
    assert "serving iris - entrypoints: predict, proba, columns" in service.stdout()
    assert f"listening on http://127.0.0.1:{service.port}" in service.stdout()


@pytest.mark.parametrize("form", ["records", "columns", "split"])
def test_predict_matches_local_prediction(service: Runner, iris: Any, form: str) -> None:
    X, model = iris
    rows = X.iloc[::7]
    body = {"records": rows.to_dict(orient="records"),
            "columns": rows.to_dict(orient="list"),
            "split": json.loads(rows.to_json(orient="split"))}[form]
    response = service.post("predict", {"data": body})
    assert response.status_code == 200, response.text
    assert response.json() == model.predict(rows).tolist()


def test_unannotated_first_parameter_follows_the_dataframe_sample(service: Runner, iris: Any) -> None:
    X, model = iris
    rows = X.head(3)
    response = service.post("proba", {"data": rows.to_dict(orient="records")})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json(), model.predict_proba(rows))


def test_columns_are_reordered_and_cast_to_the_sample(service: Runner, iris: Any) -> None:
    X, model = iris
    reordered = [dict(reversed(list(r.items()))) for r in X.head(4).to_dict(orient="records")]
    # Whole numbers arrive as JSON ints; the sample says float64.
    reordered[0] = {k: int(round(v)) for k, v in reordered[0].items()}
    response = service.post("columns", {"data": reordered})
    assert response.status_code == 200, response.text
    assert response.json() == {"columns": list(X.columns), "dtypes": ["float64"] * 4, "type": "DataFrame"}
    predicted = service.post("predict", {"data": reordered}).json()
    assert predicted == model.predict(pd.DataFrame(reordered)[list(X.columns)].astype("float64")).tolist()


def test_422_lists_every_missing_and_unexpected_column(service: Runner, iris: Any) -> None:
    X, _ = iris
    records = X.head(2).drop(columns=["petal width (cm)", "sepal length (cm)"]).assign(foo=1, bar="x")
    response = service.post("predict", {"data": records.to_dict(orient="records")})
    assert response.status_code == 422
    body = response.json()
    assert body["reason"] == "invalid-input"
    assert body["message"] == (
        "input does not fit predict(data): data: missing columns 'sepal length (cm)', 'petal width (cm)'; "
        "unexpected columns 'foo', 'bar'"
    )
    assert body["errors"] == [
        {"field": "data", "column": "sepal length (cm)", "problem": "missing"},
        {"field": "data", "column": "petal width (cm)", "problem": "missing"},
        {"field": "data", "column": "foo", "problem": "unexpected"},
        {"field": "data", "column": "bar", "problem": "unexpected"},
    ]


def test_422_when_a_column_cannot_be_cast(service: Runner, iris: Any) -> None:
    X, _ = iris
    records = X.head(2).to_dict(orient="records")
    records[1]["petal length (cm)"] = "long"
    response = service.post("predict", {"data": records})
    assert response.status_code == 422
    assert "column 'petal length (cm)' cannot be cast to float64" in response.json()["message"]
    assert response.json()["errors"] == [
        {"field": "data", "column": "petal length (cm)", "problem": "dtype", "expected": "float64"}
    ]


def test_422_for_a_dataframe_in_an_unknown_form(service: Runner) -> None:
    response = service.post("predict", {"data": "rows"})
    assert response.status_code == 422
    assert "data: expected records (a list of objects)" in response.json()["message"]


def test_scalar_parameters(service: Runner) -> None:
    response = service.post("scalars", {"x": 2, "n": 3, "items": [1, "a"], "opts": {"k": None}, "flag": True})
    assert response.status_code == 200, response.text
    # An int is accepted for float and arrives as a float; defaults come from the function.
    assert response.json() == {"x": 2.0, "x_type": "float", "n": 3, "label": "a", "flag": True,
                               "items": [1, "a"], "opts": {"k": None}}
    assert service.post("scalars", {"x": 1.5, "n": 1, "items": None}).json()["items"] is None


def test_422_reports_every_scalar_problem_at_once(service: Runner) -> None:
    response = service.post("scalars", {"n": "3", "flag": 1, "label": 5, "items": {}, "extra": 1, "more": 2})
    assert response.status_code == 422
    body = response.json()
    assert body["reason"] == "invalid-input"
    assert body["message"] == (
        "input does not fit scalars(x, n, label=..., flag=..., items=..., opts=...): "
        "missing parameters 'x'; unexpected parameters 'extra', 'more'; "
        "n: expected int, got str; label: expected str, got int; flag: expected bool, got int; "
        "items: expected list, got dict"
    )
    assert {"field": "x", "problem": "missing"} in body["errors"]
    assert {"field": "extra", "problem": "unexpected"} in body["errors"]
    assert {"field": "n", "problem": "type", "expected": "int", "got": "str"} in body["errors"]
    # JSON true is not an int.
    assert service.post("scalars", {"x": 1.0, "n": True}).status_code == 422


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_400_bad_json(service: Runner, data: bytes) -> None:
    response = service.post("predict", data=data)
    assert response.status_code == 400
    assert response.json()["reason"] == "bad-json"


def test_404_unknown_entrypoint(service: Runner) -> None:
    response = service.post("nope", {})
    assert response.status_code == 404
    body = response.json()
    assert body["reason"] == "unknown-entrypoint"
    assert "predict, proba, columns, scalars" in body["message"]
    for path in ("/a/b", "/"):
        assert requests.get(service.url + path, timeout=10).json()["reason"] == "unknown-entrypoint"
    assert requests.get(service.url + "/nope", timeout=10).status_code == 404


def test_405_get_on_an_entrypoint(service: Runner) -> None:
    response = requests.get(service.url + "/predict", timeout=10)
    assert response.status_code == 405
    assert response.json()["reason"] == "method-not-allowed"
    assert response.headers["Allow"] == "POST"


def test_500_when_the_function_raises_and_service_keeps_serving(service: Runner, iris: Any) -> None:
    X, model = iris
    response = service.post("boom", {"n": 1})
    assert response.status_code == 500
    assert response.json() == {"message": "boom raised ValueError; see the service log", "reason": "entrypoint-error"}
    assert "secret" not in response.text and "Traceback" not in response.text
    log = service.stderr()
    assert "entrypoint boom raised ValueError:" in log
    assert "Traceback (most recent call last)" in log and "ValueError: secret detail 1234" in log
    again = service.post("predict", {"data": X.head(2).to_dict(orient="records")})
    assert again.status_code == 200 and again.json() == model.predict(X.head(2)).tolist()


def test_numpy_and_pandas_outputs_are_serialised(service: Runner) -> None:
    def out(kind: str) -> Any:
        response = service.post("outputs", {"kind": kind})
        assert response.status_code == 200, response.text
        return response.json()

    assert out("int64") == 7
    assert out("float32") == 0.5
    assert out("bool") is True
    assert out("array") == [[1.0, None], [None, 2.0]]
    assert out("frame") == [{"a": 1, "b": 0.5, "t": "2024-01-02T03:04:05"}, {"a": 2, "b": None, "t": None}]
    assert out("series") == [1.5, None, 3.0]
    assert out("timestamp") == "2024-05-06T07:08:09"
    assert out("nested") == {"arr": [0, 1, 2], "s": ["x", "y"], "v": 1.25, "nan": None}


def test_unserialisable_result_is_a_500_naming_the_type(service: Runner) -> None:
    response = service.post("outputs", {"kind": "object"})
    assert response.status_code == 500
    body = response.json()
    assert body["reason"] == "unserialisable-result"
    assert "outputs returned object" in body["message"]
    assert "entrypoint outputs returned an unserialisable object" in service.stderr()


def test_healthz_answers_during_a_long_call(service: Runner, tmp_path: Path) -> None:
    marker, release = tmp_path / "started", tmp_path / "release"
    answers: list[requests.Response] = []
    caller = threading.Thread(
        target=lambda: answers.append(requests.post(service.url + "/slow", timeout=DEADLINE,
                                                    json={"marker": str(marker), "release": str(release)}))
    )
    caller.start()
    try:
        wait_for(marker.exists, "the slow call to start")
        assert requests.get(service.url + "/healthz", timeout=5).status_code == 200
        assert caller.is_alive()
    finally:
        release.write_text("go")
        caller.join(DEADLINE)
    assert answers and answers[0].json() == "done"


def test_client_leaving_mid_call_is_not_an_error(service: Runner, tmp_path: Path) -> None:
    marker, release = tmp_path / "started", tmp_path / "release"
    body = json.dumps({"marker": str(marker), "release": str(release)}).encode()
    before = service.stdout().count("POST /slow")
    with socket.create_connection(("127.0.0.1", service.port), timeout=DEADLINE) as sock:
        sock.sendall(b"POST /slow HTTP/1.1\r\nHost: runner\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        wait_for(marker.exists, "the slow call to start")
    release.write_text("go")
    # The access log line is written once the runner has tried to answer.
    wait_for(lambda: service.stdout().count("POST /slow") > before, "the abandoned call to finish")
    assert "StreamClosedError" not in service.stderr()
    assert service.post("scalars", {"x": 1, "n": 1}).status_code == 200


# ---------------------------------------------------------------- tests: ndarray / no sample


def test_ndarray_parameter_uses_the_sample_dtype(array_service: Runner) -> None:
    response = array_service.post("rowsum", {"x": [[1, 2, 3, 4], [5, 6, 7, 8]]})
    assert response.status_code == 200, response.text
    assert response.json() == {"sum": [10.0, 26.0], "dtype": "float64", "shape": [2, 4]}
    assert array_service.post("first_any", {"x": [[1, 2, 3, 4]]}).json() == "ndarray float64"


@pytest.mark.parametrize("x, expected", [
    ([[1, 2, 3]], "x: expected shape (n, 4), got (1, 3)"),
    ([1, 2, 3, 4], "x: expected shape (n, 4), got (4,)"),
    ([[1, 2, 3, 4], [1, 2]], "x: cannot convert to float64"),
    ([["a", "b", "c", "d"]], "x: cannot convert to float64"),
    ({"a": 1}, "x: expected a (nested) list, got dict"),
])
def test_ndarray_parameter_is_checked(array_service: Runner, x: Any, expected: str) -> None:
    response = array_service.post("rowsum", {"x": x})
    assert response.status_code == 422
    assert expected in response.json()["message"]


@pytest.mark.parametrize("number", [b"1e400", b"Infinity", b"-Infinity", b"-1e999"])
def test_an_infinity_in_a_float_array_is_422(array_service: Runner, number: bytes) -> None:
    response = array_service.post("rowsum", data=b'{"x": [[1, 2, 3, 4], [5, 6, %s, 8]]}' % number)
    assert response.status_code == 422, response.text
    assert "x: holds Infinity or -Infinity" in response.json()["message"]
    assert response.json()["errors"] == [{"field": "x", "problem": "value", "expected": "a finite number"}]


def test_nan_in_a_float_array_is_a_missing_value_like_null(array_service: Runner) -> None:
    for missing in (b"NaN", b"null"):
        response = array_service.post("rowsum", data=b'{"x": [[1, 2, 3, %s]]}' % missing)
        assert response.status_code == 200, response.text
        assert response.json() == {"sum": [None], "dtype": "float64", "shape": [1, 4]}


def test_dataframe_and_series_without_a_dataframe_sample(array_service: Runner) -> None:
    split = {"columns": ["p", "q"], "data": [[1, 2], [3, 4]], "index": [10, 20]}
    response = array_service.post("frame_info", {"df": split, "s": [1, 2, 3.5]})
    assert response.status_code == 200, response.text
    assert response.json() == {"columns": ["p", "q"], "rows": 2, "index": [10, 20], "total": 6.5}
    records = array_service.post("frame_info", {"df": [{"z": 1}], "s": []}).json()
    assert records["columns"] == ["z"] and records["total"] == 0
    # Without a sample every float column is a number column: an infinity there is refused too.
    response = array_service.post("frame_info", data=b'{"df": [{"p": 1, "q": "a"}, {"p": -1e400, "q": "b"}], "s": []}')
    assert response.status_code == 422, response.text
    assert "df: column 'p' holds Infinity or -Infinity" in response.json()["message"]


# ---------------------------------------------------------------- tests: startup checks


def _broken(tmp_path: Path, **manifest_overrides: Any) -> Path:
    manifest = make_manifest("broken", {"rowsum": [param("x", "ndarray")]}, **manifest_overrides)
    return write_bundle(tmp_path / "bundle", manifest, {"rowsum": rowsum})


def test_python_version_mismatch_exits_3(tmp_path: Path) -> None:
    other = f"3.{sys.version_info[1] - 1}"
    result = run_to_exit(_broken(tmp_path, python=other))
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        f"jupyter-deploy runner: bundle was captured with Python {other} but this service runs Python {PY}; "
        f"redeploy from a kernel running {PY}"
    ]
    assert "serving" not in result.stdout


def test_cloudpickle_version_mismatch_exits_3(tmp_path: Path) -> None:
    result = run_to_exit(_broken(tmp_path, cloudpickle_version="2.0.0"))
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        f"jupyter-deploy runner: bundle was captured with cloudpickle 2.0.0 but this service has "
        f"cloudpickle {cloudpickle.__version__}; "
    )


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    bundle = _broken(tmp_path)
    payload = bundle / "payload.pkl"
    payload.write_bytes(payload.read_bytes() + b"tampered")
    result = run_to_exit(bundle)
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jupyter-deploy runner: payload checksum mismatch")


def test_payload_that_cannot_be_unpickled_exits_4(tmp_path: Path) -> None:
    helper = tmp_path / "helpers"
    helper.mkdir()
    (helper / "jd_runner_test_helper.py").write_text("def double(x: int) -> int:\n    return 2 * x\n")
    sys.path.insert(0, str(helper))
    try:
        import jd_runner_test_helper  # type: ignore[import-not-found]

        # Pickled by reference: the runner process cannot import the helper module.
        payload = cloudpickle.dumps({"entrypoints": {"double": jd_runner_test_helper.double}}, protocol=5)
    finally:
        sys.path.remove(str(helper))
        sys.modules.pop("jd_runner_test_helper", None)
    manifest = make_manifest("helper", {"double": [param("x", "int")]})
    extract(pack(manifest, payload).data, tmp_path / "bundle")
    result = run_to_exit(tmp_path / "bundle")
    assert result.returncode == 4
    assert result.stderr.strip().splitlines() == [
        "jupyter-deploy runner: could not load the payload: ModuleNotFoundError: "
        "No module named 'jd_runner_test_helper'; is it in the service's requirements?"
    ]


# ---------------------------------------------------------------- tests: lifecycle and packaging


def test_sigterm_finishes_the_call_in_flight_and_exits_0(tmp_path: Path, iris_bundle: Path) -> None:
    runner = Runner(iris_bundle, tmp_path / "logs")
    try:
        runner.wait_healthy()
        marker, release = tmp_path / "started", tmp_path / "release"
        answers: list[requests.Response] = []
        caller = threading.Thread(
            target=lambda: answers.append(requests.post(runner.url + "/slow", timeout=DEADLINE,
                                                        json={"marker": str(marker), "release": str(release)}))
        )
        caller.start()
        wait_for(marker.exists, "the slow call to start")
        runner.proc.send_signal(signal.SIGTERM)

        def refused() -> bool:
            try:
                requests.get(runner.url + "/healthz", timeout=2)
            except requests.ConnectionError:
                return True
            return False

        wait_for(refused, "the runner to stop accepting connections")
        assert runner.proc.poll() is None, "exited before the call in flight finished"
        release.write_text("go")
        caller.join(DEADLINE)
        assert answers and answers[0].status_code == 200 and answers[0].json() == "done"
        assert runner.proc.wait(timeout=DEADLINE) == 0
    finally:
        runner.stop()


ALLOWED_IMPORTS = {"cloudpickle", "tornado", "pandas", "numpy", "jupyter_deploy_contract"}
"""What a runner image holds besides the stdlib; the contract's own imports are checked by import-linter."""


def test_runner_imports_only_the_stdlib_tornado_cloudpickle_pandas_numpy_and_the_contract() -> None:
    for path in sorted([*RUNNER_DIR.glob("*.py"), *CONTRACT_DIR.glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: stays inside the package
                    continue
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in ALLOWED_IMPORTS, f"{path.name} imports {name}"


def test_runs_as_a_copied_top_level_package_without_jupyter_deploy(tmp_path: Path, iris_bundle: Path,
                                                                   iris: Any) -> None:
    X, model = iris
    stage = tmp_path / "stage"
    stage_runner(stage)
    assert sorted(p.name for p in stage.iterdir()) == ["jupyter_deploy_contract", "jupyter_deploy_runner"]
    # Started the way runtimes do (python -m jupyter_deploy_runner), with the
    # project's other packages made unimportable and the staged copies first on the path.
    bootstrap = textwrap.dedent("""
        import runpy, sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("jupyter_deploy", "jupyter_deploy_manager"):
                    raise ImportError("the runner must not import " + name)
        sys.meta_path.insert(0, Block())
        import jupyter_deploy_contract, jupyter_deploy_runner
        assert all(m.__file__.startswith(sys.argv[1]) for m in (jupyter_deploy_contract, jupyter_deploy_runner))
        del sys.argv[1]
        sys.argv[0] = "jupyter_deploy_runner"
        runpy.run_module("jupyter_deploy_runner", run_name="__main__", alter_sys=True)
    """)
    runner = Runner(iris_bundle, tmp_path / "logs", command=[sys.executable, "-c", bootstrap, str(stage)], cwd=stage)
    try:
        runner.wait_healthy()
        response = runner.post("predict", {"data": X.head(3).to_dict(orient="records")})
        assert response.status_code == 200 and response.json() == model.predict(X.head(3)).tolist()
    finally:
        runner.stop()
    env = dict(os.environ, PYTHONPATH=str(stage))
    help_text = subprocess.run([sys.executable, "-m", "jupyter_deploy_runner", "--help"], cwd=stage, env=env,
                               capture_output=True, text=True, timeout=DEADLINE)
    assert help_text.returncode == 0 and "--bundle" in help_text.stdout


def test_port_0_picks_a_free_port_and_prints_it(tmp_path: Path, iris_bundle: Path) -> None:
    # argparse keeps the last --port, so this overrides the Runner's own.
    runner = Runner(iris_bundle, tmp_path / "logs", args=("--port", "0"))
    try:
        wait_for(lambda: "listening on http://127.0.0.1:" in runner.stdout() or runner.proc.poll() is not None,
                 "the listening line")
        line = next(l for l in runner.stdout().splitlines() if l.startswith("listening on "))
        port = int(line.rsplit(":", 1)[1])
        assert port != 0
        answer = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
        assert answer["status"] == "ok"
    finally:
        runner.stop()


def test_inline_mode_serves_too(tmp_path: Path, iris_bundle: Path, iris: Any) -> None:
    X, model = iris
    runner = Runner(iris_bundle, tmp_path / "logs", args=("--threads", "0"))
    try:
        runner.wait_healthy()
        response = runner.post("predict", {"data": X.tail(3).to_dict(orient="records")})
        assert response.status_code == 200 and response.json() == model.predict(X.tail(3)).tolist()
        assert math.isclose(runner.post("scalars", {"x": 1, "n": 2}).json()["x"], 1.0)
    finally:
        runner.stop()
