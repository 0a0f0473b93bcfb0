"""Samples: dataframe, ndarray and JSON encodings, and a dataframe's column schema."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from jupyter_deploy.errors import CaptureError
from jupyter_deploy.samples import encode_sample


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
