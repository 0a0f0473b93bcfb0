"""Bundle a service folder: ``service.py`` with ``@service.entrypoint`` functions, plus ``requirements.txt``."""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import traceback
import uuid
from pathlib import Path
from types import CodeType, FunctionType, ModuleType
from typing import Any, Iterator

from packaging.requirements import InvalidRequirement, Requirement

from . import service
from .bundle import Bundle
from .errors import CaptureError

SERVICE_FILE = "service.py"
REQUIREMENTS_FILE = "requirements.txt"


def bundle_folder(path: str | os.PathLike[str], name: str, version: str | None = None, *,
                  env: dict[str, str] | None = None, secrets: list[str] | None = None) -> Bundle:
    """Load ``PATH/service.py``, collect its entrypoints, and capture them with ``PATH/requirements.txt``.

    ``env`` and ``secrets`` (names of the manager's secrets) become the service's environment at start.
    """
    from .capture import capture

    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise CaptureError(f"{path} is not a folder: pass the folder that holds {SERVICE_FILE}")
    script = folder / SERVICE_FILE
    if not script.is_file():
        raise CaptureError(
            f"{path} has no {SERVICE_FILE}: a service folder holds {SERVICE_FILE} with functions decorated "
            f"with @service.entrypoint (from jupyter_deploy import service), and optionally {REQUIREMENTS_FILE}"
        )
    requirements = read_requirements(folder / REQUIREMENTS_FILE)

    with service.collecting() as entries, _importable(folder):
        _load(script, folder)
        if not entries:
            raise CaptureError(
                f"{script} registers no entrypoint: decorate the functions to serve with @service.entrypoint "
                "(from jupyter_deploy import service)"
            )
        functions = {entry_name: entry.function for entry_name, entry in entries.items()}
        for entry_name, function in functions.items():
            _check_sdk_unused(entry_name, function, folder)
        # Captured while the folder's modules are still imported, so capture sees they are
        # local files and pickles them by value: the service gets no copy of the folder.
        monitored = [entry_name for entry_name, entry in entries.items() if entry.monitor]
        return capture(functions, name=name, version=version, requirements=requirements, monitor=monitored,
                       env=env, secrets=secrets)


def _check_sdk_unused(entry_name: str, function: Any, folder: Path) -> None:
    """Refuse an entrypoint that uses ``jupyter_deploy`` when called: the service does not have it."""
    seen: set[int] = set()
    pending = [inspect.unwrap(function)]
    while pending:
        fn = pending.pop()
        code = getattr(fn, "__code__", None)
        namespace = getattr(fn, "__globals__", None)
        if id(fn) in seen or code is None or not isinstance(namespace, dict):
            continue
        seen.add(id(fn))
        for global_name in _code_names(code):
            value = namespace.get(global_name)
            module = value if isinstance(value, ModuleType) else None
            if module is not None and (module.__name__ + ".").startswith("jupyter_deploy."):
                raise CaptureError(
                    f"entrypoint {entry_name!r} uses {global_name!r} ({module.__name__}) when it runs "
                    f"(in {fn.__qualname__}), but a deployed service has no jupyter_deploy; bind what it needs "
                    f"at module level instead, e.g. logger = service.logger"
                )
            # Functions of the folder's own code are shipped too: look into them as well.
            if isinstance(value, FunctionType) and _in_folder(value.__code__.co_filename, folder):
                pending.append(value)


def _code_names(code: CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _code_names(const)


def read_requirements(path: str | os.PathLike[str]) -> list[str]:
    """The PEP 508 requirements listed in a requirements file ([] when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaptureError(f"cannot read {path}: {exc}") from exc

    found: list[str] = []
    for number, line in _logical_lines(text):
        line = _strip_comment(line)
        if not line:
            continue
        if line.startswith(("-r", "--requirement")):
            # Nested files are for other tools (dev, test extras); the service needs only this one.
            continue
        if line.startswith("-"):
            raise CaptureError(
                f"{path}, line {number}: {line!r} is not supported; list one PEP 508 requirement a line "
                "(like scikit-learn or pandas>=2); options such as -e, -c or --index-url are not, since the "
                "manager builds from the versions installed here"
            )
        try:
            Requirement(line)
        except InvalidRequirement as exc:
            raise CaptureError(
                f"{path}, line {number}: {line!r} is not a PEP 508 requirement ({exc}); "
                "local paths and bare URLs are not supported, use 'name @ URL'"
            ) from exc
        found.append(line)
    return found


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) pairs with backslash continuations joined, as pip reads them."""
    lines: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        stripped = raw.rstrip()
        if stripped.endswith("\\") and not stripped.lstrip().startswith("#"):
            pending.append(stripped[:-1])
            continue
        pending.append(raw)
        lines.append((start, " ".join(part.strip() for part in pending)))
        pending = []
    if pending:
        lines.append((start, " ".join(part.strip() for part in pending)))
    return lines


def _strip_comment(line: str) -> str:
    line = line.strip()
    if line.startswith("#"):
        return ""
    # pip's rule: a comment starts at '#' preceded by whitespace, so URL fragments (#egg=) survive.
    for i, char in enumerate(line):
        if char == "#" and i > 0 and line[i - 1].isspace():
            return line[:i].strip()
    return line


class _importable:
    """Put a folder first on sys.path while its service.py loads and is captured; forget its modules after."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.before: set[str] = set()
        self.shadowed: dict[str, Any] = {}

    def __enter__(self) -> _importable:
        self.before = set(sys.modules)
        # A module of the same name imported earlier from elsewhere (another service folder's
        # helpers.py, say) would answer this folder's `import helpers`: hide it meanwhile.
        for top in _top_level_names(self.folder):
            module = sys.modules.get(top)
            if module is not None and not _inside(module, self.folder):
                self.shadowed[top] = sys.modules.pop(top)
                for key in [k for k in sys.modules if k.startswith(top + ".")]:
                    self.shadowed[key] = sys.modules.pop(key)
        sys.path.insert(0, str(self.folder))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            sys.path.remove(str(self.folder))
        except ValueError:
            pass
        # Forgotten so that the next deploy of this (edited) folder, or of another folder
        # with modules of the same names, imports them afresh.
        for key in [k for k in sys.modules if k not in self.before]:
            module = sys.modules.get(key)
            if module is None or _inside(module, self.folder) or key.startswith("_jupyter_deploy_service_"):
                sys.modules.pop(key, None)
        sys.modules.update(self.shadowed)


def _top_level_names(folder: Path) -> set[str]:
    names = set()
    for entry in folder.iterdir():
        if entry.suffix == ".py" and entry.stem.isidentifier():
            names.add(entry.stem)
        elif entry.is_dir() and entry.name.isidentifier() and (entry / "__init__.py").is_file():
            names.add(entry.name)
    return names


def _inside(module: ModuleType, folder: Path) -> bool:
    location = getattr(module, "__file__", None)
    if not location:
        return False
    try:
        return Path(location).resolve().is_relative_to(folder)
    except (OSError, ValueError):
        return False


def _load(script: Path, folder: Path) -> ModuleType:
    """Execute service.py as a fresh module (``__file__`` set, so paths next to it resolve)."""
    # A unique name: never `service` (that is our SDK) nor `__main__` (that would run service.run()).
    module_name = f"_jupyter_deploy_service_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(module_name, script)
    if spec is None or spec.loader is None:
        raise CaptureError(f"cannot load {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        raise CaptureError(
            f"{script} failed to load{_where(exc, folder)}: {_one_line(exc)}", detail={"path": str(script)}
        ) from exc
    return module


def _one_line(exc: BaseException) -> str:
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def _where(exc: BaseException, folder: Path) -> str:
    """`` (service.py, line 12)``: the deepest frame in the folder, so the user sees their own line."""
    if isinstance(exc, SyntaxError) and exc.filename and _in_folder(exc.filename, folder):
        # Raised by the compiler, so no frame of the folder's file is on the traceback.
        return f" ({Path(exc.filename).resolve().relative_to(folder)}, line {exc.lineno})"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _in_folder(f.filename, folder)]
    if not frames:
        return ""
    frame = frames[-1]
    return f" ({Path(frame.filename).resolve().relative_to(folder)}, line {frame.lineno})"


def _in_folder(filename: str, folder: Path) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(folder)
    except (OSError, ValueError):
        return False
