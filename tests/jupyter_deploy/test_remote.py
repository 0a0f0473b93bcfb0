"""``connect``: client-side input checks that answer exactly like the service's 422, without a request."""

from __future__ import annotations

import inspect
import io
import json
import math
import re
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

import jupyter_deploy
from jupyter_deploy.samples import encode_sample
from jupyter_deploy.errors import InvalidInput
from jupyter_deploy.progress import Progress
from jupyter_deploy.remote import RemoteService, _Checks, encode
from jupyter_deploy_contract import inputs

# --- what the services run ------------------------------------------------------

FRAME = pd.DataFrame(
    {
        "a": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5],
        "b": [1, 2, 3, 4, 5, 6],
        "kind": ["x", "y", "x", "z", "y", "x"],
        "when": pd.date_range("2024-01-01", periods=6, freq="D"),
    }
)


def total(
    data: pd.DataFrame,
    scale: float = 1.0,
    label: str = "t",
    flag: bool = False,
    limit: int = 3,
    tags: list | None = None,
    options: dict | None = None,
) -> dict:
    """Weighted rows, with one option of every scalar type."""
    return {
        "values": (data["a"] * data["b"] * scale).round(6).tolist()[:limit],
        "days": data["when"].dt.day.tolist()[:limit],
        "kinds": data["kind"].tolist()[:limit],
        "label": label.upper() if flag else label,
        "tags": tags or [],
        "options": options or {},
    }


def loose(data, extra=None):
    """Unannotated: the first parameter follows the sample, the second takes anything."""
    return {"rows": len(data), "columns": [str(c) for c in data.columns], "extra": extra}


def norms(x: np.ndarray, power: int = 2) -> list:
    """The norm of each row."""
    return np.linalg.norm(x, ord=power, axis=1).round(6).tolist()


def head(x, n: int = 1) -> list:
    """The first rows, unannotated (so an array, as the sample shows)."""
    return x[:n].tolist()


def scalars(n: int, x: float, s: str, flag: bool, items: list, mapping: dict) -> list:
    """Every JSON scalar type, all required."""
    return [n * 2, x / 2, s[::-1], not flag, items[::-1], sorted(mapping)]


def echo(value, times: int = 1) -> list:
    """Anything, repeated."""
    return [value] * times


# --- helpers ------------------------------------------------------------------------


def quiet() -> Progress:
    """Progress that collects lines instead of printing them."""
    return Progress("test", rich=False, stream=io.StringIO())


def deploy(manager: Any, name: str, functions: list, sample: Any = None) -> RemoteService:
    """Deploy ``functions`` on ``manager`` and connect to them."""
    jupyter_deploy.deploy(name, functions, sample=sample, url=manager.url, token=manager.token, progress=quiet())
    return jupyter_deploy.connect(name, url=manager.url, token=manager.token)


def body_of(**arguments: Any) -> str:
    """The JSON body ``connect`` sends for these keyword arguments."""
    return "{" + ", ".join(f"{json.dumps(k)}: {encode(v)}" for k, v in arguments.items()) + "}"


def served(manager: Any, service: str, entrypoint: str, body: str) -> requests.Response:
    """POST a raw body to an entrypoint through the manager, as any HTTP client would."""
    return requests.post(
        f"{manager.url}/services/{service}/{entrypoint}",
        data=body,
        headers={**manager.headers(), "Content-Type": "application/json"},
        timeout=60,
    )


def strict_json(text: str) -> Any:
    """Parse ``text`` as JSON proper: NaN and Infinity, which Python's json takes, fail."""
    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def same_refusal(manager: Any, svc: RemoteService, entrypoint: str, **arguments: Any) -> str:
    """Assert the client refuses ``arguments`` with the very 422 the service gives for their body; return the message."""
    with pytest.raises(InvalidInput) as info:
        getattr(svc, entrypoint)(**arguments)
    resp = served(manager, svc.name, entrypoint, body_of(**arguments))
    assert resp.status_code == 422, resp.text
    answer = resp.json()
    assert info.value.message == answer["message"]
    assert info.value.detail == answer["errors"]
    assert info.value.status == 422 and info.value.reason == answer["reason"] == "invalid-input"
    return info.value.message


def access_lines(manager: Any, service: str, status: int, entrypoint: str, at_least: int = 0) -> int:
    """How many ``status POST /entrypoint`` lines the service's log has, once it has ``at_least``."""
    pattern = re.compile(rf"^{status} POST /{entrypoint} ", re.M)
    deadline = time.monotonic() + 20
    while True:
        count = len(pattern.findall(manager.client().logs(service, tail=10000)))
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


# --- against a real service ----------------------------------------------------------------


def test_frame_service_refuses_like_the_service_and_sends_nothing(manager: Any) -> None:
    svc = deploy(manager, "frames", [total, loose], sample=FRAME)
    assert list(inspect.signature(svc.total).parameters) == [
        "data", "scale", "label", "flag", "limit", "tags", "options"
    ]
    big = pd.concat([FRAME] * 100, ignore_index=True)  # past the size where arguments are checked on stand-ins
    bad = {
        "missing column": dict(data=FRAME.drop(columns=["b"])),
        "extra column": dict(data=FRAME.assign(extra=1)),
        "missing and extra": dict(data=FRAME.drop(columns=["kind"]).assign(colour="red")),
        "text in a float column": dict(data=FRAME.assign(a=["n/a"] * 6)),
        "fractions in an int column": dict(data=FRAME.assign(b=FRAME["b"] + 0.5)),
        "not dates": dict(data=FRAME.assign(when=["soon"] * 6)),
        "big frame, missing column": dict(data=big.drop(columns=["a"])),
        "big frame, bad ints": dict(data=big.assign(b=big["b"] / 3)),
        "big frame, bad dates": dict(data=big.assign(when=big["kind"])),
        "records, missing column": dict(data=FRAME.drop(columns=["when"]).to_dict(orient="records")),
        "not a frame": dict(data=[1, 2, 3]),
        "float as str": dict(data=FRAME, scale="big"),
        "int as float": dict(data=FRAME, limit=2.5),
        "int as bool": dict(data=FRAME, limit=True),
        "bool as int": dict(data=FRAME, flag=1),
        "str as int": dict(data=FRAME, label=5),
        "list as str": dict(data=FRAME, tags="a,b"),
        "dict as list": dict(data=FRAME, options=[1, 2]),
        "big dict as list": dict(data=FRAME, tags={str(i): i for i in range(1000)}),
        "unknown parameter": dict(data=FRAME, colour="red"),
        "missing parameter": dict(scale=2.0),
        "everything wrong": dict(data=FRAME.drop(columns=["b"]), scale="x", flag="yes", colour=1),
        "infinity in a float column": dict(data=FRAME.assign(a=[0.5, math.inf, 2.5, 3.5, 4.5, 5.5])),
        "-infinity in an int column": dict(data=FRAME.assign(b=[1.0, 2.0, -math.inf, 4.0, 5.0, 6.0])),
        "big frame, infinity": dict(data=big.assign(a=big["a"].where(big.index != 400, math.inf))),
        "infinite float": dict(data=FRAME, scale=math.inf),
        "unannotated first follows the sample": dict(data=FRAME.drop(columns=["a"]), extra=[1]),
    }
    messages = {}
    for case, arguments in bad.items():
        entrypoint = "loose" if case.startswith("unannotated") else "total"
        messages[case] = same_refusal(manager, svc, entrypoint, **arguments)
    assert "missing columns 'b'" in messages["missing column"]
    assert "unexpected columns 'extra'" in messages["extra column"]
    assert "column 'b' cannot be cast to int64" in messages["big frame, bad ints"]
    assert "scale: expected float, got str" in messages["float as str"]
    assert "missing parameters 'data'" in messages["missing parameter"]
    assert "unexpected parameters 'colour'" in messages["unknown parameter"]
    # An infinity is refused where a number is expected, not sent as a missing value.
    assert "column 'a' holds Infinity or -Infinity" in messages["infinity in a float column"]
    assert "column 'b' holds Infinity or -Infinity" in messages["-infinity in an int column"]
    assert "column 'a' holds Infinity or -Infinity" in messages["big frame, infinity"]
    assert "scale: expected a finite number, got Infinity" in messages["infinite float"]

    # The same from curl: an overflowing number or an Infinity in a float column is a 422 naming it.
    literals = ("1e400", "-Infinity")
    for literal in literals:
        body = '{"data": {"columns": ["a", "b", "kind", "when"], "data": [[%s, 1, "x", "2024-01-01"]]}}' % literal
        resp = served(manager, "frames", "total", body)
        assert resp.status_code == 422, resp.text
        assert "column 'a' holds Infinity or -Infinity" in strict_json(resp.text)["message"]

    # Good calls answer what the function answers here; the service reorders columns to the sample's.
    shuffled = FRAME[["when", "kind", "b", "a"]]
    assert svc.total(FRAME) == total(FRAME)
    assert svc.total(shuffled, 2.0, "name", True, 5, ["x"], {"k": 1}) == total(FRAME, 2.0, "name", True, 5, ["x"], {"k": 1})
    assert svc.total(data=big, limit=600, tags=None) == total(big, limit=600)
    assert svc.total(FRAME.to_dict(orient="records"), scale=0.5) == total(FRAME, scale=0.5)
    assert svc.loose(FRAME, extra={"any": [1, None]}) == loose(FRAME, extra={"any": [1, None]})
    with pytest.raises(TypeError, match="positional"):
        svc.total(FRAME, 1.0, "t", False, 3, None, None, "one too many")

    # Only the raw requests above reached the service: one 422 each, none from the client's refusals.
    refused_total = len(bad) - 1 + len(literals)
    assert access_lines(manager, "frames", 200, "loose", at_least=1) == 1
    assert access_lines(manager, "frames", 422, "total", at_least=refused_total) == refused_total
    assert access_lines(manager, "frames", 422, "loose", at_least=1) == 1
    assert access_lines(manager, "frames", 200, "total", at_least=4) == 4


def test_array_service_refuses_like_the_service(manager: Any) -> None:
    svc = deploy(manager, "arrays", [norms, head], sample=np.arange(12.0).reshape(4, 3))
    bad = {
        "wrong width": dict(x=np.ones((4, 2))),
        "one axis": dict(x=np.ones(3)),
        "three axes": dict(x=np.ones((2, 3, 1))),
        "big, wrong width": dict(x=np.ones((1000, 4))),
        "strings": dict(x=np.array([["a", "b", "c"]])),
        "ragged lists": dict(x=[[1.0, 2.0, 3.0], [1.0, 2.0]]),
        "nulls for an int power": dict(x=np.ones((1, 3)), power=None),
        "power as str": dict(x=np.ones((2, 3)), power="2"),
        "a dict": dict(x={"a": [1, 2, 3]}),
        "a frame": dict(x=pd.DataFrame(np.ones((300, 3)))),
        "missing": dict(power=1),
        "an infinity": dict(x=np.array([[1.0, math.inf, 3.0]])),
        "big, -infinity": dict(x=np.where(np.arange(3000).reshape(1000, 3) == 2999, -math.inf, 1.0)),
    }
    for arguments in bad.values():
        same_refusal(manager, svc, "norms", **arguments)
    messages = same_refusal(manager, svc, "head", x=np.ones((5, 5)))
    assert "expected shape (n, 3), got (5, 5)" in messages

    x = np.arange(3000.0).reshape(1000, 3) / 7
    assert svc.norms(x) == norms(x)
    assert svc.norms(x.astype(np.int64), power=1) == norms(x.astype(np.int64), power=1)
    assert svc.norms([[3, 4, 0]]) == [5.0]
    assert svc.head(x, n=2) == head(x, n=2)
    assert access_lines(manager, "arrays", 422, "norms", at_least=len(bad)) == len(bad)


def test_plain_service_checks_every_scalar_type(manager: Any) -> None:
    svc = deploy(manager, "plain", [scalars, echo])
    good = dict(n=2, x=3.0, s="abc", flag=True, items=[1, "a"], mapping={"b": 1, "a": 2})
    assert svc.scalars(**good) == scalars(**good)
    assert svc.scalars(**{**good, "x": 3}) == scalars(**{**good, "x": 3})  # an int is a fine float
    long = {**good, "s": "x" * 1000, "items": list(range(1000))}  # past the size checked on stand-ins
    assert svc.scalars(**long) == scalars(**long)
    wrongs = [("n", 2.0), ("n", "2"), ("n", None), ("x", "3"), ("s", 1), ("flag", 0), ("items", {"a": 1}),
              ("mapping", [1]), ("items", "y" * 1000), ("mapping", list(range(1000))), ("s", {"k": "v" * 1000})]
    for field, wrong in wrongs:
        same_refusal(manager, svc, "scalars", **{**good, field: wrong})
    for wrong in (math.inf, -math.inf, np.float32("inf")):
        message = same_refusal(manager, svc, "scalars", **{**good, "x": wrong})
        assert "x: expected a finite number, got" in message
    # What curl may send: the literals Python's json reads, and numbers past the float range.
    for literal, got in (("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e400", "Infinity"),
                         ("-1e400", "-Infinity"), ("NaN", "NaN")):
        body = f'{{"n": 2, "x": {literal}, "s": "abc", "flag": true, "items": [], "mapping": {{}}}}'
        resp = served(manager, "plain", "scalars", body)
        assert resp.status_code == 422, resp.text
        assert f"x: expected a finite number, got {got}" in strict_json(resp.text)["message"]
    # Where any value goes, the function gets them; its answer is still JSON proper (null for each).
    resp = served(manager, "plain", "echo", '{"value": [Infinity, -Infinity, NaN, 1e400]}')
    assert resp.status_code == 200 and strict_json(resp.text) == [[None, None, None, None]]
    same_refusal(manager, svc, "scalars", n=1)
    same_refusal(manager, svc, "echo", times=2)
    same_refusal(manager, svc, "echo", value=1, times="2")
    for value in (None, 1, "x", [1, {"a": None}], {"k": [1.5]}, list(range(2000))):
        assert svc.echo(value, times=2) == echo(value, times=2)


# --- the checks on their own -----------------------------------------------------------


def _entrypoint(sample: Any, **types: str) -> dict[str, Any]:
    parameters = [{"name": n, "kind": "POSITIONAL_OR_KEYWORD", "type": t, "required": True} for n, t in types.items()]
    return {"entrypoints": [{"name": "f", "parameters": parameters}], "sample": encode_sample(sample)}


def _verdicts(info: dict[str, Any], **arguments: Any) -> tuple[Any, Any]:
    """(runner on the parsed body, connect's check) for the same call: each None or (message, errors)."""
    entrypoint = inputs.checkers(info)["f"]
    try:
        entrypoint.arguments(json.loads(body_of(**arguments)))
        server = None
    except inputs.InvalidInput as exc:
        server = (str(exc), exc.errors)
    try:
        _Checks(info).check("f", arguments, {k: encode(v) for k, v in arguments.items()})
        client = None
    except InvalidInput as exc:
        client = (exc.message, exc.detail)
    return server, client


N = 400
SAMPLE = pd.DataFrame(
    {
        "i": np.arange(N),
        "i32": np.arange(N, dtype=np.int32),
        "f": np.linspace(0, 1, N),
        "f32": np.linspace(0, 1, N).astype("float32"),
        "b": np.arange(N) % 2 == 0,
        "s": [f"s{i % 7}" for i in range(N)],
        "c": pd.Categorical([f"c{i % 3}" for i in range(N)]),
        "d": pd.date_range("2024-01-01", periods=N, freq="h"),
        "dns": pd.Series(pd.date_range("2024-01-01", periods=N, freq="h")).astype("datetime64[ns]"),
        "tz": pd.date_range("2024-01-01", periods=N, freq="h", tz="UTC"),
        "I": pd.array([None if i % 5 == 0 else i for i in range(N)], dtype="Int64"),
        "o": pd.Series([{"k": i} if i % 3 else None for i in range(N)], dtype=object),
    }
)
REPLACEMENTS = {
    "int": np.arange(N),
    "float": np.linspace(0, 1, N) + 0.5,
    "whole floats": np.arange(N) * 1.0,
    "bool": np.arange(N) % 2 == 0,
    "str": pd.Series([f"v{i}" for i in range(N)]),
    "digits": pd.Series([str(i) for i in range(N)]),
    "nan": np.full(N, np.nan),
    "some nan": pd.Series([np.nan if i % 4 == 0 else i + 0.25 for i in range(N)]),
    "huge int": np.full(N, 2**40),
    "Int64": pd.array(range(N), dtype="Int64"),
    "category": pd.Categorical(["a"] * N),
    "lists": pd.Series([[i] for i in range(N)], dtype=object),
    "mixed": pd.Series([i if i % 2 else "x" for i in range(N)], dtype=object),
    "dates": pd.date_range("2024-01-01", periods=N, freq="D"),
    "ns dates": pd.Series(pd.date_range("2024-01-01", periods=N, freq="ns")),
    "second dates": pd.Series(pd.date_range("2024-01-01", periods=N, freq="s")).astype("datetime64[s]"),
    "old dates": pd.Series(pd.date_range("1500-01-01", periods=N, freq="D")).astype("datetime64[us]"),
    "tz dates": pd.Series(pd.date_range("2024-03-31", periods=N, freq="min", tz="Europe/Paris")),
    "all NaT": pd.Series([pd.NaT] * N, dtype="datetime64[us]"),
    "infinity": pd.Series([np.inf if i == 7 else i / 3 for i in range(N)]),
    "known categories": pd.Series([f"c{i % 2}" for i in range(N)]),
    "known categorical": pd.Categorical([f"c{i % 2}" for i in range(N)], categories=["c1", "c0", "c9"]),
    "unknown categories": pd.Series([f"c{i % 5}" for i in range(N)]),
    "one null": pd.Series([None if i == N - 1 else f"s{i % 3}" for i in range(N)], dtype="str"),
}
# Without the Int64 and object columns every column of a frame may go the cheap way.
SAMPLES = {"mixed": SAMPLE, "plain": SAMPLE.drop(columns=["I", "o"])}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(("sample", "column"), [(name, str(c)) for name, frame in SAMPLES.items() for c in frame.columns])
def test_frame_checks_give_the_runners_verdict_for_every_dtype(sample: str, column: str) -> None:
    base = SAMPLES[sample]
    info = _entrypoint(base, data="dataframe")
    refused = 0
    for replacement in REPLACEMENTS.values():
        frame = base.assign(**{column: replacement})
        for variant in (frame, frame[list(reversed(frame.columns))], frame.drop(columns=["s"]).assign(extra=1)):
            server, client = _verdicts(info, data=variant)
            assert client == server
            refused += server is not None
    assert refused  # the matrix holds refusals, not only passes


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "int32", "uint8", "bool"])
def test_array_checks_give_the_runners_verdict(dtype: str) -> None:
    info = _entrypoint(np.zeros((3, 4), dtype=dtype), x="ndarray", n="int")
    arrays = [
        np.arange(800.0).reshape(200, 4), np.arange(800).reshape(200, 4), np.arange(800).reshape(100, 8),
        (np.arange(800) % 2 == 0).reshape(200, 4), np.full((200, 4), np.nan), np.full((200, 4), 2**40),
        np.arange(800.0).reshape(200, 4) + 0.5, np.arange(800.0, dtype="float32").reshape(200, 4), np.zeros((0, 4)),
        np.arange(800).reshape(200, 2, 2), np.array(["a"] * 800).reshape(200, 4), np.arange(800.0),
    ]
    for array in arrays:
        for n in (3, "3", [1] * 500):
            server, client = _verdicts(info, x=array, n=n)
            assert client == server


def test_checking_a_big_frame_costs_little_next_to_encoding_it() -> None:
    rows = 200_000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(rows, 8)), columns=[f"x{i}" for i in range(8)])
    frame["when"] = pd.date_range("2024-01-01", periods=rows, freq="s")
    frame["kind"] = [f"k{i % 50}" for i in range(rows)]
    info = _entrypoint(frame.head(50), data="dataframe")
    checks = _Checks(info)
    checks.entrypoint("f")  # built once per service, on the first call

    start = time.perf_counter()
    text = encode(frame)
    encoding = time.perf_counter() - start
    start = time.perf_counter()
    checks.check("f", {"data": frame}, {"data": text})
    checking = time.perf_counter() - start
    assert checking < 0.1 * encoding, (checking, encoding)
    with pytest.raises(InvalidInput, match="missing columns 'x3'"):
        bad = frame.drop(columns=["x3"])
        checks.check("f", {"data": bad}, {"data": encode(bad)})


def test_frame_checks_read_column_labels_as_the_runner_does() -> None:
    info = _entrypoint(pd.DataFrame({"a": [1.0], "b": ["x"], "0": [1]}), data="dataframe")
    rows = 300
    frames = [
        pd.DataFrame({"a": np.arange(float(rows)), "b": ["x"] * rows, "0": 1}),
        pd.DataFrame({"a": np.arange(float(rows)), "b": ["x"] * rows, "0": 1, 1: 2}),
        pd.DataFrame(np.ones((rows, 3)), columns=pd.MultiIndex.from_tuples([("a", 1), ("b", 2), ("0", 3)])),
        pd.DataFrame(np.ones((rows, 3)), columns=["a", "b", "a"]),
        pd.DataFrame(np.ones((rows, 3)), columns=["a", "b", 0.0]),
    ]
    for frame in frames:
        server, client = _verdicts(info, data=frame)
        assert client == server


def test_dataframes_travel_with_exact_floats_and_nulls():
    """What the service receives is what the notebook holds: no rounding, missing values as null."""
    frame = pd.DataFrame({
        "tiny": [1e-12, float("nan"), 0.1 + 0.2],
        "when": pd.to_datetime(["2020-01-01 00:00:00", None, "2021-05-06 07:08:09"]),
        "name": ["x", None, "z"],
    })
    body = json.loads(encode(frame))
    assert body["columns"] == ["tiny", "when", "name"]
    assert body["data"][0][0] == 1e-12 and body["data"][2][0] == 0.1 + 0.2
    assert body["data"][1] == [None, None, None]
    assert body["data"][2][1] == "2021-05-06T07:08:09"


def test_a_frame_with_number_column_labels_round_trips(manager):
    """Labels come back from JSON as text or numbers; both match the sample's columns."""
    frame = pd.DataFrame(np.arange(6.0).reshape(3, 2))

    def total(data: pd.DataFrame) -> float:
        """Sum of all cells."""
        return float(data.to_numpy().sum())

    dep = jupyter_deploy.deploy("numbered", [total], sample=frame, url=manager.url, token=manager.token,
                                progress=Progress("numbered", rich=False, stream=io.StringIO()))
    assert dep.connect().total(frame) == 15.0
    headers = {"Authorization": f"Bearer {dep.token}"}
    for body in ({"columns": [0, 1], "data": [[1, 2]]}, [{"0": 1, "1": 2}]):
        resp = requests.post(dep.endpoint("total"), json={"data": body}, headers=headers, timeout=30)
        assert resp.status_code == 200 and resp.json() == 3.0
