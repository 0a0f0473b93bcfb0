"""The service-folder SDK: ``from jupyter_deploy import service`` in a folder's ``service.py``.

A service folder holds ``service.py`` (functions decorated with ``@service.entrypoint``),
optionally ``requirements.txt``, helper modules and data files. ``jupyter-deploy deploy NAME
VERSION PATH`` loads ``service.py`` and deploys what it registered (``folder.bundle_folder``);
``python service.py`` ending in ``service.run()`` serves the same functions locally.

Nothing in this module runs inside a deployed service: the decorator returns the function
unchanged and ``logger`` pickles to ``logging.getLogger("service")`` (given a handler there), so the service
never needs ``jupyter_deploy`` installed.
"""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar, overload

from .errors import CaptureError

__all__ = ["entrypoint", "logger", "run", "registered"]

F = TypeVar("F", bound=Callable[..., Any])

LOGGER_NAME = "service"
"""Name of ``logger``; ``logging.getLogger("service")`` is the same object."""

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""How ``logger`` lines look in the service log when the service has not configured logging itself."""


@dataclass
class Registration:
    """One registered entrypoint and its options."""

    function: Callable[..., Any]
    monitor: bool = False


_entries: dict[str, Registration] = {}
# Set while folder.bundle_folder executes a service.py: run() must not serve then.
_collecting = False
_collect_lock = threading.RLock()


@overload
def entrypoint(function: F) -> F: ...


@overload
def entrypoint(function: None = None, *, monitor: bool = False) -> Callable[[F], F]: ...


def entrypoint(function: Callable[..., Any] | None = None, *, monitor: bool = False) -> Any:
    """Register a function as an entrypoint; use as ``@service.entrypoint`` or ``@service.entrypoint(monitor=True)``."""

    def register(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"@service.entrypoint decorates functions, not {type(fn).__name__}")
        name = getattr(fn, "__name__", None)
        if not isinstance(name, str):
            raise TypeError(f"@service.entrypoint needs a function with a __name__, not {fn!r}")
        # Later definitions win, as when a module redefines a function.
        _entries[name] = Registration(fn, monitor=bool(monitor))
        # Returned unchanged: a wrapper from this package would make the service import jupyter_deploy.
        return fn

    if function is None:
        return register
    return register(function)


def registered() -> dict[str, Callable[..., Any]]:
    """Entrypoint name -> function, for the functions registered so far."""
    return {name: entry.function for name, entry in _entries.items()}


def registrations() -> dict[str, Registration]:
    """Entrypoint name -> its registration (function and options such as ``monitor``)."""
    return dict(_entries)


@contextlib.contextmanager
def collecting() -> Iterator[dict[str, Registration]]:
    """Give registrations made inside the block their own registry, and make ``run()`` a no-op meanwhile."""
    global _entries, _collecting
    with _collect_lock:
        saved, was_collecting = _entries, _collecting
        fresh: dict[str, Registration] = {}
        _entries, _collecting = fresh, True
        try:
            yield fresh
        finally:
            _entries, _collecting = saved, was_collecting


def is_collecting() -> bool:
    """Whether a folder is being collected for a deploy right now."""
    return _collecting


# --- logger ----------------------------------------------------------------


def _service_logger(name: str) -> logging.Logger:
    """In the service: the named logger, writing INFO lines to the service log unless logging is configured."""
    log = logging.getLogger(name)
    if not log.handlers and not logging.getLogger().handlers:
        # The runner leaves logging unconfigured, and Python's fallback handler drops INFO.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        log.addHandler(handler)
        if log.level == logging.NOTSET:
            log.setLevel(logging.INFO)
    return log


# cloudpickle copies functions of "__main__" by value (with the globals they use: logging,
# sys, LOG_FORMAT): the service gets this function itself, not an import of jupyter_deploy.
_service_logger.__module__ = "__main__"


class ServiceLogger(logging.Logger):
    """A ``logging.Logger`` that unpickles in the service as a logger printing to the service log."""

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuild as ``logging.getLogger(name)`` with a handler, without importing jupyter_deploy."""
        return (_service_logger, (self.name,))


def _make_logger() -> logging.Logger:
    log = logging.getLogger(LOGGER_NAME)
    # The same object getLogger hands out, so `logging.getLogger("service")` in service.py
    # gets this class too; ServiceLogger adds no state, so the swap is safe.
    if not isinstance(log, ServiceLogger):
        log.__class__ = ServiceLogger
    return log


logger: logging.Logger = _make_logger()
"""The service's logger (``logging.getLogger("service")``); its lines show in ``jupyter-deploy logs NAME``."""


# --- local development -------------------------------------------------------


def _default_name() -> str:
    """A service name from the folder of the script being run (``iris_service`` -> ``iris-service``)."""
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    folder = Path(script).resolve().parent.name if script else ""
    name = re.sub(r"[^a-z0-9]+", "-", folder.lower()).strip("-")[:48].strip("-")
    from jupyter_deploy_contract import is_service_name

    return name if is_service_name(name) else "service"


def run(host: str = "127.0.0.1", port: int = 8000, *, name: str | None = None) -> None:
    """Serve the registered entrypoints locally in the foreground; a no-op while a folder is collected for a deploy."""
    if _collecting:
        return
    functions = registered()
    if not functions:
        raise CaptureError("no entrypoint registered: decorate a function with @service.entrypoint before service.run()")
    from .bundle import extract
    from .capture import capture

    bundle = capture(functions, name=name or _default_name())
    with tempfile.TemporaryDirectory(prefix="jupyter-deploy-run-") as tmp:
        extract(bundle.data, tmp)
        # The same runner a deployed service uses, so local answers match deployed ones.
        cmd = [sys.executable, "-m", "jupyter_deploy_runner", "--bundle", tmp, "--host", host, "--port", str(port)]
        proc = subprocess.Popen(cmd)
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            # A terminal's Ctrl-C reaches the runner too, but a SIGINT sent to this process
            # alone does not: SIGTERM makes the runner finish its requests and exit either way.
            proc.terminate()
            try:
                proc.wait(timeout=35)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            # Stopped on request: not a failure, whatever status the runner ended with.
            code = 0
    if code:
        raise SystemExit(code)
