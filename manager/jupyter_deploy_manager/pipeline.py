"""The deploy pipeline: accept a bundle, then build, start and health-check the new version, streaming progress."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import aiohttp
import tornado
from packaging.requirements import InvalidRequirement, Requirement

import jupyter_deploy_contract as contract

from .auth import Auth
from .errors import ApiError
from .names import check_name, check_version
from .runtimes.base import Endpoint, Lock, Runtime, VersionSpec
from .store import Store, VersionRecord
from .vault import Vault, redact

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
BUILD_LOG_LINES = 2000
"""Build log lines a deploy's event stream keeps, the last ones (``ManagerApp.build_log_lines``)."""
DEPLOY_TASK_KEEP = 3600.0
"""Seconds a finished deploy keeps its whole event stream; then only its result (``ManagerApp.deploy_task_keep``)."""
SMOKE_TIMEOUT = 60.0
"""Seconds one entrypoint's call on the sample may take in the smoke test before the deploy fails
(``ManagerApp.smoke_timeout``)."""
SMOKE_PREVIEW_CHARS = 200
"""Characters of an entrypoint's answer to the sample shown on the deployment card."""


UPLOADS = "uploads"
"""Folder of the data dir where bundles are received and checked before they become a version's."""
UPLOAD_THREADS = 8
"""Threads writing, hashing, checking and unpacking uploads: never the event loop, nor the pool builds use."""


class BundleUpload:
    """A bundle as it arrives: written to a file of its own while its size and sha256 are counted.

    Nothing of it stays in memory; writes run in the pipeline's upload threads, one chunk after the
    other (tornado reads the next chunk once a write is done). Past ``limit`` bytes the rest is dropped
    and ``too_large`` set, for a 413 once the body is in.
    """

    def __init__(self, directory: Path, limit: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="upload-", dir=directory))
        self.path = self.dir / "bundle.tar"
        self.extracted = self.dir / "bundle"
        self.limit = limit
        self.size = 0
        self.too_large = False
        self._hash = hashlib.sha256()
        self._file = open(self.path, "wb")
        self._guard = threading.Lock()
        self._gone = False

    def write(self, chunk: bytes) -> None:
        """Append a chunk (blocking: run it in the upload threads)."""
        with self._guard:
            if self._gone or self.too_large:
                return
            if self.size + len(chunk) > self.limit:
                self.too_large = True
                return
            self.size += len(chunk)
            self._hash.update(chunk)
            self._file.write(chunk)

    def finish(self) -> str:
        """Close the file; return the sha256 (hex) of what was written."""
        with self._guard:
            self._file.close()
            return self._hash.hexdigest()

    def discard(self) -> None:
        """Remove the file and whatever was unpacked from it (blocking)."""
        with self._guard:
            self._gone = True
            self._file.close()
        shutil.rmtree(self.dir, ignore_errors=True)


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
    """Progress of one deploy: its events so far, followed by streaming clients.

    ``seq`` numbers every event ever emitted; ``events`` keeps them all but build log lines past the
    last ``log_lines``: older ones are dropped, and one event of kind ``log`` in the place of the
    newest dropped one says how many are gone, so a reader never takes the stream for whole.
    """

    service: str
    version: str
    events: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    status: str = "building"
    make_main: bool = True
    # The stored version's creation time: a version deleted and deployed again under the same
    # number is another version, which this deploy must not touch.
    created: float = 0.0
    log_lines: int = BUILD_LOG_LINES
    on_finish: Callable[[DeployTask], None] | None = None
    dropped: int = 0
    # The smoke test's outcome ({"sample": bool, "entrypoints": [...]}), carried by the result event.
    smoke: dict[str, Any] | None = None
    _seq: int = 0
    _logs: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def emit(self, phase: str, kind: str, message: str, **extra: Any) -> None:
        """Append an event and wake followers."""
        event = {
            "seq": self._seq,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "phase": phase,
            "kind": kind,
            "message": message,
        }
        event.update(extra)
        self._seq += 1
        self.events.append(event)
        if kind == "log" and "dropped" not in event:
            self._logs += 1
            if self._logs > self.log_lines:
                self._drop_oldest_log()
        self._changed.set()

    def _drop_oldest_log(self) -> None:
        """Put the marker in the place of the oldest kept log line (taking its number); the old marker goes."""
        # Both are near the start (after a few phase events), so these scans stop early.
        marker = next((i for i, e in enumerate(self.events) if "dropped" in e), None)
        index = next(i for i, e in enumerate(self.events) if e["kind"] == "log" and "dropped" not in e)
        self._logs -= 1
        self.dropped += 1
        self.events[index] = dict(
            self.events[index], dropped=self.dropped,
            message=f"[{self.dropped} earlier build log line(s) dropped: the manager keeps the last {self.log_lines}]",
        )
        if marker is not None:
            del self.events[marker]

    def _index(self, seq: int) -> int:
        return bisect.bisect_left(self.events, seq, key=lambda e: e["seq"])

    def since(self, seq: int) -> list[dict[str, Any]]:
        """The kept events numbered ``seq`` and after."""
        return self.events[self._index(seq):]

    def finish(self, status: str, phase: str, message: str, **extra: Any) -> None:
        """The last event: the deploy is ``running`` or ``failed``."""
        self.status = status
        self.finished = True
        if self.smoke is not None:
            extra.setdefault("smoke", self.smoke)
        self.emit(phase, "result", message, status=status, **extra)
        if self.on_finish is not None:
            self.on_finish(self)

    def compact(self) -> None:
        """Keep only the result (a finished deploy's log is long read, and every deploy has one)."""
        self.events = [e for e in self.events if e["kind"] == "result"]
        self._logs = 0

    async def follow(self, start: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Yield events from ``start`` until the deploy finishes."""
        seq = start
        while True:
            # Looked up by number each time: events may be dropped while a slow reader waits.
            while (index := self._index(seq)) < len(self.events):
                event = self.events[index]
                yield event
                seq = event["seq"] + 1
            if self.finished:
                return
            self._changed.clear()
            await self._changed.wait()


class SmokeFailed(Exception):
    """An entrypoint failed on the deploy's sample (raised, timed out, or returned what JSON cannot carry)."""


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
        self.build_log_lines = BUILD_LOG_LINES
        self.task_keep = DEPLOY_TASK_KEEP
        self.smoke_timeout = SMOKE_TIMEOUT
        # Secret values for runners' environments and the runners' control keys (set by the deployment service).
        self.vault: Vault | None = None
        self._session: aiohttp.ClientSession | None = None
        self.uploads = self.data_dir / UPLOADS
        self.upload_threads = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="upload")
        # What a manager killed mid-upload left; nothing is being received yet.
        shutil.rmtree(self.uploads, ignore_errors=True)

    # -- bundles and specs ----------------------------------------------------------------

    def bundle_dir(self, service: str, version: str | None = None) -> Path:
        """Where a version's extracted bundle lives (a service's bundles without a version)."""
        base = self.data_dir / "bundles" / service
        return base / version if version is not None else base

    def can_run(self, record: VersionRecord) -> bool:
        """Whether a version's bundle is still on disk to start it from."""
        return (self.bundle_dir(record.service, record.version) / contract.PAYLOAD).exists()

    def remove_bundle(self, service: str, version: str | None = None) -> None:
        """Delete a version's (or every version's) extracted bundle, and its deploy's progress."""
        shutil.rmtree(self.bundle_dir(service, version), ignore_errors=True)
        for key in [k for k in self.tasks if k[0] == service and version in (None, k[1])]:
            del self.tasks[key]

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
            generation=record.generation,
        )

    # -- accepting a bundle ----------------------------------------------------------------

    def receive(self) -> BundleUpload:
        """A new upload, spooled in the data dir and bounded by ``max_bundle_size``."""
        return BundleUpload(self.uploads, self.max_bundle_size)

    def check_upload(self, name: str, sha256: str | None) -> None:
        """What can be refused before the body arrives: the name and a missing checksum header."""
        check_name(name)
        if not sha256:
            raise ApiError(400, "missing X-Bundle-SHA256 header", "missing-checksum")

    def check_bundle(self, name: str, upload: BundleUpload, sha256: str | None,
                     direct_urls: bool = False) -> tuple[dict[str, Any], str]:
        """The manifest and checksum of a received upload whose size, checksum, format and requirements are right.

        Blocking (it reads and unpacks the whole upload): run it in ``upload_threads``. The bundle is unpacked
        into the upload's own folder, which ``register`` moves into place.
        """
        self.check_upload(name, sha256)
        assert sha256 is not None
        if upload.too_large:
            raise ApiError(413, f"the bundle is more than {self.max_bundle_size} bytes, over the manager's limit "
                                f"of {self.max_bundle_size} bytes (ManagerApp.max_bundle_size)", "too-large")
        actual = upload.finish()
        if actual != sha256.lower():
            raise ApiError(
                400, f"bundle checksum mismatch: header says {sha256}, received {actual}", "checksum-mismatch"
            )
        try:
            manifest = contract.extract(upload.path, upload.extracted)
        except contract.ContractError as exc:
            raise ApiError(400, str(exc), "bad-bundle") from exc
        if not direct_urls:
            for text in manifest["requirements"]:
                with contextlib.suppress(InvalidRequirement):
                    if Requirement(text).url is not None:
                        # Fetched from anywhere and built from source: an admin's decision, not a deployer's.
                        raise ApiError(403, f"requirement {text!r} is a direct URL; only admins may deploy "
                                            "requirements that do not come from the package index", "forbidden")
        missing = [n for n in manifest.get("secrets") or [] if self.vault is not None and not self.vault.has(n)]
        if missing:
            # Refused before anything is built: a version that cannot start is no use to anyone.
            raise ApiError(422, f"secret {', '.join(missing)} is not set on this manager; set it first with "
                                f"`jupyter-deploy secret set {missing[0]}`", "unknown-secret")
        return manifest, actual

    def register(
        self, name: str, upload: BundleUpload, manifest: dict[str, Any], checksum: str, username: str, make_main: bool
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
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Unpacked and checked by check_bundle already: a rename, quick while this holds the service's lock.
        os.replace(upload.extracted, dest)
        # The runner reads the manifest from disk: keep the assigned name and version there too.
        (dest / contract.MANIFEST).write_text(json.dumps(manifest, indent=2))
        self.store.ensure_service(name, username)
        self.store.add_version(name, version, manifest, self.lock_for(manifest).hash)
        record = self.store.get_version(name, version)
        assert record is not None
        token, token_record = self.auth.issue(username, "invoke", name, None, note=f"deploy {version}")
        task = DeployTask(name, version, make_main=make_main, created=record.created,
                          log_lines=self.build_log_lines, on_finish=self._finished)
        self.tasks[(name, version)] = task
        task.emit("upload", "phase", f"received bundle ({upload.size} bytes, sha256 {checksum[:12]})")
        return task, {"name": name, "version": version, "token": token, "token_id": token_record.id}

    def _finished(self, task: DeployTask) -> None:
        """A finished deploy keeps its stream a while for late readers, then only its result."""
        asyncio.get_running_loop().call_later(self.task_keep, self._compact, task)

    def _compact(self, task: DeployTask) -> None:
        if self.tasks.get((task.service, task.version)) is task:
            task.compact()

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
            task.emit("start", "phase", "starting" + self._environment_note(spec.manifest))
            self.prepare(spec)
            endpoint = await asyncio.to_thread(self.runtime.start, spec)
            phase = "health"
            task.emit("health", "phase", "waiting for the health check")
            await self.wait_healthy(spec, endpoint)
            phase = "smoke"
            task.smoke = await self.smoke_test(spec, endpoint, task)
        except Exception as exc:
            raise DeployFailed(phase, str(exc) or type(exc).__name__) from exc
        return endpoint

    async def start_healthy(self, spec: VersionSpec, smoke: bool = False) -> Endpoint:
        """Start a built version (if it does not run) and wait until it is healthy (and, asked to, passes its smoke test)."""
        self.prepare(spec)
        endpoint = await asyncio.to_thread(self.runtime.start, spec)
        await self.wait_healthy(spec, endpoint)
        if smoke:
            await self.smoke_test(spec, endpoint)
        return endpoint

    # -- the runner's environment ------------------------------------------------------------

    @staticmethod
    def _environment_note(manifest: dict[str, Any]) -> str:
        names = sorted(manifest.get("env") or {}) + [f"{n} (secret)" for n in manifest.get("secrets") or []]
        return f" with environment {', '.join(names)}" if names else ""

    def control_key(self, spec: VersionSpec) -> str:
        """The key of a runner's control routes: derived from the secrets key, so it outlives a manager restart."""
        assert self.vault is not None
        return self.vault.derive(f"runner-control/{self.runtime.name}/{spec.key}")

    def prepare(self, spec: VersionSpec) -> VersionSpec:
        """Fill in what a start gives the runner: the deploy's variables, its secrets' values, the control key's hash."""
        manifest = spec.manifest
        spec.env = dict(manifest.get("env") or {})
        if self.vault is not None:
            spec.env[contract.CONTROL_KEY_ENV] = hashlib.sha256(self.control_key(spec).encode()).hexdigest()
            spec.secrets = self.vault.values(list(manifest.get("secrets") or []))
        return spec

    # -- the smoke test --------------------------------------------------------------------

    async def smoke_test(self, spec: VersionSpec, endpoint: Endpoint, task: DeployTask | None = None) -> dict[str, Any]:
        """Call each entrypoint on the sample in the started runner; SmokeFailed on the first that fails.

        Before the version takes any traffic: a function that breaks on the data it was deployed with fails
        the deploy, with its traceback, and never sees a real call.
        """
        def say(message: str) -> None:
            if task is not None:
                task.emit("smoke", "phase", message)

        sample = spec.manifest.get("sample")
        outcome: dict[str, Any] = {"sample": isinstance(sample, dict), "entrypoints": []}
        if task is not None:
            task.smoke = outcome
        if not isinstance(sample, dict) or self.vault is None:
            say("no sample: no entrypoint was called before the version takes traffic")
            return outcome
        hidden = list(spec.secrets.values())
        session = await self.session()
        headers = {contract.CONTROL_HEADER: self.control_key(spec)}
        for entry in spec.manifest["entrypoints"]:
            name = entry["name"]
            started = time.monotonic()
            try:
                async with session.post(f"{endpoint.url}{contract.SMOKE_PATH}{name}", headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=self.smoke_timeout)) as resp:
                    raw = await resp.read()
                    if resp.status != 200:
                        raise SmokeFailed(f"the runner refused the smoke test of {name} (HTTP {resp.status})")
            except asyncio.TimeoutError:
                raise SmokeFailed(f"{name} did not answer the sample within {self.smoke_timeout:g} s "
                                  f"(the manager's limit, ManagerApp.smoke_timeout)") from None
            except aiohttp.ClientError as exc:
                raise SmokeFailed(f"the runner stopped answering while {name} ran on the sample ({exc}): "
                                  f"{await self._last_error(spec)}") from None
            result = self._smoke_entry(json.loads(raw), hidden, time.monotonic() - started)
            outcome["entrypoints"].append(result)
            if not result["called"]:
                say(f"{name}: not called ({result['why']})")
            elif result["ok"]:
                say(f"{name}(sample) -> {result['preview']}")
            else:
                raise SmokeFailed(result["error"] if result.get("kind") != "raised"
                                  else f"{name} raised {result['error']} on the sample")
        return outcome

    @staticmethod
    def _smoke_entry(answer: dict[str, Any], hidden: list[str], seconds: float) -> dict[str, Any]:
        """The runner's answer as the deploy shows it: the value as a short preview, secret values blanked."""
        def clean(text: Any) -> str:
            return redact(str(text), hidden)

        out: dict[str, Any] = {"entrypoint": answer.get("entrypoint"), "called": bool(answer.get("called"))}
        if not out["called"]:
            out["why"] = clean(answer.get("why", ""))
            return out
        out["ok"] = bool(answer.get("ok"))
        out["seconds"] = round(seconds, 3)
        if out["ok"]:
            text = clean(json.dumps(answer.get("result"), ensure_ascii=False))
            out["preview"] = text if len(text) <= SMOKE_PREVIEW_CHARS else text[:SMOKE_PREVIEW_CHARS - 3] + "..."
            return out
        out["kind"] = answer.get("kind")
        out["error"] = clean(answer.get("error", ""))
        if answer.get("kind") == "raised":
            out["exception"] = answer.get("exception")
            out["traceback"] = clean(answer.get("traceback", ""))
            out["frames"] = [{k: clean(v) if k == "code" else v for k, v in frame.items()}
                             for frame in answer.get("frames") or [] if isinstance(frame, dict)]
        return out

    async def session(self) -> aiohttp.ClientSession:
        """A shared HTTP session for health checks."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HEALTH_SESSION_TIMEOUT))
        return self._session

    async def close(self) -> None:
        """Close the health-check session and the upload threads."""
        if self._session is not None:
            await self._session.close()
        self.upload_threads.shutdown(wait=False, cancel_futures=True)

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
