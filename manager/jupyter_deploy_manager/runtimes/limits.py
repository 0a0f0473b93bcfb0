"""Memory and CPU limits of process-runtime runners.

Each runner gets a cgroup of its own when the kernel lets the manager make one (cgroup v2, else the
v1 memory and cpu hierarchies): ``memory.max``/``memory.limit_in_bytes`` and ``cpu.max``/CFS quota,
with the cgroup's ``oom_kill`` count telling an out-of-memory kill from any other death. Elsewhere
(no writable cgroup file system, e.g. an unprivileged manager or a container) it gets an
address-space rlimit: an allocation past it fails with ``MemoryError`` inside the runner, which the
runner then reports and exits on (``--exit-on-memory-error``). CPU cannot be limited that way.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .base import RuntimeError_

CGROUP_DIR = "jupyter-deploy"
"""Directory (in each cgroup hierarchy) holding ``<instance>/<version key>``, one cgroup per runner."""

CPU_PERIOD_US = 100_000
"""The CFS period CPU quotas are given in (the kernel's default), in microseconds."""

MECHANISMS = ("auto", "cgroup", "rlimit", "none")
"""Values of ``ManagerApp.process_limits``: auto = a cgroup when possible, else the rlimit."""

PROBE_TIMEOUT = 10.0
"""Seconds the start-up probe (a process joining a test cgroup) may take."""

_MEMORY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_memory(text: str) -> int:
    """Bytes of a memory size written as Docker takes it (``512m``, ``1g``, ``1048576``, ``64k``)."""
    match = _MEMORY.fullmatch(str(text))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"memory limit {text!r} is not a size such as 512m, 1g or a number of bytes")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, type, options) of every cgroup file system."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
                found.append((parts[1].replace("\\040", " "), parts[2], set(parts[3].split(","))))
    return found


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per v1 controller (key ``""`` for v2)."""
    own: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                own[name] = path
    return own


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _count(path: Path, key: str) -> int:
    """The number after ``key`` in a flat-keyed cgroup file (memory.events, memory.oom_control)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _join(procs: tuple[str, ...], address_space: int | None, uid: int | None) -> Callable[[], None]:
    """What the child runs between fork and exec: join the cgroups, set the rlimit, then drop to ``uid``."""
    def confine() -> None:
        # Joining needs root, and Popen(user=...) would drop it before any preexec_fn: so the uid is dropped here.
        for path in procs:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"0")  # 0 is the writing process itself
            finally:
                os.close(fd)
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
    return confine


@dataclass(frozen=True)
class Placement:
    """Where one runner is confined: the cgroup directories it joins, or the address-space limit it gets."""

    cgroups: tuple[str, ...] = ()
    address_space: int | None = None


class Limiter:
    """Applies the configured memory and CPU limits to the runners of one manager instance."""

    def __init__(self, instance: str, memory: str | None = None, cpus: float | None = None,
                 choice: str = "auto") -> None:
        if choice not in MECHANISMS:
            raise ValueError(f"process limits must be one of {', '.join(MECHANISMS)}, not {choice!r}")
        self.instance = instance
        self.memory = memory or None
        self.memory_bytes = parse_memory(memory) if memory else None
        self.cpus = cpus if cpus and cpus > 0 else None
        self.mechanism = "none"
        self.fallback_reason = ""
        # Per hierarchy: the instance's directory and the controller files a runner's cgroup gets.
        self._bases: dict[str, Path] = {}
        if choice == "none" or (self.memory_bytes is None and self.cpus is None):
            return
        why = ""
        if choice in ("auto", "cgroup"):
            try:
                self._bases = self._cgroup_bases()
                self.mechanism = "cgroup v2" if "v2" in self._bases else "cgroup v1"
                return
            except (OSError, RuntimeError_, subprocess.SubprocessError) as exc:
                why = str(exc) or type(exc).__name__
            if choice == "cgroup":
                raise RuntimeError_(f"cannot give runners a cgroup of their own: {why}; "
                                    f"use --ManagerApp.process_limits=rlimit (memory only)")
        self.mechanism = "rlimit" if self.memory_bytes is not None else "none"
        self.fallback_reason = why

    # -- set-up ---------------------------------------------------------------------------

    def _cgroup_bases(self) -> dict[str, Path]:
        """The instance's cgroup directories, made and checked by moving a probe process into one."""
        mounts = _mounts()
        v2 = next((Path(point) for point, kind, _ in mounts if kind == "cgroup2"), None)
        wanted = {"memory"} if self.memory_bytes is not None else set()
        if self.cpus is not None:
            wanted.add("cpu")
        if v2 is not None and wanted <= set((v2 / "cgroup.controllers").read_text().split()):
            # v2 allows no processes in a cgroup whose controllers are handed down, so the tree hangs
            # off the hierarchy's root rather than the manager's own cgroup.
            enable = " ".join(f"+{name}" for name in sorted(wanted))
            node = v2
            for part in (CGROUP_DIR, self.instance):
                if not wanted <= set((node / "cgroup.subtree_control").read_text().split()):
                    _write(node / "cgroup.subtree_control", enable)
                node = node / part
                node.mkdir(exist_ok=True)
            if not wanted <= set((node / "cgroup.subtree_control").read_text().split()):
                _write(node / "cgroup.subtree_control", enable)
            bases = {"v2": node}
        else:
            own = _own_cgroups()
            bases = {}
            for name in sorted(wanted):
                point = next((Path(p) for p, kind, opts in mounts if kind == "cgroup" and name in opts), None)
                if point is None:
                    raise RuntimeError_(f"no cgroup hierarchy has the {name} controller")
                # v1 has no such rule: nest under the manager's own cgroup, inside whatever limits it has.
                base = point / own.get(name, "/").lstrip("/") / CGROUP_DIR / self.instance
                base.mkdir(parents=True, exist_ok=True)
                bases[name] = base
        self._probe(bases)
        return bases

    def _probe(self, bases: dict[str, Path]) -> None:
        """Move a short-lived process into a fresh cgroup of each base: mkdir alone does not prove joining works."""
        leaves = [base / f".probe-{os.getpid()}" for base in bases.values()]
        try:
            for leaf in leaves:
                leaf.mkdir(exist_ok=True)
            subprocess.run(["true"], check=True, timeout=PROBE_TIMEOUT,
                           preexec_fn=_join(tuple(str(leaf / "cgroup.procs") for leaf in leaves), None, None))
        finally:
            for leaf in leaves:
                with contextlib.suppress(OSError):
                    leaf.rmdir()

    # -- per runner -----------------------------------------------------------------------

    def describe(self) -> str:
        """What the runners get, for the service log's start line."""
        if self.mechanism == "none":
            return "no memory or CPU limit"
        if self.mechanism == "rlimit":
            cpu = "; no CPU limit without a cgroup" if self.cpus is not None else ""
            return f"memory {self.memory} (address-space rlimit{cpu})"
        parts = [f"memory {self.memory}"] if self.memory else []
        if self.cpus is not None:
            parts.append(f"{self.cpus:g} CPU")
        return ", ".join(parts) + f" ({self.mechanism})"

    def place(self, key: str) -> Placement:
        """Make (or reuse) the runner's cgroup and write its limits; or name the rlimit it gets."""
        if self.mechanism == "rlimit":
            return Placement(address_space=self.memory_bytes)
        if self.mechanism == "none":
            return Placement()
        if not all(base.is_dir() for base in self._bases.values()):
            # Removed while every runner was stopped (shutdown_all, a clean-up): made again the same way.
            self._bases = self._cgroup_bases()
        leaves: list[str] = []
        if "v2" in self._bases:
            leaf = self._bases["v2"] / key
            leaf.mkdir(exist_ok=True)
            if self.memory_bytes is not None:
                _write(leaf / "memory.max", str(self.memory_bytes))
                if (leaf / "memory.swap.max").exists():
                    # As docker's memswap_limit = memory: no swapping past the limit either.
                    _write(leaf / "memory.swap.max", "0")
            if self.cpus is not None:
                _write(leaf / "cpu.max", f"{self._quota()} {CPU_PERIOD_US}")
            leaves.append(str(leaf))
        if "memory" in self._bases:
            leaf = self._bases["memory"] / key
            leaf.mkdir(exist_ok=True)
            swap = leaf / "memory.memsw.limit_in_bytes"
            if swap.exists():
                # memsw may never be below the limit: lift it first, set the limit, then bring it down to it.
                _write(swap, "-1")
            _write(leaf / "memory.limit_in_bytes", str(self.memory_bytes))
            if swap.exists():
                _write(swap, str(self.memory_bytes))
            leaves.append(str(leaf))
        if "cpu" in self._bases:
            leaf = self._bases["cpu"] / key
            leaf.mkdir(exist_ok=True)
            _write(leaf / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(leaf / "cpu.cfs_quota_us", str(self._quota()))
            leaves.append(str(leaf))
        return Placement(cgroups=tuple(leaves))

    def _quota(self) -> int:
        """The CPU quota per period; the kernel refuses quotas under 1 ms."""
        return max(1000, int((self.cpus or 0) * CPU_PERIOD_US))

    def preexec(self, placement: Placement, uid: int | None) -> Callable[[], None] | None:
        """The function Popen runs in the child to confine it (and drop to ``uid``), or None when nothing to do."""
        if not placement.cgroups and placement.address_space is None:
            return None
        return _join(tuple(os.path.join(c, "cgroup.procs") for c in placement.cgroups), placement.address_space, uid)

    def memory_env(self, placement: Placement) -> dict[str, str]:
        """Environment the runner needs under its limit."""
        if placement.address_space is None:
            return {}
        # glibc reserves 64 MiB of address space per thread arena: without a cap, threads alone use up the rlimit.
        return {"MALLOC_ARENA_MAX": "2"}

    @staticmethod
    def oom_kills(cgroups: tuple[str, ...] | list[str]) -> int:
        """How many times the kernel's OOM killer has killed in the runner's memory cgroup so far."""
        for leaf in map(Path, cgroups):
            if (leaf / "memory.events").exists():
                return _count(leaf / "memory.events", "oom_kill")
            if (leaf / "memory.oom_control").exists():
                return _count(leaf / "memory.oom_control", "oom_kill")
        return 0

    @staticmethod
    def kill_rest(cgroups: tuple[str, ...] | list[str]) -> None:
        """Kill what the runner left in its cgroup (processes it started in sessions of their own)."""
        for leaf in map(Path, cgroups):
            kill = leaf / "cgroup.kill"
            if kill.exists():
                with contextlib.suppress(OSError):
                    _write(kill, "1")
                continue
            with contextlib.suppress(OSError, ValueError):
                for pid in (leaf / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(int(pid), signal.SIGKILL)

    @staticmethod
    def release(cgroups: tuple[str, ...] | list[str]) -> None:
        """Remove the runner's cgroups once they are empty (the kernel refuses while a process is left)."""
        for leaf in map(Path, cgroups):
            with contextlib.suppress(OSError):
                leaf.rmdir()

    def release_instance(self) -> None:
        """Remove the instance's cgroup directories (and the shared parent) when no runner's cgroup is left."""
        for base in self._bases.values():
            for directory in (base, base.parent):
                with contextlib.suppress(OSError):
                    directory.rmdir()
