"""Capture notebook functions into a bundle: validate, describe, pickle, pin requirements."""

from __future__ import annotations

import datetime as _dt
import keyword
import platform
import sys
from typing import Any, Callable, Iterable, Mapping, Union

import cloudpickle

from jupyter_deploy_contract import (
    SERVICE_NAME_RULE,
    VERSION_RULE,
    ContractError,
    check_environment,
    is_service_name,
    is_version,
)

from .bundle import Bundle, pack
from .errors import CaptureError
from .requirements import infer_requirements, runner_modules
from .samples import encode_sample
from .signatures import describe
from .tracing import dump_payload

Functions = Union[Callable[..., Any], Iterable[Callable[..., Any]], Mapping[str, Callable[..., Any]]]
"""What ``capture`` takes: one function, a list of them, or an entrypoint name -> function dict."""


def capture(
    functions: Functions,
    *,
    name: str,
    version: str | None = None,
    sample: Any = None,
    requirements: list[str] | None = None,
    monitor: bool | Iterable[str] = False,
    env: Mapping[str, str] | None = None,
    secrets: Iterable[str] | None = None,
) -> Bundle:
    """Validate ``functions``, pickle them with what they reach, and pack a bundle.

    ``monitor`` (True for all, or entrypoint names) marks entrypoints whose calls the manager keeps.
    ``env`` (plain variables) and ``secrets`` (names of the manager's secrets) become the service's
    environment when it starts; only names travel in the bundle, never a secret's value.
    """
    # The manager's rules, checked here too so a bad name fails before anything is pickled or uploaded.
    if not is_service_name(name):
        raise CaptureError(f"service name {name!r} is invalid: use {SERVICE_NAME_RULE}")
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, (str, int)) or not is_version(str(version)):
            raise CaptureError(f"version {version!r} is invalid: use {VERSION_RULE}")
    if isinstance(requirements, str):
        requirements = [requirements]
    environment = _environment(env, secrets)

    named = _named_functions(functions)
    entrypoints = [describe(entry_name, fn) for entry_name, fn in named.items()]
    for entry in entrypoints:
        if entry["name"] in _monitored(monitor, named):
            entry["monitor"] = True
    sample_info = encode_sample(sample)
    payload, modules, features = dump_payload(named)
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
    manifest.update(environment)
    return pack(manifest, payload)


def _environment(env: Mapping[str, str] | None, secrets: Iterable[str] | None) -> dict[str, Any]:
    """The manifest's ``env`` and ``secrets`` fields, checked with the manager's rules before anything uploads."""
    if isinstance(secrets, str):
        secrets = [secrets]
    if env is not None and not isinstance(env, Mapping):
        raise CaptureError(f"env must be a dict of variable name -> string value, not {type(env).__name__}")
    plain = dict(env or {})
    names = list(secrets or [])
    try:
        check_environment(plain, names)
    except ContractError as exc:
        raise CaptureError(str(exc).replace("manifest.json: ", "")) from None
    out: dict[str, Any] = {}
    if plain:
        out["env"] = dict(plain)
    if names:
        out["secrets"] = names
    return out


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
