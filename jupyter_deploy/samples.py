"""Encode a sample input for the manifest: a few JSON-safe rows, and a dataframe's column schema."""

from __future__ import annotations

import json
import sys
from typing import Any

from jupyter_deploy_contract import to_plain

from .errors import CaptureError

SAMPLE_ROWS = 5
"""A sample keeps at most this many rows; a dataframe's schema still reads them all."""

CATEGORY_LIMIT = 20
"""A string column of a dataframe sample lists its values when it has at most this many distinct ones."""


def encode_sample(sample: Any) -> dict[str, Any] | None:
    """Describe a sample input for the manifest: dataframe, ndarray or a JSON value."""
    if sample is None:
        return None
    module = type(sample).__module__ or ""
    if module.startswith("pandas") and _is_instance(sample, "pandas", "DataFrame"):
        return _encode_dataframe(sample)
    if module.startswith("pandas") and _is_instance(sample, "pandas", "Series"):
        # A Series travels as a JSON list, like the runner returns it.
        return {"kind": "json", "data": [to_plain(v, unknown="str") for v in sample.head(SAMPLE_ROWS).tolist()]}
    if module.startswith("numpy") and _is_instance(sample, "numpy", "ndarray"):
        return _encode_ndarray(sample)
    try:
        data = to_plain(sample)
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CaptureError(
            f"sample of type {type(sample).__name__} cannot be described: "
            "pass a pandas DataFrame, a numpy array or a JSON-serialisable value"
        ) from exc
    return {"kind": "json", "data": data}


def _is_instance(obj: Any, module: str, name: str) -> bool:
    loaded = sys.modules.get(module)
    cls = getattr(loaded, name, None) if loaded is not None else None
    return isinstance(cls, type) and isinstance(obj, cls)


def _encode_dataframe(frame: Any) -> dict[str, Any]:
    head = frame.head(SAMPLE_ROWS)
    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns):
        raise CaptureError(f"sample DataFrame has duplicate column names: {columns}")
    records = [
        {column: to_plain(value, unknown="str") for column, value in zip(columns, row)}
        for row in head.itertuples(index=False, name=None)
    ]
    return {
        "kind": "dataframe",
        "columns": columns,
        "dtypes": {str(c): str(t) for c, t in frame.dtypes.items()},
        "records": records,
        "rows": int(len(frame)),
        "schema": {column: _column_schema(frame.iloc[:, i]) for i, column in enumerate(columns)},
    }


def _column_schema(series: Any) -> dict[str, Any]:
    """The manifest schema of one sample column, over all its rows (not only the stored head)."""
    pandas = sys.modules["pandas"]  # loaded: the sample is one of its frames
    api = pandas.api.types
    dtype = series.dtype
    info: dict[str, Any] = {"dtype": str(dtype), "type": "any", "nullable": bool(series.isna().any())}
    # Category first: is_bool_dtype and friends look through to the categories' dtype.
    if isinstance(dtype, pandas.CategoricalDtype):
        info["type"] = "category"
        info["categories"] = [to_plain(c, unknown="str") for c in dtype.categories.tolist()]
    elif api.is_bool_dtype(dtype):
        info["type"] = "boolean"
    elif api.is_integer_dtype(dtype):
        info["type"] = "integer"
    elif api.is_float_dtype(dtype):
        info["type"] = "number"
    elif api.is_datetime64_any_dtype(dtype):
        info["type"] = "datetime"
    elif isinstance(dtype, pandas.StringDtype) or (
        dtype == object and api.infer_dtype(series, skipna=True) in ("string", "empty")
    ):
        # An object column of dicts, numbers or mixed values is no string column: it stays "any".
        info["type"] = "string"
        distinct = series.dropna().unique()
        if len(distinct) <= CATEGORY_LIMIT:
            info["categories"] = sorted(str(v) for v in distinct)
    return info


def _encode_ndarray(array: Any) -> dict[str, Any]:
    if array.ndim == 0:
        return {"kind": "json", "data": to_plain(array.item(), unknown="str")}
    head = array[:SAMPLE_ROWS]
    if head.dtype.kind == "M":
        # datetime64[ns].tolist() gives integers; microseconds give datetimes.
        head = head.astype("datetime64[us]")
    elif head.dtype.kind == "m":
        head = head.astype("timedelta64[us]")
    return {
        "kind": "ndarray",
        "shape": [None, *array.shape[1:]],
        "dtype": str(array.dtype),
        "data": to_plain(head.tolist(), unknown="str"),
    }

