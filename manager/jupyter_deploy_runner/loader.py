"""Startup checks on an extracted bundle, then the one place its payload is unpickled."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from jupyter_deploy_contract import MANIFEST, PAYLOAD, ContractError, check_payload, parse_manifest

from . import EXIT_LOAD_FAILED, EXIT_REFUSED


class StartupError(Exception):
    """The bundle cannot be served here; ``str(self)`` is the one line shown to the user."""

    def __init__(self, message: str, status: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Loaded:
    """A checked manifest and the functions unpickled from its payload."""

    manifest: dict[str, Any]
    functions: dict[str, Callable[..., Any]]


def running_python() -> str:
    """This interpreter's ``X.Y``."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def read_manifest(bundle_dir: Path) -> dict[str, Any]:
    """Parse and check ``manifest.json`` of an extracted bundle directory."""
    path = bundle_dir / MANIFEST
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise StartupError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return parse_manifest(raw)
    except ContractError as exc:
        raise StartupError(f"{path}: {exc}") from exc


def check(manifest: dict[str, Any], payload: bytes) -> None:
    """Refuse a bundle whose Python, cloudpickle or payload checksum does not match."""
    # Checked before unpickling: a pickle from another Python or cloudpickle
    # either fails obscurely or, worse, loads into subtly wrong objects.
    want_py, have_py = str(manifest["python"]), running_python()
    if want_py != have_py:
        raise StartupError(
            f"bundle was captured with Python {want_py} but this service runs Python {have_py}; "
            f"redeploy from a kernel running {have_py}"
        )
    import cloudpickle

    want_cp, have_cp = str(manifest["cloudpickle"]), cloudpickle.__version__
    if want_cp != have_cp:
        raise StartupError(
            f"bundle was captured with cloudpickle {want_cp} but this service has cloudpickle {have_cp}; "
            f"pin cloudpickle=={want_cp} in the service's requirements or redeploy from a kernel "
            f"with cloudpickle {have_cp}"
        )
    try:
        check_payload(manifest, payload)
    except ContractError as exc:
        raise StartupError(f"{exc}; the bundle is damaged, redeploy it") from exc


def load(bundle_dir: Path) -> Loaded:
    """Check the bundle in ``bundle_dir`` and unpickle its entrypoint functions."""
    manifest = read_manifest(bundle_dir)
    path = bundle_dir / str((manifest.get("payload") or {}).get("file") or PAYLOAD)
    # The payload must sit next to the manifest; a path elsewhere is a damaged manifest.
    if path.parent != bundle_dir or path.name in ("", ".", ".."):
        raise StartupError(f"manifest names payload file {path.name!r} outside the bundle directory")
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise StartupError(f"cannot read {path}: {exc.strerror or exc}") from exc
    check(manifest, payload)

    import cloudpickle

    try:
        obj = cloudpickle.loads(payload)
    except MemoryError:
        raise  # the memory limit, not the payload: main() reports it as such
    except Exception as exc:
        hint = "; is it in the service's requirements?" if isinstance(exc, ImportError) else ""
        raise StartupError(
            f"could not load the payload: {type(exc).__name__}: {exc}{hint}", EXIT_LOAD_FAILED
        ) from exc
    functions = obj.get("entrypoints") if isinstance(obj, dict) else None
    if not isinstance(functions, dict):
        raise StartupError("payload does not hold {'entrypoints': {...}}", EXIT_LOAD_FAILED)

    wanted = [ep.get("name") for ep in manifest["entrypoints"] if isinstance(ep, dict)]
    missing = [name for name in wanted if not callable(functions.get(name))]
    if missing or len(wanted) != len(manifest["entrypoints"]):
        raise StartupError(
            f"payload lacks entrypoint(s) named in the manifest: {', '.join(map(str, missing))}",
            EXIT_LOAD_FAILED,
        )
    return Loaded(manifest=manifest, functions={name: functions[name] for name in wanted})
