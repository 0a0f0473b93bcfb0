"""``connect(name)``: a deployed service as a Python object whose entrypoints are methods."""

from __future__ import annotations

import inspect
import json
import sys
from typing import Any

import jupyter_deploy_contract as contract
from jupyter_deploy_contract import inputs

from .client import ManagerClient
from .errors import InvalidInput

SMALL_ARGUMENT = 256
"""An argument whose JSON is at most this many characters is checked by parsing it: exact and cheap."""

_ANNOTATIONS = {
    "dataframe": "pandas.DataFrame",
    "series": "pandas.Series",
    "ndarray": "numpy.ndarray",
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "list": list,
    "dict": dict,
}


def encode(value: Any) -> str:
    """JSON text for one argument: DataFrames in pandas' split form with exact floats, missing values as null.

    An infinity goes as ``1e999`` (a number past the float range), not as null: the service refuses it
    where it expects a number, as the checks here do, instead of reading a missing value.
    """
    try:
        return contract.dumps(value, frames="split", infinity="overflow").decode()
    except contract.Unserialisable as exc:
        raise TypeError(f"cannot send a {exc.type_name} as JSON") from None


# --- client-side input checks -------------------------------------------------
#
# The service answers 422 when a body does not fit an entrypoint. The same
# check runs here first, with the contract's input rules that the runner
# applies (jupyter_deploy_contract.inputs), so a bad call fails at once, with
# the same message, and sends nothing. Each argument is checked on a stand-in
# that gets the runner's exact verdict for the argument's JSON: the parsed JSON
# itself when it is small, else something cheap (an empty list for a big list;
# prepared values that skip the parse step: the local frame with only the
# columns whose JSON could read differently rebuilt from their JSON, a
# zero-copy array of the same shape and dtype), so checking a big frame or
# array costs little next to encoding it. Which local
# columns are "safe" mirrors what the runner checks (names, nulls, casts);
# tests/jupyter_deploy/test_remote.py compares both verdicts over a dtype matrix.


def _by_json_type(text: str) -> Any:
    """A tiny value of the same JSON type as ``text``: all a scalar, list, dict or any parameter checks."""
    first = text.lstrip()[:1]
    if first == "[":
        return []
    if first == "{":
        return {}
    if first == '"':
        return ""
    return json.loads(text)  # numbers, true/false/null: short anyway


def _safe_column(column: Any, target: Any) -> bool:
    """Whether the runner's checks cannot tell this local column from the column its JSON becomes."""
    np = sys.modules["numpy"]
    pd = sys.modules["pandas"]
    local = column.dtype
    numeric = isinstance(local, np.dtype) and local.kind in "biuf"
    strings = isinstance(local, pd.StringDtype) or (
        isinstance(local, pd.CategoricalDtype) and pd.api.types.infer_dtype(local.categories) == "string"
    )
    dates = getattr(local, "kind", None) == "M"
    if not (numeric or strings or dates):
        return False  # object columns and the like: JSON may turn their values into others
    if numeric and local.kind == "f" and np.isinf(column.to_numpy()).any():
        return False  # infinity goes as 1e999, which the runner refuses or casts its own way: ask its JSON
    if target is None or target == np.dtype(object):
        return True  # no cast, or a cast to object, which takes anything
    if isinstance(target, pd.CategoricalDtype):
        if target.categories is None:
            return True  # any JSON scalar is a category of its own
        # The runner refuses values outside the sample's categories.
        return strings and set(column.dropna().unique().tolist()) <= set(target.categories.tolist())
    if isinstance(target, pd.StringDtype):
        return numeric or strings
    if isinstance(target, np.dtype) and numeric:
        # JSON numbers of a numeric column come back as int64/float64/bool (or all
        # null); these always cast to the same dtype or to a float.
        return local == target or target.kind == "f"
    if getattr(target, "kind", None) == "M" and dates:
        # ISO strings (microseconds, "Z" when tz-aware) parse back into the same
        # unit and awareness; another unit may be out of range or lose precision.
        naive = isinstance(local, np.dtype)
        if naive != isinstance(target, np.dtype) or _unit(local) != _unit(target):
            return False
        if _unit(local) == "ns":
            return True  # nanosecond values are always within years 1677-2262
        low, high = column.min(), column.max()
        return low is pd.NaT or (low.year >= 1 and high.year <= 9999)
    return False


def _unit(dtype: Any) -> str:
    np = sys.modules["numpy"]
    return dtype.unit if hasattr(dtype, "unit") else np.datetime_data(dtype)[0]


def _frame_standin(frame: Any, param: Any) -> Any:
    """The frame the runner builds from ``frame``'s JSON, as far as its checks can tell; None when unsure."""
    pd = sys.modules["pandas"]
    if isinstance(frame.columns, pd.MultiIndex) or not frame.columns.is_unique:
        return None
    sample = param.frame
    if sample is None:
        return []  # no sample: the runner only builds the frame, which pandas' split form always allows
    # Labels as the runner sees them: the JSON of the column index.
    labels = json.loads(encode(frame.iloc[:0]))["columns"]
    if len(labels) != frame.shape[1] or not all(label is None or type(label) in (str, int, float, bool) for label in labels):
        return None  # labels the runner refuses or reads its own way: let it see the real body
    unsafe = []
    for position, label in enumerate(labels):
        try:
            key = sample.by_str.get(str(label))
            target = sample.dtypes.get(key)
        except TypeError:  # an unhashable label
            return None
        if not _safe_column(frame.iloc[:, position], target):
            unsafe.append(position)
    # A shallow copy: the runner's checks read the safe columns' values (nulls) without copying them.
    standin = frame.copy(deep=False)
    standin.columns = pd.Index(labels, dtype=object)
    standin.index = pd.RangeIndex(len(standin))
    if unsafe:
        # Only these columns pay for a JSON round trip; built as the runner builds a split body.
        parsed = json.loads(encode(frame.iloc[:, unsafe]))
        rebuilt = pd.DataFrame(parsed["data"], columns=parsed["columns"])
        for index, position in enumerate(unsafe):
            standin.isetitem(position, rebuilt.iloc[:, index])
    return standin


def _array_standin(array: Any, param: Any) -> Any:
    """A zero-copy array with the shape and dtype the runner builds from ``array``'s JSON; None when unsure."""
    np = sys.modules["numpy"]
    if array.ndim == 0 or 0 in array.shape or array.dtype.kind not in "biuf":
        return None  # empty axes and odd dtypes do not survive tolist() -> asarray unchanged
    if array.dtype.kind == "f" and np.isinf(array).any():
        return None  # an infinity, which the runner refuses: let the checks see it in its JSON
    target = param.array.dtype if param.array is not None else None
    if target is not None and target != array.dtype and target.kind != "f":
        return None  # e.g. to a narrower int, which may overflow: only the real conversion can tell
    return np.broadcast_to(np.zeros((), dtype=target if target is not None else array.dtype), array.shape)


def _standin(param: Any, value: Any, text: str) -> tuple[Any, bool]:
    """What to check for one argument in place of its JSON ``text``, and whether it is already parsed."""
    if param is None:
        return None, False  # an unexpected parameter: only its name matters
    if len(text) <= SMALL_ARGUMENT:
        return json.loads(text), False
    module = type(value).__module__ or ""
    if param.type == "dataframe":
        if module.startswith("pandas") and hasattr(value, "columns"):
            standin = _frame_standin(value, param)
            if isinstance(standin, list):
                return standin, False
            if standin is not None:
                return standin, True
        # Records or a dict of columns: only the real conversion can tell (it costs about what the service pays).
        return (json.loads(text) if text.lstrip()[:1] in ("[", "{") else _by_json_type(text)), False
    if param.type == "ndarray":
        if module.startswith("numpy") and hasattr(value, "ndim"):
            standin = _array_standin(value, param)
            if standin is not None:
                return standin, True
        return (json.loads(text) if text.lstrip()[:1] == "[" else _by_json_type(text)), False
    # A Series is built from any JSON list or object, and scalar and any
    # parameters only look at the JSON type.
    return _by_json_type(text), False


class _Checks:
    """The contract's input checks for one service, built on first use (they may import pandas/numpy)."""

    def __init__(self, info: dict[str, Any]):
        self._manifest = {"entrypoints": info.get("entrypoints") or [], "sample": info.get("sample")}
        self._entrypoints: dict[str, Any] | None = None

    def entrypoint(self, name: str) -> Any:
        """The contract's Entrypoint for ``name``, or None when it cannot be checked here."""
        if self._entrypoints is None:
            try:
                self._entrypoints = inputs.checkers(self._manifest)
            except Exception:  # noqa: BLE001 - no pandas here, or a manifest this version does not read: the service checks
                self._entrypoints = {}
        return self._entrypoints.get(name)

    def check(self, name: str, arguments: dict[str, Any], encoded: dict[str, str]) -> None:
        """Raise InvalidInput, as the service's 422 would, when the arguments do not fit entrypoint ``name``."""
        entrypoint = self.entrypoint(name)
        if entrypoint is None:
            return
        try:
            standins = {key: _standin(entrypoint.by_name.get(key), arguments[key], text) for key, text in encoded.items()}
            body = {key: value for key, (value, _) in standins.items()}
            entrypoint.arguments(body, prepared={key for key, (_, prepared) in standins.items() if prepared})
        except inputs.InvalidInput as exc:
            raise InvalidInput(str(exc), reason="invalid-input", status=422, detail=exc.errors) from None
        except Exception:  # noqa: BLE001 - whatever the check itself trips on, the service decides
            return


def _bind(name: str, parameters: list[str], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Arguments by name, in call order; unknown and missing names are left for the input check."""
    if len(args) > len(parameters):
        raise TypeError(f"{name}() takes {len(parameters)} positional argument{'s' * (len(parameters) != 1)} "
                        f"but {len(args)} were given")
    bound = dict(zip(parameters, args))
    for key, value in kwargs.items():
        if key in bound:
            raise TypeError(f"{name}() got multiple values for argument {key!r}")
        bound[key] = value
    return bound


class RemoteService:
    """A deployed service; each entrypoint is a method with the real signature and docstring."""

    def __init__(self, name: str, client: ManagerClient, info: dict[str, Any]):
        self.name = name
        self._client = client
        self._info = info
        self._checks = _Checks(info)
        self.entrypoints = [e["name"] for e in info.get("entrypoints", [])]
        for entrypoint in info.get("entrypoints", []):
            setattr(self, entrypoint["name"], self._method(entrypoint))

    @property
    def version(self) -> str | None:
        """The main version serving calls."""
        return self._info.get("main_version")

    @property
    def url(self) -> str:
        """Base URL of the service on the manager."""
        return f"{self._client.url}/services/{self.name}"

    def _method(self, entrypoint: dict[str, Any]) -> Any:
        params = []
        for p in entrypoint.get("parameters", []):
            annotation = _ANNOTATIONS.get(p.get("type", "any"), inspect.Parameter.empty)
            default = p["default"] if "default" in p else (inspect.Parameter.empty if p.get("required", True) else None)
            params.append(inspect.Parameter(p["name"], inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation))
        signature = inspect.Signature(params)
        name = entrypoint["name"]
        client, service, checks = self._client, self.name, self._checks
        names = [p.name for p in params]

        def call(*args: Any, **kwargs: Any) -> Any:
            # Only what the caller gave: the service applies its own defaults. A
            # missing or unknown name is an InvalidInput worded as the service's 422.
            arguments = _bind(name, names, args, kwargs)
            encoded = {key: encode(value) for key, value in arguments.items()}
            checks.check(name, arguments, encoded)
            body = "{" + ", ".join(f"{json.dumps(k)}: {text}" for k, text in encoded.items()) + "}"
            return client.invoke_raw(service, name, body)

        call.__name__ = name
        call.__qualname__ = f"{self.name}.{name}"
        call.__doc__ = (entrypoint.get("doc") or f"Call entrypoint {name} of service {self.name}.") + (
            f"\n\nRemote: POST {self.url}/{name}"
        )
        call.__signature__ = signature  # type: ignore[attr-defined]
        return call

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.entrypoints))

    def __repr__(self) -> str:
        return f"<RemoteService {self.name} {self.version} at {self.url}: {', '.join(self.entrypoints)}>"

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()


def connect(name: str, url: str | None = None, token: str | None = None, timeout: float | None = None) -> RemoteService:
    """A client for a deployed service: ``connect("iris").predict(df)``.

    ``timeout`` is how many seconds a call may take before the client gives up on it (default
    ``$JUPYTER_DEPLOY_TIMEOUT``, else 60); the manager has its own limit, ``ManagerApp.call_timeout``.
    """
    client = ManagerClient(url, token, timeout=timeout)
    return RemoteService(name, client, client.service(name))
