"""The small interface every runtime implements (docker, process; swarm later)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

LogSink = Callable[[str], None]
"""Receives build/start log lines as they come."""

EventSink = Callable[[str, str, str, str], None]
"""on_event(service, version, event, message) from a runtime's threads; events: crashed, restarted, failed."""

RUNNER_PORT = 8080
"""Port the service runner listens on inside a container."""

LABEL = "io.jupyter-deploy"
"""Label prefix put on every container/image the manager creates."""


class RuntimeError_(Exception):
    """A runtime could not build, start or stop a version; the message is shown to the user."""


PERMANENT_EXITS = {3: "the bundle cannot run here", 4: "the payload cannot be loaded"}
"""Runner exit statuses that restarting cannot fix (see the runner's EXIT_REFUSED / EXIT_LOAD_FAILED)."""

OUT_OF_MEMORY_EXIT = 5
"""The runner's exit status after a MemoryError under an address-space limit (its EXIT_OUT_OF_MEMORY)."""

RESTART_FIRST_DELAY = 0.25
"""Seconds before the first restart of a crashed runner; each quick crash after it doubles the wait."""

RESTART_MAX_DELAY = 30.0
"""The longest wait between restarts of a runner that keeps crashing (it is restarted forever)."""

RESTART_RESET_AFTER = 60.0
"""A runner that ran this many seconds before dying starts again from the first delay."""


@dataclass
class Backoff:
    """Restart delays of one runner: doubling while it crashes quickly, reset once it stays up."""

    crashes: int = 0
    started: float = 0.0

    def crashed(self, now: float) -> float:
        """Record a crash at ``now``; return the seconds to wait before starting it again."""
        if now - self.started > RESTART_RESET_AFTER:
            self.crashes = 0
        self.crashes += 1
        return min(RESTART_MAX_DELAY, RESTART_FIRST_DELAY * 2 ** (self.crashes - 1))


@dataclass(frozen=True)
class Lock:
    """The pinned requirement set of a version, plus the Python it runs on."""

    python: str
    requirements: tuple[str, ...]

    @property
    def hash(self) -> str:
        """Stable short hash: same pins and Python give the same dependency layer / venv."""
        blob = json.dumps({"python": self.python, "requirements": sorted(self.requirements)})
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def text(self) -> str:
        """requirements.txt content."""
        return "".join(f"{r}\n" for r in sorted(self.requirements))


@dataclass(frozen=True)
class Endpoint:
    """Where a running version's runner answers."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """Base URL of the runner."""
        return f"http://{self.host}:{self.port}"


@dataclass
class VersionSpec:
    """Everything a runtime needs to build and run one version of a service."""

    service: str
    version: str
    bundle_dir: Path
    manifest: dict[str, Any]
    lock: Lock
    extra: dict[str, Any] = field(default_factory=dict)
    # The runner's environment, set by the manager for ``start`` only: plain variables (its configuration
    # may show them) and secret values (never written into a configuration, an image or a log; not in repr).
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    # A version's runner is replaced by a new generation (its own container or process) when its secrets
    # rotate: the new one starts beside the old, which stops once calls have moved over.
    generation: int = 0

    @property
    def key(self) -> str:
        """Unique, name-safe key for this version's runner (container name, process dir); one per generation."""
        # '~' is in neither names nor versions: generation 1 of a version never meets another version's key.
        return f"{self.service}--{self.version}".replace("+", "_") + (f"~{self.generation}" if self.generation else "")


class Runtime(ABC):
    """Builds and runs versions. Methods may block on I/O; the manager calls them in a thread."""

    name: str = "abstract"

    @abstractmethod
    def build(self, spec: VersionSpec, log: LogSink) -> None:
        """Prepare what ``start`` needs (image / venv); reuse cached layers."""

    @abstractmethod
    def start(self, spec: VersionSpec) -> Endpoint:
        """Start the version (idempotent) and return where its runner listens."""

    @abstractmethod
    def stop(self, spec: VersionSpec) -> None:
        """Stop the version, keeping what ``start`` needs to start it again."""

    @abstractmethod
    def remove(self, spec: VersionSpec, keep_image: bool = False) -> None:
        """Stop and delete the version's container/process and (unless kept) its image."""

    @abstractmethod
    def state(self, spec: VersionSpec) -> str:
        """``running``, ``exited`` or ``missing``."""

    @abstractmethod
    def endpoint(self, spec: VersionSpec) -> Endpoint | None:
        """Where the running version answers, or None."""

    @abstractmethod
    def logs(self, spec: VersionSpec, tail: int = 200) -> str:
        """The last ``tail`` lines of the version's log."""

    @abstractmethod
    def follow(self, spec: VersionSpec, stop: "threading.Event") -> Iterator[str]:
        """Yield log lines written from now on, until ``stop`` is set (checked at least twice a second)."""

    @abstractmethod
    def managed(self) -> list[tuple[str, str]]:
        """(service, version) pairs this runtime is running, for reconciliation."""

    def retire(self, spec: VersionSpec) -> None:
        """Stop and delete one generation's runner, keeping what the version's other generations share (its image)."""
        self.remove(spec, keep_image=True)

    def usage(self, spec: VersionSpec) -> dict[str, float] | None:
        """``{"memory_mb", "cpu_seconds"}`` of a running version, or None when unknown."""
        return None

    def close(self) -> None:
        """Release resources held by the runtime (not the versions it runs)."""


class CommandTimeout(RuntimeError_):
    """A command ran over its time limit and was killed; the message names the limit."""


def run_streamed(
    cmd: list[str], log: LogSink, env: dict[str, str] | None = None, keep: int = 15, umask: int = -1,
    timeout: float | None = None, limit: str = "",
) -> tuple[int, list[str]]:
    """Run a command, send each output line to ``log`` as it comes; return its exit code and last lines.

    With ``timeout`` the command gets that many seconds in all: then it and everything it started are
    killed and CommandTimeout names ``limit`` (the setting that gives the time), so a hung pip never
    holds a lock (the wheelhouse's, a venv's) for good.
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, errors="replace", env=env, umask=umask,
                            # Its own process group, so the kill reaches the builds and downloads it started.
                            start_new_session=timeout is not None)
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill) if timeout is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    assert proc.stdout is not None
    tail: list[str] = []
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            log(line)
            tail = (tail + [line])[-keep:]
        code = proc.wait()
    finally:
        if timer is not None:
            timer.cancel()
    if expired.is_set():
        name = " ".join(cmd[2:4]) if len(cmd) > 2 and cmd[1] == "-m" else os.path.basename(cmd[0])
        raise CommandTimeout(
            f"{name} ran over its time limit of {timeout:g} s and was stopped"
            + (f" (set by {limit})" if limit else "") + (":\n" + "\n".join(tail) if tail else "")
        )
    return code, tail


def host_python() -> str:
    """X.Y of the Python running the manager."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"
