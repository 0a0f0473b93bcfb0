"""Host-side wheelhouse: one wheel per pinned requirement, so no container or venv needs an index."""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import urllib.parse
from pathlib import Path
from typing import Callable, Iterator

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags, sys_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion

from .runtimes.base import Lock, LogSink, RuntimeError_, host_python, run_streamed

RUNNER_PACKAGE = "jupyter_deploy_runner"
"""The top-level name the runner package is staged as."""

CONTRACT_PACKAGE = "jupyter_deploy_contract"
"""The contract package, staged beside the runner, which imports it."""

PIP_NETWORK_TIMEOUT = 60
"""Seconds pip waits on one network operation before it gives up (pip's --timeout)."""

PIP_TIMEOUT = 900.0
"""Seconds one pip run (download, index lookup, install) may take in all (``ManagerApp.pip_timeout``)."""

PIP_TIMEOUT_SETTING = "ManagerApp.pip_timeout"
"""The setting named when pip runs over its time."""

SourceBuilder = Callable[[Lock, "list[Requirement]", Path, LogSink], None]
"""Builds wheels of requirements that have none, away from the host, into the given directory."""

# Oldest glibc among the base images we target (bullseye 2.31); wheels built for a newer
# glibc would fail to import there, so cross-version downloads stop at this one.
_MAX_GLIBC_MINOR = 31

_NOT_FOUND = re.compile(r"(?:No matching distribution found for|Could not find a version that satisfies the requirement) (\S+)")
_SAVED = re.compile(r"^\s*(?:Saved|File was already downloaded) (\S+\.whl)\s*$")


class WheelhouseError(RuntimeError_):
    """pip could not provide a wheel for a requirement of the lock."""


def _platforms() -> list[str]:
    arch = platform.machine() or "x86_64"
    plats = [f"manylinux_2_{minor}_{arch}" for minor in range(_MAX_GLIBC_MINOR, 16, -1)]
    plats += [f"manylinux2014_{arch}"]
    if arch in ("x86_64", "i686"):
        plats += [f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    return plats


def target_tags(python: str) -> list[Tag]:
    """Wheel tags acceptable for Python ``X.Y`` on Linux, best first."""
    if python == host_python():
        return list(sys_tags())
    major, minor = (int(p) for p in python.split(".")[:2])
    plats = _platforms()
    return list(cpython_tags((major, minor), platforms=plats)) + list(
        compatible_tags((major, minor), interpreter=f"cp{major}{minor}", platforms=plats)
    )


def parse_requirements(lock: Lock) -> list[Requirement]:
    """The lock's requirements that apply to its Python (markers evaluated for lock.python)."""
    env = {"python_version": lock.python, "python_full_version": f"{lock.python}.0"}
    out: list[Requirement] = []
    for text in lock.requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise WheelhouseError(f"requirement {text!r} is not a PEP 508 requirement: {exc}") from exc
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        out.append(req)
    return out


def _pinned_version(req: Requirement) -> str | None:
    specs = list(req.specifier)
    if req.url is None and len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    return None


class Wheelhouse:
    """A directory of wheels shared by every lock, filled by the host's pip."""

    def __init__(self, root: Path, pip_timeout: float | None = PIP_TIMEOUT) -> None:
        self.root = Path(root)
        self._done = self.root / ".done"
        # pip runs while the wheelhouse lock is held: a hung download must not block every other build.
        self.pip_timeout = pip_timeout

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # flock is per open file description, so this also serialises threads of one process.
        self._done.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _marker(self, lock: Lock) -> Path:
        return self._done / f"{lock.hash}.json"

    def wheels(self, lock: Lock) -> list[str] | None:
        """File names (in ``root``) of the wheels for ``lock``, or None if not ensured yet."""
        try:
            names = json.loads(self._marker(lock).read_text())["wheels"]
        except (OSError, ValueError, KeyError):
            return None
        # Someone may have pruned the directory: then the marker is a lie.
        if all((self.root / name).is_file() for name in names):
            return list(names)
        return None

    def ensure(self, lock: Lock, log: LogSink, build_sources: SourceBuilder | None = None) -> Path:
        """Make sure ``root`` holds a wheel for every requirement of ``lock``; return ``root``.

        Wheels are only downloaded here, which runs no code of theirs. A requirement without a wheel is
        handed to ``build_sources`` (an isolated build), or refused when there is none.
        """
        if self.wheels(lock) is not None:
            return self.root
        with self._locked():
            if self.wheels(lock) is not None:
                return self.root
            reqs = parse_requirements(lock)
            tags = target_tags(lock.python)
            chosen: dict[str, str] = {}
            todo: list[Requirement] = []
            for req in reqs:
                # Only exact pins can be trusted to an existing file; ranges and URLs go to pip.
                found = self._find(req, tags) if _pinned_version(req) else None
                if found:
                    chosen[canonicalize_name(req.name)] = found
                else:
                    todo.append(req)
            if todo:
                log(f"wheelhouse: fetching {len(todo)} of {len(reqs)} wheels for Python {lock.python}")
                saved, unbuilt = self._download(lock, todo, log)
                if unbuilt:
                    saved.update(self._from_source(lock, unbuilt, log, build_sources))
                for req in todo:
                    name = canonicalize_name(req.name)
                    found = saved.get(name) or self._find(req, tags)
                    if not found:
                        raise WheelhouseError(
                            f"pip produced no wheel usable on Python {lock.python} for requirement {str(req)!r}"
                        )
                    chosen[name] = found
            else:
                log(f"wheelhouse: all {len(reqs)} wheels already present")
            tmp = self._marker(lock).with_suffix(".tmp")
            tmp.write_text(json.dumps({"python": lock.python, "wheels": sorted(chosen.values())}, indent=1))
            os.replace(tmp, self._marker(lock))
        return self.root

    def _find(self, req: Requirement, tags: list[Tag]) -> str | None:
        """Best wheel file in root for ``req`` among ``tags`` (highest version, then best tag)."""
        want = canonicalize_name(req.name)
        rank = {tag: i for i, tag in enumerate(tags)}
        best: tuple[object, int, str] | None = None
        for path in self.root.glob("*.whl"):
            try:
                name, version, _build, wtags = parse_wheel_filename(path.name)
            except (InvalidWheelFilename, InvalidVersion):
                continue
            if name != want or not req.specifier.contains(version, prereleases=True):
                continue
            score = min((rank[t] for t in wtags if t in rank), default=None)
            if score is None:
                continue
            key = (version, -score, path.name)
            if best is None or key > best:  # type: ignore[operator]
                best = key
        return best[2] if best else None

    def _download(self, lock: Lock, reqs: list[Requirement],
                  log: LogSink) -> tuple[dict[str, str], list[Requirement]]:
        """Download wheels only (no build code runs on the host); return what was saved and what has no wheel."""
        saved: dict[str, str] = {}
        # pip prepares the metadata of a direct-URL archive by running its build code, even when asked
        # for wheels only: only URLs of wheels go to the host's pip.
        unbuilt = [req for req in reqs if req.url is not None and not _is_wheel_url(req.url)]
        remaining = [req for req in reqs if req not in unbuilt]
        while remaining:
            got, missing, code, tail = self._run_pip(lock, remaining, log)
            saved.update(got)
            if code == 0:
                break
            named = {canonicalize_name(_requirement_name(text)) for text in missing}
            without = [req for req in remaining if canonicalize_name(req.name) in named]
            if not without:
                raise WheelhouseError(f"pip failed (exit {code}) fetching {', '.join(map(str, remaining))}:\n"
                                      + "\n".join(tail))
            # pip stops at the first requirement it cannot satisfy: set those aside and fetch the rest.
            unbuilt += without
            remaining = [req for req in remaining if req not in without]
        return saved, unbuilt

    def _from_source(self, lock: Lock, reqs: list[Requirement], log: LogSink,
                     build_sources: SourceBuilder | None) -> dict[str, str]:
        absent = [str(req) for req in reqs if not self._published(lock, req)]
        if absent:
            where = ("the host's package index" if lock.python == host_python()
                     else f"the package index for Python {lock.python}")
            raise WheelhouseError(
                f"cannot find requirement {', '.join(absent)}: pip found no matching distribution in {where}"
            )
        names = ", ".join(str(req) for req in reqs)
        if build_sources is None:
            raise WheelhouseError(
                f"{names}: no wheel for Python {lock.python} on this platform. Building from source would run "
                f"the package's build code on the manager's host, which this runtime refuses; use the docker "
                f"runtime (it builds in an isolated container), or put a wheel of it in {self.root}"
            )
        log(f"wheelhouse: no wheel for {names}; building from source in an isolated build container")
        saved: dict[str, str] = {}
        wanted = {canonicalize_name(req.name) for req in reqs}
        with tempfile.TemporaryDirectory(prefix="jd-source-wheels-") as out:
            build_sources(lock, reqs, Path(out), log)
            for path in Path(out).iterdir():
                try:
                    name = canonicalize_name(parse_wheel_filename(path.name)[0])
                except (InvalidWheelFilename, InvalidVersion):
                    continue  # only wheels of what was asked for leave the build
                if name in wanted and path.is_file() and not path.is_symlink():
                    shutil.copyfile(path, self.root / path.name)
                    saved[name] = path.name
        return saved

    def _published(self, lock: Lock, req: Requirement) -> bool:
        """Whether the index has a release of ``req`` at all (a source one counts); asked without building it."""
        if req.url is not None:
            return True
        cmd = [sys.executable, "-m", "pip", "index", "versions", req.name, "--timeout", str(PIP_NETWORK_TIMEOUT)]
        if lock.python != host_python():
            cmd += ["--python-version", lock.python, "--implementation", "cp"]
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONUNBUFFERED="1")
        lines: list[str] = []
        code, _ = run_streamed(cmd, lines.append, env, timeout=self.pip_timeout, limit=PIP_TIMEOUT_SETTING)
        listed = next((line.split(":", 1)[1] for line in lines if line.startswith("Available versions:")), "")
        versions = [v.strip() for v in listed.split(",") if v.strip()]
        return code == 0 and any(req.specifier.contains(v, prereleases=True) for v in versions)

    def _run_pip(self, lock: Lock, reqs: list[Requirement],
                 log: LogSink) -> tuple[dict[str, str], list[str], int, list[str]]:
        """Run ``pip download`` of wheels for ``reqs``; return what it saved, what it found no wheel for, exit, tail."""
        specs = [str(r) for r in reqs]
        cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps",
               "--timeout", str(PIP_NETWORK_TIMEOUT), "--dest", str(self.root)]
        if lock.python != host_python():
            cmd += ["--python-version", lock.python, "--implementation", "cp"]
            for plat in _platforms():
                cmd += ["--platform", plat]
        cmd += specs
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_PROGRESS_BAR="off", PYTHONUNBUFFERED="1")
        saved: dict[str, str] = {}
        missing: list[str] = []

        def read(line: str) -> None:
            log(line)
            m = _NOT_FOUND.search(line)
            if m and m.group(1) not in missing:
                missing.append(m.group(1))
            m = _SAVED.match(line)
            if m:
                fname = Path(m.group(1)).name
                with contextlib.suppress(InvalidWheelFilename, InvalidVersion):
                    saved[canonicalize_name(parse_wheel_filename(fname)[0])] = fname

        code, tail = run_streamed(cmd, read, env, timeout=self.pip_timeout, limit=PIP_TIMEOUT_SETTING)
        return saved, missing, code, tail


def _is_wheel_url(url: str) -> bool:
    return urllib.parse.urlparse(url).path.endswith(".whl")


def _requirement_name(text: str) -> str:
    """The distribution name pip printed in a "no matching distribution" line."""
    with contextlib.suppress(InvalidRequirement):
        return Requirement(text).name
    return re.split(r"[<>=!~;@\[ ]", text, maxsplit=1)[0]


def install_command(wheel_dir: str, wheels: list[str]) -> list[str]:
    """pip arguments installing exactly ``wheels`` from ``wheel_dir`` with no index."""
    # --no-deps: the lock is the kernel's full closure, and kernels are often not
    # pip-consistent, so resolving again could refuse an environment that worked.
    return ["install", "--no-index", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
            *(f"{wheel_dir.rstrip('/')}/{name}" for name in wheels)]


def _package_dir(name: str) -> Path:
    # Found, not imported: the manager stages these packages as files and never runs their code itself.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError_(f"the {name} package is not installed beside the manager")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def runner_source() -> Path:
    """Folder of the runner package, installed beside the manager."""
    return _package_dir(RUNNER_PACKAGE)


def contract_source() -> Path:
    """Folder of the contract package the runner imports."""
    return _package_dir(CONTRACT_PACKAGE)


def stage_runner(dest: Path) -> Path:
    """Copy the runner package to ``dest/jupyter_deploy_runner`` and the contract beside it; return the runner's path."""
    src = runner_source()
    if not (src / "__main__.py").is_file():
        raise RuntimeError_(f"the service runner package is incomplete: {src / '__main__.py'} is missing")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
    for source, name in ((src, RUNNER_PACKAGE), (contract_source(), CONTRACT_PACKAGE)):
        target = Path(dest) / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target, ignore=ignore)
    return Path(dest) / RUNNER_PACKAGE
