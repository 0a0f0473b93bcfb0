"""Pickle the entrypoints in one traced pass: the payload, the modules it met, a fitted model's features."""

from __future__ import annotations

import collections
import functools
import inspect
import io
import marshal
import os
import pickle
import site
import sys
import sysconfig
import types
import typing
from typing import Any, Callable, Mapping

import cloudpickle

from .errors import CaptureError
from .requirements import is_stdlib, packages_distributions, top_level

# Model attributes that say what input the model was fitted on (sklearn's names).
_FEATURE_ATTRS = ("feature_names_in_", "n_features_in_")

# Our own packages are never shipped by value: the runner does not need them,
# and an editable install of them would otherwise look like a local module.
_NEVER_BY_VALUE = frozenset({"jupyter_deploy", "jupyter_deploy_manager", "jupyter_deploy_runner"})
_NOT_MODULES = frozenset({"__main__", "__mp_main__", "builtins", "__builtin__"})


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


def _code_keeping_filename(code: types.CodeType) -> tuple[Any, tuple[Any, ...]]:
    """Reduce a code object whole, its file name included (cloudpickle puts ``<dynamic-code>`` there).

    The service's tracebacks then name the notebook cell or the service.py the function came from, and
    the notebook shows the source line from its own copy. marshal is exact within one Python X.Y, which
    the runner checks before it unpickles.
    """
    return marshal.loads, (marshal.dumps(code),)


class TracingPickler(cloudpickle.Pickler):
    """A cloudpickle pickler that records the module of every object it meets.

    Modules of the user's own files met on the way are registered to be
    pickled by value before the first of their objects is reduced, so the
    service does not need those files.
    """

    dispatch_table = collections.ChainMap({types.CodeType: _code_keeping_filename}, cloudpickle.Pickler.dispatch_table)

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


def dump_payload(named: Mapping[str, Callable[..., Any]]) -> tuple[bytes, set[str], dict[str, Any] | None]:
    """Pickle ``{"entrypoints": named}`` in one traced pass: the bytes, the modules met, the first fitted model's features."""
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
