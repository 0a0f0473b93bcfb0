"""The deploy pipeline: accept a bundle, then build, start and health-check the new version, streaming progress."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import tornado
from packaging.requirements import InvalidRequirement, Requirement

import jupyter_deploy_contract as contract

from .auth import Auth
from .errors import ApiError
from .names import check_name, check_version
from .runtimes.base import Endpoint, Lock, Runtime, VersionSpec
from .store import Store, VersionRecord

log = logging.getLogger("jupyter_deploy_manager")

SEMVER_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")

HEALTH_POLL_INTERVAL = 0.05
"""Seconds between two health probes of a starting version."""
HEALTH_PROBE_TIMEOUT = 2.0
"""Seconds one health probe may take."""
STATE_CHECK_INTERVAL = 0.5
"""Seconds between two questions to the runtime whether a starting version still runs."""
HEALTH_SESSION_TIMEOUT = 5.0
"""Total timeout of the health-check session's requests."""
LAST_ERROR_LINES = 40
"""Log lines searched for the runner's fatal error when a version does not become healthy."""


def next_version(existing: list[str]) -> str:
    """The next patch version after the highest semver among ``existing`` (0.1.0 first)."""
    best = None
    for v in existing:
        m = SEMVER_RE.match(v)
        if m:
            t = tuple(int(x) for x in m.groups())
            best = t if best is None or t > best else best
    if best is None:
        return "0.1.0" if "0.1.0" not in existing else f"0.1.{len(existing)}"
    return f"{best[0]}.{best[1]}.{best[2] + 1}"


@dataclass
class DeployTask:
    """Progress of one deploy: its events so far, followed by streaming clients."""

    service: str
    version: str
    events: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    status: str = "building"
    make_main: bool = True
    # The stored version's creation time: a version deleted and deployed again under the same
    # number is another version, which this deploy must not touch.
    created: float = 0.0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def emit(self, phase: str, kind: str, message: str, **extra: Any) -> None:
        """Append an event and wake followers."""
        event = {
            "seq": len(self.events),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "phase": phase,
            "kind": kind,
            "message": message,
        }
        event.update(extra)
        self.events.append(event)
        self._changed.set()

    def finish(self, status: str, phase: str, message: str, **extra: Any) -> None:
        """The last event: the deploy is ``running`` or ``failed``."""
        self.status = status
        self.finished = True
        self.emit(phase, "result", message, status=status, **extra)

    async def follow(self, start: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Yield events from ``start`` until the deploy finishes."""
        index = start
        while True:
            while index < len(self.events):
                yield self.events[index]
                index += 1
            if self.finished:
                return
            self._changed.clear()
            await self._changed.wait()


class DeployFailed(Exception):
    """A deploy stopped in one of its phases; the message is shown to the user."""

    def __init__(self, phase: str, message: str):
        super().__init__(message)
        self.phase = phase
        self.message = message


class Pipeline:
    """Bundles on disk, the build → start → health sequence, and the progress of every deploy."""

    def __init__(
        self, store: Store, auth: Auth, runtime: Runtime, data_dir: Path, max_bundle_size: int, health_timeout: float
    ):
        self.store = store
        self.auth = auth
        self.runtime = runtime
        self.data_dir = Path(data_dir)
        self.max_bundle_size = max_bundle_size
        self.health_timeout = health_timeout
        self.tasks: dict[tuple[str, str], DeployTask] = {}
        self._session: aiohttp.ClientSession | None = None

    # -- bundles and specs ----------------------------------------------------------------

    def bundle_dir(self, service: str, version: str | None = None) -> Path:
        """Where a version's extracted bundle lives (a service's bundles without a version)."""
        base = self.data_dir / "bundles" / service
        return base / version if version is not None else base

    def can_run(self, record: VersionRecord) -> bool:
        """Whether a version's bundle is still on disk to start it from."""
        return (self.bundle_dir(record.service, record.version) / contract.PAYLOAD).exists()

    def remove_bundle(self, service: str, version: str | None = None) -> None:
        """Delete a version's (or every version's) extracted bundle."""
        shutil.rmtree(self.bundle_dir(service, version), ignore_errors=True)

    @staticmethod
    def lock_for(manifest: dict[str, Any]) -> Lock:
        """The manifest's pins plus what the runner itself needs."""
        reqs = list(manifest.get("requirements") or [])
        names = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower().replace("_", "-") for r in reqs}
        if "tornado" not in names:
            reqs.append(f"tornado=={tornado.version}")
        if "cloudpickle" not in names:
            reqs.append(f"cloudpickle=={manifest['cloudpickle']}")
        return Lock(python=str(manifest["python"]), requirements=tuple(sorted(reqs)))

    def spec(self, record: VersionRecord) -> VersionSpec:
        """The runtime's view of a stored version."""
        return VersionSpec(
            service=record.service,
            version=record.version,
            bundle_dir=self.bundle_dir(record.service, record.version),
            manifest=record.manifest,
            lock=self.lock_for(record.manifest),
        )

    # -- accepting a bundle ----------------------------------------------------------------

    def check_bundle(self, name: str, data: bytes, sha256: str | None,
                     direct_urls: bool = False) -> tuple[dict[str, Any], str]:
        """The manifest and checksum of an upload whose size, checksum, format and requirements are right."""
        check_name(name)
        if len(data) > self.max_bundle_size:
            raise ApiError(
                413, f"bundle is {len(data)} bytes, over the manager's limit of {self.max_bundle_size}", "too-large"
            )
        if not sha256:
            raise ApiError(400, "missing X-Bundle-SHA256 header", "missing-checksum")
        actual = contract.sha256_hex(data)
        if actual != sha256.lower():
            raise ApiError(
                400, f"bundle checksum mismatch: header says {sha256}, received {actual}", "checksum-mismatch"
            )
        try:
            manifest = contract.read_bundle(data)[0]
        except contract.ContractError as exc:
            raise ApiError(400, str(exc), "bad-bundle") from exc
        if not direct_urls:
            for text in manifest["requirements"]:
                with contextlib.suppress(InvalidRequirement):
                    if Requirement(text).url is not None:
                        # Fetched from anywhere and built from source: an admin's decision, not a deployer's.
                        raise ApiError(403, f"requirement {text!r} is a direct URL; only admins may deploy "
                                            "requirements that do not come from the package index", "forbidden")
        return manifest, actual

    def register(
        self, name: str, data: bytes, manifest: dict[str, Any], checksum: str, username: str, make_main: bool
    ) -> tuple[DeployTask, dict[str, Any]]:
        """Give a checked bundle its version, unpack it and record it as building (under the service's lock)."""
        existing = [v.version for v in self.store.list_versions(name)]
        version = manifest.get("version") or next_version(existing)
        check_version(str(version))
        if version in existing:
            raise ApiError(
                409, f"{name} {version} exists already; deploy with another --version or without one", "version-exists"
            )
        manifest["name"] = name
        manifest["version"] = version
        dest = self.bundle_dir(name, version)
        if dest.exists():
            shutil.rmtree(dest)
        contract.extract(data, dest)
        # The runner reads the manifest from disk: keep the assigned name and version there too.
        (dest / contract.MANIFEST).write_text(json.dumps(manifest, indent=2))
        self.store.ensure_service(name, username)
        self.store.add_version(name, version, manifest, self.lock_for(manifest).hash)
        record = self.store.get_version(name, version)
        assert record is not None
        token, token_record = self.auth.issue(username, "invoke", name, None, note=f"deploy {version}")
        task = DeployTask(name, version, make_main=make_main, created=record.created)
        self.tasks[(name, version)] = task
        task.emit("upload", "phase", f"received bundle ({len(data)} bytes, sha256 {checksum[:12]})")
        return task, {"name": name, "version": version, "token": token, "token_id": token_record.id}

    def task(self, name: str, version: str) -> DeployTask:
        """The deploy task of a version; a finished stand-in after a manager restart."""
        task = self.tasks.get((name, version))
        if task is not None:
            return task
        record = self.store.get_version(name, version)
        if record is None:
            raise ApiError(404, f"no version {version!r} of service {name!r}", "unknown-version")
        task = DeployTask(name, version, finished=True, status=record.status)
        ok = record.status in ("running", "stopped")
        task.emit(
            "done" if ok else "error",
            "result",
            record.error or f"{name} {version} is {record.status}",
            status="running" if ok else record.status,
        )
        return task

    # -- build, start, health --------------------------------------------------------------

    async def build_and_start(self, task: DeployTask, spec: VersionSpec) -> Endpoint:
        """Build the version, start it and wait for its health check; DeployFailed names the phase that failed.

        Runs without the service's lock: a build may take minutes, and the version takes no traffic yet.
        """
        loop = asyncio.get_running_loop()

        def sink(line: str) -> None:
            loop.call_soon_threadsafe(task.emit, "build", "log", line.rstrip("\n"))

        phase = "build"
        try:
            task.emit("build", "phase", f"building on the {self.runtime.name} runtime (lock {spec.lock.hash})")
            started = time.monotonic()
            await asyncio.to_thread(self.runtime.build, spec, sink)
            task.emit("build", "phase", f"built in {time.monotonic() - started:.1f} s")
            phase = "start"
            self.store.set_version_status(task.service, task.version, "starting")
            task.emit("start", "phase", "starting")
            endpoint = await asyncio.to_thread(self.runtime.start, spec)
            phase = "health"
            task.emit("health", "phase", "waiting for the health check")
            await self.wait_healthy(spec, endpoint)
        except Exception as exc:
            raise DeployFailed(phase, str(exc) or type(exc).__name__) from exc
        return endpoint

    async def start_healthy(self, spec: VersionSpec) -> Endpoint:
        """Start a built version (if it does not run) and wait until it is healthy."""
        endpoint = await asyncio.to_thread(self.runtime.start, spec)
        await self.wait_healthy(spec, endpoint)
        return endpoint

    async def session(self) -> aiohttp.ClientSession:
        """A shared HTTP session for health checks."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HEALTH_SESSION_TIMEOUT))
        return self._session

    async def close(self) -> None:
        """Close the health-check session."""
        if self._session is not None:
            await self._session.close()

    async def wait_healthy(self, spec: VersionSpec, endpoint: Endpoint) -> None:
        """Poll the runner's /healthz until it answers, the process dies, or time runs out."""
        session = await self.session()
        deadline = time.monotonic() + self.health_timeout
        last_state_check = 0.0
        while time.monotonic() < deadline:
            try:
                probe = aiohttp.ClientTimeout(total=HEALTH_PROBE_TIMEOUT)
                async with session.get(endpoint.url + "/healthz", timeout=probe) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            if time.monotonic() - last_state_check > STATE_CHECK_INTERVAL:
                last_state_check = time.monotonic()
                state = await asyncio.to_thread(self.runtime.state, spec)
                if state != "running":
                    raise RuntimeError(f"service exited before it was healthy: {await self._last_error(spec)}")
            await asyncio.sleep(HEALTH_POLL_INTERVAL)
        raise RuntimeError(
            f"no healthy answer within {self.health_timeout:.0f} s: {await self._last_error(spec)}"
        )

    async def _last_error(self, spec: VersionSpec) -> str:
        text = await asyncio.to_thread(self.runtime.logs, spec, LAST_ERROR_LINES)
        lines = [line for line in text.splitlines() if line.strip()]
        for line in reversed(lines):
            if "jupyter-deploy runner:" in line:
                return line.strip()
        return " | ".join(lines[-5:]) if lines else "(the service wrote no log)"
