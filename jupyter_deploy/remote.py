"""``connect(name)``: a deployed service as a Python object whose entrypoints are methods."""

from __future__ import annotations

import inspect
import json
import math
from typing import Any

from .client import ManagerClient

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
    """JSON text for one argument: DataFrames in pandas' split form, arrays and numpy scalars as plain values."""
    module = type(value).__module__ or ""
    if module.startswith("pandas"):
        to_json = getattr(value, "to_json", None)
        if to_json is not None and hasattr(value, "columns"):
            return to_json(orient="split", date_format="iso", date_unit="us")
        if to_json is not None:
            return to_json(orient="values", date_format="iso", date_unit="us")
    if module.startswith("numpy"):
        if hasattr(value, "tolist"):
            return json.dumps(value.tolist(), default=_fallback, allow_nan=False) if _finite(value) else _nan_safe(value.tolist())
    return json.dumps(value, default=_fallback)


def _finite(value: Any) -> bool:
    try:
        import numpy

        return bool(numpy.all(numpy.isfinite(value))) if value.dtype.kind in "fc" else True
    except Exception:  # noqa: BLE001 - object arrays and the like: let the slow path decide
        return False


def _nan_safe(value: Any) -> str:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), default=_fallback)


def _fallback(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot send a {type(value).__name__} as JSON")


class RemoteService:
    """A deployed service; each entrypoint is a method with the real signature and docstring."""

    def __init__(self, name: str, client: ManagerClient, info: dict[str, Any]):
        self.name = name
        self._client = client
        self._info = info
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
        client, service = self._client, self.name

        def call(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            # Only what the caller gave: the service applies its own defaults.
            body = "{" + ", ".join(f"{json.dumps(k)}: {encode(v)}" for k, v in bound.arguments.items()) + "}"
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


def connect(name: str, url: str | None = None, token: str | None = None) -> RemoteService:
    """A client for a deployed service: ``connect("iris").predict(df)``."""
    client = ManagerClient(url, token)
    return RemoteService(name, client, client.service(name))
