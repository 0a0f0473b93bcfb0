"""Describe entrypoints from their signatures, type hints and docstrings; map annotations to wire types."""

from __future__ import annotations

import collections.abc
import inspect
import json
import re
import sys
import types
import typing
from typing import Any, Callable, Union

from .errors import CaptureError
from .requirements import top_level


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


def _is_json(value: Any) -> bool:
    """Whether a default can stand in the manifest as it is."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


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

