"""Capture notebook functions into a bundle: validate, describe, pickle, pin requirements."""

from __future__ import annotations

import collections.abc
import datetime as _dt
import functools
import inspect
import io
import json
import keyword
import math
import os
import pickle
import platform
import re
import site
import sys
import sysconfig
import types
import typing
from typing import Any, Callable, Iterable, Mapping, Union

import cloudpickle

from .bundle import SERVICE_NAME_RE, VERSION_RE, Bundle, pack
from .errors import CaptureError
from .requirements import infer_requirements, is_stdlib, packages_distributions, top_level

SAMPLE_ROWS = 5

CATEGORY_LIMIT = 20
"""A string column of a dataframe sample lists its values when it has at most this many distinct ones."""

# Model attributes that say what input the model was fitted on (sklearn's names).
_FEATURE_ATTRS = ("feature_names_in_", "n_features_in_")

# Our own packages are never shipped by value: the runner does not need them,
# and an editable install of them would otherwise look like a local module.
_NEVER_BY_VALUE = frozenset({"jupyter_deploy", "jupyter_deploy_manager", "jupyter_deploy_runner"})
_NOT_MODULES = frozenset({"__main__", "__mp_main__", "builtins", "__builtin__"})

# The manager's rules, checked here too so a bad name fails before anything is pickled or uploaded.
_SERVICE_NAME = SERVICE_NAME_RE
_VERSION = VERSION_RE

Functions = Union[Callable[..., Any], Iterable[Callable[..., Any]], Mapping[str, Callable[..., Any]]]


def capture(
    functions: Functions,
    *,
    name: str,
    version: str | None = None,
    sample: Any = None,
    requirements: list[str] | None = None,
    monitor: bool | Iterable[str] = False,
) -> Bundle:
    """Validate ``functions``, pickle them with what they reach, and pack a bundle.

    ``monitor`` (True for all, or entrypoint names) marks entrypoints whose calls the manager keeps.
    """
    if not isinstance(name, str) or not _SERVICE_NAME.match(name):
        raise CaptureError(
            f"service name {name!r} is invalid: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 48 characters"
        )
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, (str, int)) or not _VERSION.match(str(version)):
            raise CaptureError(
                f"version {version!r} is invalid: use letters, digits, '.', '_' or '-', "
                "starting and ending with a letter or digit, at most 32 characters"
            )
    if isinstance(requirements, str):
        requirements = [requirements]

    named = _named_functions(functions)
    entrypoints = [describe(entry_name, fn) for entry_name, fn in named.items()]
    for entry in entrypoints:
        if entry["name"] in _monitored(monitor, named):
            entry["monitor"] = True
    sample_info = encode_sample(sample)
    payload, modules, features = _dump(named)
    modules |= runner_modules(entrypoints, sample_info)
    pinned, inferred = infer_requirements(modules, list(requirements or []))

    manifest = {
        "name": name,
        "version": None if version is None else str(version),
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "python_full": platform.python_version(),
        "cloudpickle": cloudpickle.__version__,
        "entrypoints": entrypoints,
        "requirements": pinned,
        "inferred": inferred,
        "sample": sample_info,
    }
    if features is not None:
        manifest["features"] = features
    return pack(manifest, payload)


def _monitored(monitor: bool | Iterable[str], named: Mapping[str, Any]) -> set[str]:
    """Entrypoint names to monitor; unknown names are an error, not silently ignored."""
    if monitor is True:
        return set(named)
    if not monitor:
        return set()
    if isinstance(monitor, str):
        monitor = [monitor]
    wanted = set(monitor)
    unknown = sorted(wanted - set(named))
    if unknown:
        raise CaptureError(f"cannot monitor {', '.join(unknown)}: no such entrypoint (have {', '.join(named)})")
    return wanted


def runner_modules(entrypoints: list[dict[str, Any]], sample_info: dict[str, Any] | None) -> set[str]:
    """Modules the runner needs to build the inputs, even when only string annotations mention them."""
    kinds = {p.get("type") for e in entrypoints for p in e.get("parameters", [])}
    if sample_info:
        kinds.add(sample_info.get("kind"))
    needed = set()
    if kinds & {"dataframe", "series"}:
        needed.add("pandas")
    if kinds & {"dataframe", "series", "ndarray"}:
        needed.add("numpy")
    return needed


# --- functions -------------------------------------------------------------


def _label(fn: Any) -> str:
    """A short name for ``fn`` to put in error messages."""
    label = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if isinstance(label, str):
        return label
    text = repr(fn)
    return text if len(text) <= 60 else text[:57] + "..."


def _named_functions(functions: Functions) -> dict[str, Callable[..., Any]]:
    """Entry point name -> function, after checking names and callability."""
    if isinstance(functions, Mapping):
        pairs = list(functions.items())
        from_dict = True
    elif callable(functions):
        pairs = [(None, functions)]
        from_dict = False
    elif isinstance(functions, (str, bytes)) or not isinstance(functions, Iterable):
        raise CaptureError(f"functions must be a list of functions or a name -> function dict, not {type(functions).__name__}")
    else:
        pairs = [(None, fn) for fn in functions]
        from_dict = False
    if not pairs:
        raise CaptureError("no functions to capture: pass at least one function")

    named: dict[str, Callable[..., Any]] = {}
    for key, fn in pairs:
        if not callable(fn):
            where = f"{key!r}" if from_dict else f"{_label(fn)!r}"
            raise CaptureError(f"cannot capture {where}: a {type(fn).__name__} is not callable")
        if isinstance(fn, type):
            raise CaptureError(f"cannot capture class {_label(fn)!r}: pass a function that uses it")
        if from_dict:
            if not isinstance(key, str):
                raise CaptureError(f"entrypoint name {key!r} for {_label(fn)!r} must be a string")
            entry_name = key
        else:
            entry_name = getattr(fn, "__name__", None)
            if entry_name == "<lambda>":
                raise CaptureError(
                    f"cannot capture a lambda ({_label(fn)}) without a name: "
                    "use def, or pass a dict like {'predict': fn}"
                )
            if not isinstance(entry_name, str):
                raise CaptureError(f"cannot capture {_label(fn)!r}: it has no __name__; pass a dict like {{'predict': fn}}")
        if not entry_name.isidentifier() or keyword.iskeyword(entry_name):
            raise CaptureError(f"entrypoint name {entry_name!r} ({_label(fn)}) is not a valid Python identifier")
        if entry_name in named:
            raise CaptureError(f"duplicate entrypoint name {entry_name!r}: {_label(named[entry_name])} and {_label(fn)}")
        named[entry_name] = fn
    return named


def describe(entry_name: str, fn: Callable[..., Any]) -> dict[str, Any]:
    """The manifest entry of one entrypoint: doc, signature, parameters, returns."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise CaptureError(f"cannot read the signature of {entry_name!r}: {exc}") from exc
    globalns = _globals_of(fn)

    parameters = []
    rendered_params = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            star = "*" if param.kind is param.VAR_POSITIONAL else "**"
            raise CaptureError(
                f"entrypoint {entry_name!r} takes {star}{param.name}: "
                "an entrypoint's parameters must be named, since callers pass a JSON object"
            )
        annotation = _resolve(param.annotation, globalns)
        info: dict[str, Any] = {
            "name": param.name,
            "kind": param.kind.name,
            "annotation": _qualified(annotation),
            "type": type_of(annotation),
            "required": param.default is param.empty,
        }
        if param.default is not param.empty and _is_json(param.default):
            info["default"] = param.default
        parameters.append(info)
        readable = _readable(annotation)
        rendered_params.append(param.replace(annotation=param.empty if readable is None else _Rendered(readable)))

    returns = _readable(_resolve(signature.return_annotation, globalns))
    shown = signature.replace(
        parameters=rendered_params,
        return_annotation=signature.empty if returns is None else _Rendered(returns),
    )
    return {
        "name": entry_name,
        "doc": _first_paragraph(inspect.getdoc(fn)),
        "signature": str(shown),
        "parameters": parameters,
        "returns": returns,
    }


class _Rendered(str):
    """An annotation already rendered, shown by inspect without quotes."""

    def __repr__(self) -> str:
        return str(self)


def _first_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    paragraph = re.split(r"\n\s*\n", doc.strip(), maxsplit=1)[0]
    return " ".join(line.strip() for line in paragraph.splitlines())


def _globals_of(fn: Any) -> dict[str, Any]:
    target = inspect.unwrap(fn)
    target = getattr(target, "__func__", target)
    namespace = getattr(target, "__globals__", None)
    if namespace is None:
        # A callable instance: its annotations live with its class's __call__.
        call = getattr(type(target), "__call__", None)
        namespace = getattr(call, "__globals__", None)
    return namespace if isinstance(namespace, dict) else {}


def _resolve(annotation: Any, globalns: dict[str, Any]) -> Any:
    """Evaluate a string annotation (``from __future__ import annotations``) when possible."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, dict(globalns))  # noqa: S307 - the user's own annotation, in their own namespace
    except Exception:
        # Unknown names stay strings; type_of still reads them textually.
        return annotation


# --- annotations -----------------------------------------------------------


def _class_name(cls: type, *, short: bool) -> str:
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", repr(cls))
    if cls is type(None):
        return "None"
    if not module or module == "builtins":
        return qualname
    if short:
        # pandas.core.frame.DataFrame reads better as pandas.DataFrame, when
        # the top-level package exposes it under that name.
        top = top_level(module)
        parent = sys.modules.get(top)
        try:
            if parent is not None and _getattr_path(parent, qualname) is cls:
                return f"{top}.{qualname}"
        except Exception:
            pass
    return f"{module}.{qualname}"


def _getattr_path(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _is_union(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return origin is Union or (hasattr(types, "UnionType") and origin is getattr(types, "UnionType"))


def _render(annotation: Any, short: bool) -> str:
    if isinstance(annotation, str):
        return annotation
    if annotation is None or annotation is type(None):
        return "None"
    if annotation is Any:
        return "Any" if short else "typing.Any"
    if _is_union(annotation):
        return " | ".join(_render(arg, short) for arg in typing.get_args(annotation))
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is not None and args and origin is not collections.abc.Callable and origin is not typing.Literal:
        if origin is typing.Annotated:
            return _render(args[0], short)
        rendered = ", ".join("..." if arg is Ellipsis else _render(arg, short) for arg in args)
        return f"{_generic_base(annotation, origin, short)}[{rendered}]"
    if origin is not None and not args and _typing_alias_name(annotation):
        return f"typing.{_typing_alias_name(annotation)}"
    if isinstance(annotation, type) and origin is None:
        return _class_name(annotation, short=short)
    return inspect.formatannotation(annotation)


def _typing_alias_name(annotation: Any) -> str | None:
    """``List`` for ``typing.List[...]``, None for builtin generics like ``list[int]``."""
    name = getattr(annotation, "_name", None)
    return name if type(annotation).__module__ == "typing" and isinstance(name, str) else None


def _generic_base(annotation: Any, origin: Any, short: bool) -> str:
    name = _typing_alias_name(annotation)
    return f"typing.{name}" if name else _render(origin, short)


def _readable(annotation: Any) -> str | None:
    """The annotation as people write it (``pandas.DataFrame``), or None when absent."""
    if annotation is inspect.Parameter.empty:
        return None
    return _render(annotation, short=True)


def _qualified(annotation: Any) -> str | None:
    """The annotation with full module paths (``pandas.core.frame.DataFrame``), or None."""
    if annotation is inspect.Parameter.empty:
        return None
    return _render(annotation, short=False)


_TEXT_TYPES = {
    "DataFrame": "dataframe",
    "Series": "series",
    "ndarray": "ndarray",
    "NDArray": "ndarray",
    "ArrayLike": "ndarray",
    "int": "int",
    "float": "float",
    "str": "str",
    "bool": "bool",
    "list": "list",
    "List": "list",
    "tuple": "list",
    "Tuple": "list",
    "Sequence": "list",
    "dict": "dict",
    "Dict": "dict",
    "Mapping": "dict",
}


def type_of(annotation: Any) -> str:
    """The wire type of an annotation: dataframe, series, ndarray, int, float, str, bool, list, dict or any."""
    if annotation is inspect.Parameter.empty or annotation is None or annotation is Any:
        return "any"
    if isinstance(annotation, str):
        return _type_from_text(annotation)
    if _is_union(annotation):
        kinds = {type_of(arg) for arg in typing.get_args(annotation) if arg is not type(None)}
        if len(kinds) == 1:
            return kinds.pop()
        if kinds == {"int", "float"}:
            return "float"
        return "any"
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return type_of(typing.get_args(annotation)[0])
    if origin is not None:
        return type_of(origin) if isinstance(origin, type) else "any"
    if isinstance(annotation, type):
        return _type_from_class(annotation)
    return "any"


def _type_from_class(cls: type) -> str:
    try:
        return _type_from_class_unchecked(cls)
    except TypeError:  # exotic classes (protocols, metaclass tricks) refuse issubclass
        return "any"


def _type_from_class_unchecked(cls: type) -> str:
    # Checked through sys.modules: a class from pandas/numpy means they are
    # already imported, and otherwise we must not import them.
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        if issubclass(cls, pandas.DataFrame):
            return "dataframe"
        if issubclass(cls, pandas.Series):
            return "series"
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if issubclass(cls, numpy.ndarray):
            return "ndarray"
        if issubclass(cls, numpy.bool_):
            return "bool"
        if issubclass(cls, numpy.integer):
            return "int"
        if issubclass(cls, numpy.floating):
            return "float"
    # bool before int: bool is a subclass of int.
    for base, kind in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str")):
        if issubclass(cls, base):
            return kind
    if issubclass(cls, (list, tuple)) or cls in (collections.abc.Sequence, collections.abc.MutableSequence):
        return "list"
    if issubclass(cls, dict) or cls in (collections.abc.Mapping, collections.abc.MutableMapping):
        return "dict"
    return "any"


def _type_from_text(text: str) -> str:
    """Best-effort type of an annotation that could not be evaluated."""
    text = text.strip().strip("'\"")
    arms = [arm.strip() for arm in text.split("|") if arm.strip() not in ("None", "")]
    if len(arms) == 1 and arms[0] != text:
        return _type_from_text(arms[0])
    optional = re.fullmatch(r"(?:typing\.)?Optional\[(.*)\]", text)
    if optional:
        return _type_from_text(optional.group(1))
    base = text.split("[", 1)[0].strip()
    return _TEXT_TYPES.get(base.rsplit(".", 1)[-1], "any")


# --- sample ----------------------------------------------------------------


def encode_sample(sample: Any) -> dict[str, Any] | None:
    """Describe a sample input for the manifest: dataframe, ndarray or a JSON value."""
    if sample is None:
        return None
    module = type(sample).__module__ or ""
    if module.startswith("pandas") and _is_instance(sample, "pandas", "DataFrame"):
        return _encode_dataframe(sample)
    if module.startswith("pandas") and _is_instance(sample, "pandas", "Series"):
        # A Series travels as a JSON list, like the runner returns it.
        return {"kind": "json", "data": [_json_cell(v, strict=False) for v in sample.head(SAMPLE_ROWS).tolist()]}
    if module.startswith("numpy") and _is_instance(sample, "numpy", "ndarray"):
        return _encode_ndarray(sample)
    try:
        data = _json_cell(sample, strict=True)
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
        {column: _json_cell(value, strict=False) for column, value in zip(columns, row)}
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
        info["categories"] = [_json_cell(c, strict=False) for c in dtype.categories.tolist()]
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
        return {"kind": "json", "data": _json_cell(array.item(), strict=False)}
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
        "data": _json_cell(head.tolist(), strict=False),
    }


def _json_cell(value: Any, *, strict: bool) -> Any:
    """A JSON-safe copy of ``value``; unknown objects become str unless ``strict``."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    type_name = type(value).__name__
    if type_name in ("NaTType", "NAType"):
        return None
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        isoformat = getattr(value, "isoformat", None)
        return isoformat() if isoformat else value.total_seconds()
    if isinstance(value, Mapping):
        return {str(k): _json_cell(v, strict=strict) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_cell(v, strict=strict) for v in value]
    module = type(value).__module__ or ""
    if module.startswith("numpy"):
        if hasattr(value, "tolist") and getattr(value, "dtype", None) is not None:
            kind = value.dtype.kind
            if kind in "Mm":
                if str(value) == "NaT":
                    return None
                value = value.astype("datetime64[us]" if kind == "M" else "timedelta64[us]")
            return _json_cell(value.tolist(), strict=strict)
    if strict:
        raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
    return str(value)


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


# --- payload ---------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _installed_roots() -> tuple[str, ...]:
    paths = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            paths.add(path)
    try:
        paths.update(site.getsitepackages())
    except AttributeError:  # some virtualenvs ship an old site.py
        pass
    user_site = getattr(site, "getusersitepackages", lambda: None)()
    if user_site:
        paths.add(user_site)
    return tuple(os.path.join(os.path.realpath(p), "") for p in paths)


def is_local_module(top: str) -> bool:
    """Whether a top-level module is the user's own code (not stdlib, not an installed distribution)."""
    if top in _NOT_MODULES or top in _NEVER_BY_VALUE or is_stdlib(top):
        return False
    if top in packages_distributions():
        return False
    module = sys.modules.get(top)
    if not isinstance(module, types.ModuleType):
        # Not importable by name: cloudpickle pickles such modules by value already.
        return False
    location = getattr(module, "__file__", None)
    if not location:
        search = list(getattr(module, "__path__", None) or [])
        location = search[0] if search else None
    if not location:
        return False
    # Installed without metadata (e.g. some conda packages): reference it.
    real = os.path.realpath(location)
    return not real.startswith(_installed_roots())


class _ShellReached(pickle.PicklingError):
    """The pickled graph reached the IPython shell, which no service has."""


def _is_ipython_shell(obj: Any) -> bool:
    # Only look if IPython is loaded: a shell object cannot exist otherwise.
    module = sys.modules.get("IPython.core.interactiveshell")
    shell_class = getattr(module, "InteractiveShell", None) if module is not None else None
    return isinstance(shell_class, type) and isinstance(obj, shell_class)


class TracingPickler(cloudpickle.Pickler):
    """A cloudpickle pickler that records the module of every object it meets.

    Modules of the user's own files met on the way are registered to be
    pickled by value before the first of their objects is reduced, so the
    service does not need those files.
    """

    def __init__(self, file: typing.BinaryIO, entrypoints: Mapping[str, Any] | None = None):
        super().__init__(file, protocol=5)
        self.modules: set[str] = set()
        self.by_value: list[str] = []
        self.current: str | None = None
        self.features: dict[str, Any] | None = None
        self._checked: set[str] = set()
        self._entrypoints = {id(fn): name for name, fn in (entrypoints or {}).items()}
        # id -> the global or closure variable name it is bound to, in functions met so far;
        # the objects are held by those functions for the whole dump, so ids stay unique.
        self._names: dict[int, str] = {}
        self._feature_classes: dict[type, tuple[bool, tuple[str, ...]]] = {}

    def reducer_override(self, obj: Any) -> Any:
        """Record the object's modules (and the first model's features), then reduce it as cloudpickle would."""
        name = self._entrypoints.get(id(obj))
        if name is not None:
            self.current = name
        if _is_ipython_shell(obj):
            raise _ShellReached()
        self._record(type(obj).__module__)
        if isinstance(obj, types.ModuleType):
            self._record(obj.__name__)
        elif isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
            self._record(getattr(obj, "__module__", None))
            if self.features is None and isinstance(obj, types.FunctionType):
                self._learn_names(obj)
        elif self.features is None:
            self._look_for_features(obj)
        return super().reducer_override(obj)

    def _learn_names(self, fn: types.FunctionType) -> None:
        # A function is met before the globals and closure it carries, so the
        # model those hold is named by the time the pickler reaches it.
        namespace = fn.__globals__
        for name in _code_names(fn.__code__):
            if name in namespace:
                self._names.setdefault(id(namespace[name]), name)
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            try:
                self._names.setdefault(id(cell.cell_contents), name)
            except ValueError:  # an empty cell: the variable is not bound yet
                pass

    def _look_for_features(self, obj: Any) -> None:
        cls = type(obj)
        known = self._feature_classes.get(cls)
        if known is None:
            # Static lookups only: an object's __getattr__ may answer anything (or fail) for any name.
            props = tuple(
                attr for attr in _FEATURE_ATTRS if isinstance(_static(cls, attr), (property, functools.cached_property))
            )
            known = self._feature_classes[cls] = (getattr(cls, "__dictoffset__", 0) != 0, props)
        has_dict, props = known
        if not has_dict and not props:
            return
        found: dict[str, Any] = {}
        if has_dict:
            try:
                instance = object.__getattribute__(obj, "__dict__")
            except Exception:  # noqa: BLE001 - exotic objects; they hold no fitted model
                instance = {}
            found = {attr: instance[attr] for attr in _FEATURE_ATTRS if isinstance(instance, dict) and attr in instance}
        for attr in props:
            if attr not in found:
                try:
                    found[attr] = getattr(obj, attr)
                except Exception:  # noqa: BLE001 - e.g. an unfitted pipeline raises AttributeError
                    pass
        features = _features(found)
        if features is not None:
            features["source"] = self._names.get(id(obj)) or cls.__name__
            self.features = features

    def _record(self, module: Any) -> None:
        if not isinstance(module, str) or not module:
            return
        self.modules.add(module)
        top = top_level(module)
        if top in self._checked:
            return
        self._checked.add(top)
        if is_local_module(top) and top not in cloudpickle.list_registry_pickle_by_value():
            cloudpickle.register_pickle_by_value(sys.modules[top])
            self.by_value.append(top)

    def release(self) -> None:
        """Undo the by-value registrations this pickler made."""
        while self.by_value:
            top = self.by_value.pop()
            module = sys.modules.get(top)
            if module is not None and top in cloudpickle.list_registry_pickle_by_value():
                cloudpickle.unregister_pickle_by_value(module)


def _static(cls: type, attr: str) -> Any:
    try:
        return inspect.getattr_static(cls, attr, None)
    except Exception:  # noqa: BLE001 - metaclass tricks
        return None


def _code_names(code: types.CodeType) -> typing.Iterator[str]:
    """Global names a code object and the code nested in it (comprehensions, inner functions) use."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


def _features(found: Mapping[str, Any]) -> dict[str, Any] | None:
    """``{"names", "n"}`` from a model's feature attributes, or None when they say nothing usable."""
    names = found.get("feature_names_in_")
    try:
        usable = names is not None and not isinstance(names, str) and all(isinstance(n, str) for n in names)
    except TypeError:  # not iterable
        usable = False
    names = [str(n) for n in names] if usable else None
    n = found.get("n_features_in_")
    if isinstance(n, bool) or not isinstance(n, int):
        # numpy integers are not ints; anything else is not a count.
        n = int(n) if type(n).__module__ == "numpy" and hasattr(n, "dtype") and n.dtype.kind in "iu" else None
    if n is None and names is not None:
        n = len(names)
    if n is None:
        return None
    return {"names": names, "n": n}


def dump_payload(named: Mapping[str, Callable[..., Any]]) -> tuple[bytes, set[str]]:
    """Pickle ``{"entrypoints": named}`` in one traced pass; return the bytes and the modules met."""
    payload, modules, _ = _dump(named)
    return payload, modules


def _dump(named: Mapping[str, Callable[..., Any]]) -> tuple[bytes, set[str], dict[str, Any] | None]:
    """``dump_payload`` plus the features of the first fitted model met on the way."""
    buffer = io.BytesIO()
    pickler = TracingPickler(buffer, named)
    try:
        pickler.dump({"entrypoints": dict(named)})
    except _ShellReached as exc:
        where = f"entrypoint {pickler.current!r}" if pickler.current else "the entrypoints"
        raise CaptureError(
            f"cannot capture {where}: it reaches the IPython shell (get_ipython(), a magic, or In/Out), "
            "which does not exist in a deployed service; keep notebook-only calls out of deployed functions",
            detail={"entrypoint": pickler.current},
        ) from exc
    except Exception as exc:
        where = f"entrypoint {pickler.current!r}" if pickler.current else "the entrypoints"
        raise CaptureError(
            f"cannot capture {where}: {type(exc).__name__}: {exc}. "
            "Something it uses (a global, a default, a closure variable) cannot be pickled; "
            "create it inside the function or pass it as an argument",
            detail={"entrypoint": pickler.current},
        ) from exc
    finally:
        pickler.release()
    return buffer.getvalue(), pickler.modules, pickler.features
