"""The input half of the contract: which request bodies fit an entrypoint, and the arguments they make.

The runner applies these rules to every call; ``connect()`` applies the same
ones in the notebook before sending, so a bad call fails there with the
service's own message. Each parameter is read in two steps: ``parse`` builds
the Python value from the JSON one (a DataFrame from records, an array from
nested lists) and ``check`` holds it against the sample (columns, dtypes,
shape). A caller that already holds the value ``parse`` would build passes it
as *prepared* and only ``check`` runs.

pandas and numpy are imported only when the manifest has a parameter or sample
that needs them, and when the entrypoints are compiled rather than on the first call.
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Collection

from . import SCALAR_TYPES, param_type


class InvalidInput(Exception):
    """The body does not fit the entrypoint; answered with 422 ``invalid-input``."""

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


class _FieldProblems(Exception):
    # Raised by a converter with every problem it found in one field, so the
    # caller can keep going and report all fields at once.
    def __init__(self, parts: list[str], errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(parts))
        self.parts = parts
        self.errors = errors


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(
        type(value), type(value).__name__
    )


def _quoted(names: list[Any]) -> str:
    return ", ".join(repr(str(n)) for n in names)


FINITE = "a finite number"
"""What a 422 says is expected where a number is: JSON has no NaN or infinity, and 1e400 overflows to one."""


def _nonfinite_name(value: float) -> str:
    # The JSON-ish spelling: what the caller sent was NaN, Infinity, -Infinity, or a number like 1e400.
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


def _nonfinite_problem(param: Param, value: float) -> _FieldProblems:
    got = _nonfinite_name(value)
    return _FieldProblems(
        [f"expected {FINITE}, got {got}" + ("" if got == "NaN" else " (or a number too large for a float, such as 1e400)")],
        [{"field": param.name, "problem": "value", "expected": FINITE, "got": got}],
    )


# ---------------------------------------------------------------- samples


@dataclass
class FrameSample:
    """Columns and dtypes a dataframe parameter must match (from the manifest sample)."""

    columns: list[Any]
    by_str: dict[str, Any]
    dtypes: dict[Any, Any]
    dtype_names: dict[Any, str]
    not_null: list[Any] = field(default_factory=list)
    """Columns the sample's schema says never miss a value."""


@dataclass
class ArraySample:
    """Trailing shape and dtype an ndarray parameter must match (from the manifest sample)."""

    trailing: tuple[int | None, ...] | None
    dtype: Any


def _frame_sample(sample: dict[str, Any]) -> FrameSample | None:
    import pandas as pd

    columns = sample.get("columns")
    if not isinstance(columns, list) or not columns:
        return None
    dtypes: dict[Any, Any] = {}
    names: dict[Any, str] = {}
    schema = sample.get("schema")
    info: dict[str, dict[str, Any]] = (
        {k: v for k, v in schema.items() if isinstance(v, dict)} if isinstance(schema, dict) else {}
    )
    not_null = [c for c in columns if info.get(str(c), {}).get("nullable") is False]
    for col in columns:
        name = (sample.get("dtypes") or {}).get(str(col))
        if not isinstance(name, str):
            continue
        categories = info.get(str(col), {}).get("categories")
        try:
            if name == "category" and isinstance(categories, list):
                # Plain "category" would infer categories from each request, so codes would not match the model's.
                dtypes[col] = pd.CategoricalDtype(categories)
            else:
                dtypes[col] = pd.api.types.pandas_dtype(name)
        except (TypeError, ValueError):
            # A dtype this pandas does not know: serve without casting that column
            # rather than refusing every request.
            continue
        names[col] = name
    return FrameSample(
        columns=list(columns),
        by_str={str(c): c for c in columns},
        dtypes=dtypes,
        dtype_names=names,
        not_null=not_null,
    )


def _array_sample(sample: dict[str, Any]) -> ArraySample:
    import numpy as np

    shape = sample.get("shape")
    trailing = None
    if isinstance(shape, list) and shape:
        trailing = tuple(d if isinstance(d, int) else None for d in shape[1:])
    dtype = None
    if isinstance(sample.get("dtype"), str):
        try:
            dtype = np.dtype(sample["dtype"])
        except TypeError:
            dtype = None
    return ArraySample(trailing=trailing, dtype=dtype)


# ---------------------------------------------------------------- converters


def _scalar(kind: str) -> Callable[[Any, "Param"], Any]:
    def convert(value: Any, param: Param) -> Any:
        t = type(value)
        if kind == "float" and t is int:
            return float(value)
        if kind == "float" and t is float and not math.isfinite(value):
            # NaN, Infinity and 1e400 parse as floats, but no model means them as an input number.
            raise _nonfinite_problem(param, value)
        # `type(...) is` so that JSON true/false never pass as int or float.
        if t.__name__ == kind and t in (int, float, str, bool, list, dict):
            return value
        raise _FieldProblems(
            [f"expected {kind}, got {_json_type(value)}"],
            [{"field": param.name, "problem": "type", "expected": kind, "got": _json_type(value)}],
        )

    return convert


def _bad_shape(param: Param, expected: str, value: Any) -> _FieldProblems:
    return _FieldProblems(
        [f"expected {expected}, got {_json_type(value)}"],
        [{"field": param.name, "problem": "type", "expected": expected, "got": _json_type(value)}],
    )


_FRAME_FORMS = 'records (a list of objects), a dict of columns or split form {"columns", "data"}'


def _build_frame(value: Any, param: Param) -> Any:
    import pandas as pd

    sample = param.frame
    try:
        if isinstance(value, list):
            if not all(type(row) is dict for row in value):
                raise _bad_shape(param, _FRAME_FORMS, value)
            if not value and sample is not None:
                return pd.DataFrame(columns=sample.columns)
            return pd.DataFrame(value)
        if isinstance(value, dict):
            data = value.get("data")
            if (
                isinstance(value.get("columns"), list)
                and isinstance(data, list)
                and value.keys() <= {"columns", "data", "index"}
                and type(value.get("index", [])) is list
                and all(type(row) is list for row in data)
            ):
                labels = [c for c in value["columns"] if not (c is None or type(c) in (str, int, float, bool))]
                if labels:
                    # pandas fails on list or dict labels with errors of its own, deep inside.
                    raise _FieldProblems(
                        [f"split form columns must be names (strings or numbers), not {_json_type(labels[0])}"],
                        [{"field": param.name, "problem": "type", "expected": "column names",
                          "got": _json_type(labels[0])}],
                    )
                return pd.DataFrame(data, columns=value["columns"], index=value.get("index"))
            not_lists = [k for k, v in value.items() if type(v) is not list]
            if not_lists:
                raise _FieldProblems(
                    [f"expected {_FRAME_FORMS}; a dict of columns maps names to lists, "
                     f"but {_quoted(not_lists)} {'is' if len(not_lists) == 1 else 'are'} not a list"],
                    [{"field": param.name, "column": str(k), "problem": "type", "expected": "list"} for k in not_lists],
                )
            return pd.DataFrame(value)
    except (ValueError, TypeError) as exc:
        raise _FieldProblems(
            [f"cannot build a DataFrame: {exc}"], [{"field": param.name, "problem": "value", "detail": str(exc)}]
        ) from exc
    raise _bad_shape(param, _FRAME_FORMS, value)


def _is_stringish(dtype: Any) -> bool:
    if type(dtype).__name__ == "CategoricalDtype":
        return False  # its kind is "O" too, but its values must be cast to its categories
    return dtype == object or getattr(dtype, "kind", None) in ("O", "U", "T") or type(dtype).__name__ == "StringDtype"


def _cast(series: Any, dtype: Any) -> Any:
    import numpy as np

    if getattr(dtype, "kind", None) in ("i", "u", "f"):
        # JSON true/false are no numbers, as for scalar parameters, though astype would make them 1/0.
        have = getattr(series.dtype, "kind", None)
        if have == "b" or (have == "O" and any(type(v) is bool for v in series)):
            raise ValueError("booleans in a numeric column")
    out = series.astype(dtype)
    # astype truncates 1.5 to 1 silently; refuse that instead of predicting on altered data.
    if getattr(dtype, "kind", None) in ("i", "u") and getattr(series.dtype, "kind", None) == "f":
        if not np.array_equal(out.to_numpy(), series.to_numpy()):
            raise ValueError("non-integral values")
    # Likewise a value outside the categories would silently become a missing one.
    if getattr(dtype, "categories", None) is not None and (out.isna() & series.notna()).any():
        raise ValueError("values outside the categories")
    return out


def _has_infinity(values: Any) -> bool:
    """Whether a float column or array holds Infinity or -Infinity (NaN is a missing value, not this)."""
    import numpy as np

    if getattr(values.dtype, "kind", None) not in ("f", "c"):
        return False
    if not isinstance(values.dtype, np.dtype):
        values = values.to_numpy(dtype="float64", na_value=np.nan)  # nullable Float64 holds pd.NA
    return bool(np.isinf(values).any())


def _infinite_column(param: Param, col: Any) -> tuple[str, dict[str, Any]]:
    return (f"column {str(col)!r} holds Infinity or -Infinity (or a number too large for a float, such as 1e400), "
            f"where finite numbers are expected",
            {"field": param.name, "column": str(col), "problem": "value", "expected": FINITE})


def _check_frame(df: Any, param: Param) -> Any:
    sample = param.frame
    parts: list[str] = []
    errors: list[dict[str, Any]] = []
    if sample is None:
        # No schema to say which columns are numbers: every float column is one.
        for col in [df.columns[i] for i in range(df.shape[1]) if _has_infinity(df.iloc[:, i])]:
            part, error = _infinite_column(param, col)
            parts.append(part)
            errors.append(error)
        if parts:
            raise _FieldProblems(parts, errors)
        return df
    cols = list(df.columns)
    twice = [c for c, n in Counter(str(c) for c in cols).items() if n > 1]
    if twice:
        # Only split form can repeat a column; matching it to the sample's would be a guess.
        raise _FieldProblems(
            [f"duplicate columns {_quoted(twice)}"],
            [{"field": param.name, "column": c, "problem": "value"} for c in twice],
        )
    if cols != sample.columns:
        present = {str(c) for c in cols}
        missing = [c for c in sample.columns if str(c) not in present]
        unexpected = [c for c in cols if str(c) not in sample.by_str]
        if missing:
            parts.append(f"missing columns {_quoted(missing)}")
            errors += [{"field": param.name, "column": str(c), "problem": "missing"} for c in missing]
        if unexpected:
            parts.append(f"unexpected columns {_quoted(unexpected)}")
            errors += [{"field": param.name, "column": str(c), "problem": "unexpected"} for c in unexpected]
        # Labels travel as JSON (split form keeps numbers, records turn them into strings): match
        # them to the sample's by their text, whatever their type.
        df = df.rename(columns={c: sample.by_str[str(c)] for c in cols if str(c) in sample.by_str})
        if not missing:
            df = df[sample.columns] if not unexpected else df
    for col in sample.not_null:
        # Checked before casting, which would turn a bool column's null into False.
        if col in df.columns and df[col].isna().any():
            parts.append(f"column {str(col)!r} has missing values (null), which the sample never had")
            errors.append({"field": param.name, "column": str(col), "problem": "value", "expected": "no nulls"})
    for col, dtype in sample.dtypes.items():
        if col not in df.columns:
            continue
        have = df[col].dtype
        if getattr(dtype, "kind", None) in ("i", "u", "f") and _has_infinity(df[col]):
            # Named as what it is: a cast to int would only say it failed, and a float column would keep it.
            part, error = _infinite_column(param, col)
            parts.append(part)
            errors.append(error)
            continue
        if have == dtype or (_is_stringish(dtype) and _is_stringish(have)):
            continue
        try:
            df[col] = _cast(df[col], dtype)
        except (ValueError, TypeError, OverflowError):
            name = sample.dtype_names[col]
            parts.append(f"column {str(col)!r} cannot be cast to {name}")
            errors.append({"field": param.name, "column": str(col), "problem": "dtype", "expected": name})
    if parts:
        raise _FieldProblems(parts, errors)
    return df


def _series(value: Any, param: Param) -> Any:
    import pandas as pd

    if type(value) not in (list, dict):
        raise _bad_shape(param, "a list", value)
    try:
        return pd.Series(value)
    except (ValueError, TypeError) as exc:
        raise _FieldProblems([f"cannot build a Series: {exc}"], [{"field": param.name, "problem": "value"}]) from exc


def _fmt_shape(shape: tuple[Any, ...]) -> str:
    inner = ", ".join("n" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def _build_array(value: Any, param: Param) -> Any:
    import numpy as np

    if type(value) is not list:
        raise _bad_shape(param, "a (nested) list", value)
    sample = param.array
    dtype = sample.dtype if sample is not None else None
    trailing = sample.trailing if sample is not None else None
    if type(value) is list and not value and trailing is not None and None not in trailing:
        # Zero rows: [] carries no trailing shape, so take the sample's (as for an empty DataFrame).
        return np.empty((0, *trailing), dtype=dtype)
    try:
        arr = np.asarray(value, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        detail = f"cannot convert to {dtype}" if dtype is not None else "cannot convert to an array"
        raise _FieldProblems(
            [f"{detail}: {exc}"],
            [{"field": param.name, "problem": "dtype" if dtype is not None else "value",
              **({"expected": str(dtype)} if dtype is not None else {})}],
        ) from exc
    return arr


def _check_array(arr: Any, param: Param) -> Any:
    sample = param.array
    if sample is not None and sample.trailing is not None:
        want = sample.trailing
        got = arr.shape[1:]
        if arr.ndim != len(want) + 1 or any(w is not None and w != g for w, g in zip(want, got)):
            expected = _fmt_shape((None, *want))
            raise _FieldProblems(
                [f"expected shape {expected}, got {_fmt_shape(arr.shape)}"],
                [{"field": param.name, "problem": "shape", "expected": expected, "got": _fmt_shape(arr.shape)}],
            )
    if _has_infinity(arr):
        raise _FieldProblems(
            ["holds Infinity or -Infinity (or a number too large for a float, such as 1e400), "
             "where finite numbers are expected"],
            [{"field": param.name, "problem": "value", "expected": FINITE}],
        )
    return arr


def _any(value: Any, param: Param) -> Any:
    return value


Step = Callable[[Any, "Param"], Any]

_STEPS: dict[str, tuple[Step, Step]] = {
    **{kind: (_scalar(kind), _any) for kind in SCALAR_TYPES},
    "dataframe": (_build_frame, _check_frame),
    "series": (_series, _any),
    "ndarray": (_build_array, _check_array),
    "any": (_any, _any),
}
"""Per parameter type: (parse the JSON value, check the parsed value)."""


# ---------------------------------------------------------------- entrypoints


@dataclass
class Param:
    """One parameter as calls are checked against it: effective type, defaults, sample, its two steps."""

    name: str
    kind: str
    type: str
    required: bool
    has_default: bool = False
    default: Any = None
    frame: FrameSample | None = None
    array: ArraySample | None = None
    parse: Step = field(default=_any, repr=False)
    check: Step = field(default=_any, repr=False)


@dataclass
class Entrypoint:
    """A served function with its parameters; turns a request body into call arguments."""

    name: str
    fn: Callable[..., Any]
    params: list[Param]
    label: str = ""

    def __post_init__(self) -> None:
        self.by_name = {p.name: p for p in self.params}
        self.positional_only = [p for p in self.params if p.kind == "POSITIONAL_ONLY"]
        shown = [p.name if p.required else f"{p.name}=..." for p in self.params]
        self.label = f"{self.name}({', '.join(shown)})"

    def arguments(self, body: dict[str, Any], prepared: Collection[str] = ()) -> tuple[list[Any], dict[str, Any]]:
        """Validate and convert ``body``; raise InvalidInput listing every problem.

        Names in ``prepared`` hold values already parsed (what ``parse`` would build from their JSON):
        only the checks run on them.
        """
        missing = [p.name for p in self.params if p.required and p.name not in body]
        unexpected = [k for k in body if k not in self.by_name]
        parts: list[str] = []
        errors: list[dict[str, Any]] = []
        if missing:
            parts.append(f"missing parameters {_quoted(missing)}")
            errors += [{"field": n, "problem": "missing"} for n in missing]
        if unexpected:
            parts.append(f"unexpected parameters {_quoted(unexpected)}")
            errors += [{"field": str(n), "problem": "unexpected"} for n in unexpected]
        converted: dict[str, Any] = {}
        for param in self.params:
            if param.name not in body:
                continue
            value = body[param.name]
            # null for a parameter whose default is None means "use the default value".
            if value is None and param.has_default and param.default is None:
                converted[param.name] = None
                continue
            try:
                parsed = value if param.name in prepared else param.parse(value, param)
                converted[param.name] = param.check(parsed, param)
            except _FieldProblems as exc:
                parts.append(f"{param.name}: {'; '.join(exc.parts)}")
                errors += exc.errors
        if parts:
            raise InvalidInput(f"input does not fit {self.label}: {'; '.join(parts)}", errors)

        args: list[Any] = []
        if self.positional_only:
            # Positional-only arguments cannot skip a slot, so a gap is filled
            # with the manifest default (or refused when there is none).
            last = max((i for i, p in enumerate(self.positional_only) if p.name in converted), default=-1)
            for param in self.positional_only[: last + 1]:
                if param.name in converted:
                    args.append(converted.pop(param.name))
                elif param.has_default:
                    args.append(param.default)
                else:
                    raise InvalidInput(
                        f"input does not fit {self.label}: {param.name}: needed because a later "
                        f"positional-only parameter is given",
                        [{"field": param.name, "problem": "missing"}],
                    )
        return args, converted


def _params_from_signature(fn: Callable[..., Any]) -> list[dict[str, Any]]:
    # Only for hand-written manifests without "parameters".
    out = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out.append({"name": p.name, "kind": p.kind.name, "type": "any", "required": p.default is p.empty})
    return out


def compile_entrypoints(manifest: dict[str, Any], functions: dict[str, Callable[..., Any]]) -> dict[str, Entrypoint]:
    """Build the per-entrypoint converters from the manifest (imports pandas/numpy if needed)."""
    return _compile(manifest, functions)


def _checker_only(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("this entrypoint only checks arguments; the function runs in the service")


def checkers(manifest: dict[str, Any]) -> dict[str, Entrypoint]:
    """Entrypoints from the manifest alone, so a client can run the runner's own input checks before sending."""
    # Without "parameters" the runner reads the function's signature, which a client does not have.
    specs = [s for s in manifest.get("entrypoints") or [] if isinstance(s.get("parameters"), list)]
    return _compile({**manifest, "entrypoints": specs}, None)


def _compile(manifest: dict[str, Any], functions: dict[str, Callable[..., Any]] | None) -> dict[str, Entrypoint]:
    sample = manifest.get("sample") if isinstance(manifest.get("sample"), dict) else None
    sample_kind = sample.get("kind") if sample else None
    frame = _frame_sample(sample) if sample_kind == "dataframe" else None
    array = _array_sample(sample) if sample_kind == "ndarray" else None
    result: dict[str, Entrypoint] = {}
    for spec in manifest["entrypoints"]:
        name = spec["name"]
        fn = functions[name] if functions is not None else _checker_only
        raw_params = spec.get("parameters")
        if not isinstance(raw_params, list):
            raw_params = _params_from_signature(fn)
        params = []
        for index, raw in enumerate(raw_params):
            kind = param_type(raw.get("type"))
            # The sample describes the first parameter, so an unannotated first
            # parameter is treated as what the sample shows.
            if index == 0 and kind == "any" and sample_kind in ("dataframe", "ndarray"):
                kind = sample_kind
            param = Param(
                name=raw["name"],
                kind=raw.get("kind") or "POSITIONAL_OR_KEYWORD",
                type=kind,
                required=bool(raw.get("required", "default" not in raw)),
                has_default="default" in raw,
                default=raw.get("default"),
                frame=frame if index == 0 and kind == "dataframe" else None,
                array=array if index == 0 and kind == "ndarray" else None,
                parse=_STEPS[kind][0],
                check=_STEPS[kind][1],
            )
            params.append(param)
        if any(p.type in ("dataframe", "series") for p in params):
            import pandas  # noqa: F401  (imported now so the first request does not pay for it)
        if any(p.type == "ndarray" for p in params):
            import numpy  # noqa: F401
        result[name] = Entrypoint(name=name, fn=fn, params=params)
    return result
