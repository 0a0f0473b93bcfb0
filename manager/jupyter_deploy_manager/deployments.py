"""The deployment service: takes bundles, builds and starts versions, tracks main, reconciles."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import tornado

from jupyter_deploy import bundle as bundle_format
from jupyter_deploy.errors import BundleError

from .auth import Auth
from .errors import ApiError
from .runtimes.base import Endpoint, Lock, Runtime, VersionSpec
from .store import Store, VersionRecord

log = logging.getLogger("jupyter_deploy_manager")

NAME_RE = bundle_format.SERVICE_NAME_RE
VERSION_RE = bundle_format.VERSION_RE
SEMVER_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def check_name(name: str) -> None:
    """Service names become container and URL parts: lowercase letters, digits, dashes."""
    if not NAME_RE.match(name):
        raise ApiError(
            422,
            f"invalid service name {name!r}: use 1-48 lowercase letters, digits and dashes, "
            "starting and ending with a letter or digit",
            "invalid-name",
        )


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


@dataclass(frozen=True)
class Traffic:
    """Canary weight and shadow versions of a service's main route."""

    canary: str | None = None
    weight: int = 0
    shadows: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        """Whether anything besides main gets traffic."""
        return bool((self.canary and self.weight) or self.shadows)

    @property
    def versions(self) -> tuple[str, ...]:
        """Every version named here."""
        return ((self.canary,) if self.canary else ()) + self.shadows

    def without(self, version: str) -> "Traffic":
        """The same settings minus one version."""
        if self.canary == version:
            return Traffic(None, 0, self.shadows)
        return Traffic(self.canary, self.weight, tuple(v for v in self.shadows if v != version))

    def public(self) -> dict[str, Any]:
        """JSON view."""
        canary = {"version": self.canary, "weight": self.weight} if self.canary else None
        return {"canary": canary, "shadows": list(self.shadows)}

    def describe(self, main: str | None) -> str:
        """One line for the event log."""
        parts = [f"{self.canary} takes {self.weight}% (main {main} the rest)"] if self.canary else []
        if self.shadows:
            parts.append(f"shadows {', '.join(self.shadows)} mirror main")
        return "; ".join(parts) or f"all traffic to main {main}"

    @classmethod
    def load(cls, data: dict[str, Any]) -> "Traffic":
        """From the stored JSON view."""
        canary = data.get("canary") or {}
        return cls(canary.get("version"), int(canary.get("weight") or 0), tuple(data.get("shadows") or ()))


@dataclass
class DeployTask:
    """Progress of one deploy: its events so far, followed by streaming clients."""

    service: str
    version: str
    events: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    status: str = "building"
    make_main: bool = True
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


class DeploymentService:
    """Owns the deploy pipeline, the routing table of main versions and reconciliation."""

    def __init__(
        self,
        store: Store,
        auth: Auth,
        runtime: Runtime,
        data_dir: Path,
        max_bundle_size: int,
        health_timeout: float = 180.0,
    ):
        self.store = store
        self.auth = auth
        self.runtime = runtime
        self.data_dir = Path(data_dir)
        self.max_bundle_size = max_bundle_size
        self.health_timeout = health_timeout
        self.retire_grace = 2.0
        self._switching: dict[str, asyncio.Lock] = {}
        self.tasks: dict[tuple[str, str], DeployTask] = {}
        self.routes: dict[str, Endpoint] = {}
        self.version_routes: dict[tuple[str, str], Endpoint] = {}
        self.mains: dict[str, str] = {}
        self.monitor_keep = 10_000
        self._monitored: dict[tuple[str, str], frozenset[str]] = {}
        self.traffic: dict[str, Traffic] = {}
        self.shadow_stats: dict[tuple[str, str], dict[str, int]] = {}
        self._background: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None

    # helpers
    def bundle_dir(self, service: str, version: str) -> Path:
        """Where a version's extracted bundle lives."""
        return self.data_dir / "bundles" / service / version

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

    def spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def session(self) -> aiohttp.ClientSession:
        """A shared HTTP session for health checks."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self._session

    async def close(self) -> None:
        """Cancel background work and close sessions."""
        for task in list(self._background):
            task.cancel()
        if self._session is not None:
            await self._session.close()

    # deploy
    def submit(
        self, name: str, data: bytes, sha256: str | None, username: str, make_main: bool = True
    ) -> dict[str, Any]:
        """Accept an uploaded bundle, start building it, return the new version and an invoke token.

        With ``make_main`` False the new version runs at its own path and main stays as it is
        (the first version of a service is main whatever is asked).
        """
        check_name(name)
        if len(data) > self.max_bundle_size:
            raise ApiError(
                413, f"bundle is {len(data)} bytes, over the manager's limit of {self.max_bundle_size}", "too-large"
            )
        if not sha256:
            raise ApiError(400, "missing X-Bundle-SHA256 header", "missing-checksum")
        actual = bundle_format.sha256_hex(data)
        if actual != sha256.lower():
            raise ApiError(
                400, f"bundle checksum mismatch: header says {sha256}, received {actual}", "checksum-mismatch"
            )
        try:
            manifest = bundle_format.verify(data)
        except BundleError as exc:
            raise ApiError(400, str(exc), "bad-bundle") from exc
        existing = [v.version for v in self.store.list_versions(name)]
        version = manifest.get("version") or next_version(existing)
        if not VERSION_RE.match(str(version)):
            raise ApiError(
                422, f"invalid version {version!r}: letters, digits, '.', '_' and '-' only", "invalid-version"
            )
        if version in existing:
            raise ApiError(
                409, f"{name} {version} exists already; deploy with another --version or without one", "version-exists"
            )
        manifest["name"] = name
        manifest["version"] = version
        dest = self.bundle_dir(name, version)
        if dest.exists():
            shutil.rmtree(dest)
        bundle_format.extract(data, dest)
        # The runner reads the manifest from disk: keep the assigned name and version there too.
        (dest / bundle_format.MANIFEST).write_text(json.dumps(manifest, indent=2))
        lock = self.lock_for(manifest)
        self.store.ensure_service(name, username)
        self.store.add_version(name, version, manifest, lock.hash)
        token, record = self.auth.issue(username, "invoke", name, None, note=f"deploy {version}")
        task = DeployTask(name, version, make_main=make_main)
        self.tasks[(name, version)] = task
        task.emit("upload", "phase", f"received bundle ({len(data)} bytes, sha256 {actual[:12]})")
        self.spawn(self._build_and_start(task))
        return {"name": name, "version": version, "token": token, "token_id": record.id}

    async def _build_and_start(self, task: DeployTask) -> None:
        record = self.store.get_version(task.service, task.version)
        assert record is not None
        spec = self.spec(record)
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
            message = str(exc) or type(exc).__name__
            log.warning("deploy %s %s failed in %s: %s", task.service, task.version, phase, message)
            self.store.set_version_status(task.service, task.version, "failed", error=message, desired="stopped")
            self.store.add_event("build failed" if phase == "build" else "failed", message, task.service, task.version)
            if phase != "build":
                try:
                    await asyncio.to_thread(self.runtime.stop, spec)
                except Exception:  # noqa: BLE001 - the original error is what the user needs
                    log.exception("stopping failed version")
            task.status = "failed"
            task.finished = True
            task.emit("error", "result", f"{phase} failed: {message}", status="failed")
            return
        before = self.store.get_service(task.service) or {}
        previous = before.get("main_version")
        self.store.set_version_status(task.service, task.version, "running")
        self.version_routes[(task.service, task.version)] = endpoint
        task.status = "running"
        task.finished = True
        if previous and not task.make_main:
            self.store.add_event("deployed", f"{task.version} runs beside main {previous}", task.service, task.version)
            task.emit("done", "result", f"{task.service} {task.version} is running beside main {previous}",
                      status="running", main=False)
            return
        self.store.set_main(task.service, task.version)
        self.route(task.service, task.version, endpoint)
        self.store.add_event("deployed", f"{task.version} is main", task.service, task.version)
        task.emit("done", "result", f"{task.service} {task.version} is running", status="running", main=True)
        self._retire_later(task.service, before.get("previous_main"))

    def _retire_later(self, service: str, version: str | None) -> None:
        """After main changed: stop the version that is neither main nor the previous main any more."""
        if version:
            self.spawn(self._retire(service, version))

    async def _retire(self, service: str, version: str) -> None:
        """Stop a version that left main and previous main; its image stays for a rollback.

        Main and the previous main keep running, so a rollback is instant and both answer at their own path.
        """
        # Requests already forwarded to the old version get time to finish.
        await asyncio.sleep(self.retire_grace)
        record = self.store.get_version(service, version)
        current = self.store.get_service(service)
        if record is None or current is None or version in (current["main_version"], current.get("previous_main")):
            # Promoted back meanwhile (a quick rollback), or gone: nothing to stop.
            return
        if version in (self.traffic.get(service) or Traffic()).versions:
            # Still taking canary or shadow traffic.
            return
        try:
            self.version_routes.pop((service, version), None)
            self.store.set_version_status(service, version, "stopping", desired="stopped")
            await asyncio.to_thread(self.runtime.stop, self.spec(record))
            self.store.set_version_status(service, version, "stopped", desired="stopped")
        except Exception as exc:  # noqa: BLE001
            self.store.add_event("error", f"could not stop {version}: {exc}", service, version)

    async def wait_healthy(self, spec: VersionSpec, endpoint: Endpoint) -> None:
        """Poll the runner's /healthz until it answers, the process dies, or time runs out."""
        session = await self.session()
        deadline = time.monotonic() + self.health_timeout
        last_state_check = 0.0
        while time.monotonic() < deadline:
            try:
                async with session.get(endpoint.url + "/healthz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            if time.monotonic() - last_state_check > 0.5:
                last_state_check = time.monotonic()
                state = await asyncio.to_thread(self.runtime.state, spec)
                if state != "running":
                    raise RuntimeError(f"service exited before it was healthy: {await self._last_error(spec)}")
            await asyncio.sleep(0.05)
        raise RuntimeError(
            f"no healthy answer within {self.health_timeout:.0f} s: {await self._last_error(spec)}"
        )

    async def _last_error(self, spec: VersionSpec) -> str:
        text = await asyncio.to_thread(self.runtime.logs, spec, 40)
        lines = [line for line in text.splitlines() if line.strip()]
        for line in reversed(lines):
            if "jupyter-deploy runner:" in line:
                return line.strip()
        return " | ".join(lines[-5:]) if lines else "(the service wrote no log)"

    def monitored(self, name: str, version: str) -> frozenset[str]:
        """Entrypoints of a version whose calls are kept (read once from its manifest)."""
        key = (name, version)
        found = self._monitored.get(key)
        if found is None:
            record = self.store.get_version(name, version)
            entries = record.manifest.get("entrypoints", []) if record else []
            found = frozenset(e["name"] for e in entries if isinstance(e, dict) and e.get("monitor"))
            self._monitored[key] = found
        return found

    def record_call(
        self, name: str, version: str, entrypoint: str, status: int, latency_ms: float, request: bytes, response: bytes
    ) -> None:
        """Keep a monitored call's request and answer."""
        self.store.add_prediction(
            name, version, entrypoint, status, latency_ms,
            request.decode(errors="replace"), response.decode(errors="replace"), self.monitor_keep,
        )

    async def usage(self, name: str) -> dict[str, dict[str, float] | None]:
        """Memory and CPU time of each running version of a service."""
        self.version_record(name)
        out: dict[str, dict[str, float] | None] = {}
        for record in self.store.list_versions(name):
            if (name, record.version) in self.version_routes:
                out[record.version] = await asyncio.to_thread(self.runtime.usage, self.spec(record))
        return out

    def route(self, name: str, version: str, endpoint: Endpoint) -> None:
        """Send the service's main traffic to this version's runner."""
        self.routes[name] = endpoint
        self.mains[name] = version
        self.version_routes[(name, version)] = endpoint

    # canary and shadow traffic
    async def set_traffic(self, name: str, canary: str | None, weight: int, shadows: list[str]) -> dict[str, Any]:
        """Route ``weight`` % of main's calls to a canary and mirror every call to the shadows."""
        async with self._switch_lock(name):
            service, _ = self.version_record(name)
            main = service["main_version"]
            wanted = ([canary] if canary else []) + list(shadows)
            if len(set(wanted)) != len(wanted):
                raise ApiError(422, "a version can be canary or shadow, not both, and is named once", "invalid-input")
            if main in wanted:
                raise ApiError(422, f"{main} is main; canary and shadows are other versions", "invalid-input")
            records = [self.version_record(name, v)[1] for v in wanted]
            for record in records:
                if (name, record.version) not in self.version_routes:
                    try:
                        await self.run_version(record)
                    except Exception as exc:  # noqa: BLE001 - traffic stays as it was
                        raise ApiError(409, f"{name} {record.version} did not become healthy: {exc}", "unhealthy") from exc
            traffic = Traffic(canary=canary, weight=weight if canary else 0, shadows=tuple(shadows))
            self.store.set_traffic(name, traffic.public() if traffic.active else None)
            if traffic.active:
                self.traffic[name] = traffic
            else:
                self.traffic.pop(name, None)
            for key in [k for k in self.shadow_stats if k[0] == name and k[1] not in traffic.shadows]:
                del self.shadow_stats[key]
            self.store.add_event("traffic", traffic.describe(main), name, None)
        return self.describe(name)

    def _drop_from_traffic(self, name: str, version: str) -> None:
        """A version that becomes main or goes away leaves the canary/shadow settings."""
        traffic = self.traffic.get(name)
        if traffic is None or version not in traffic.versions:
            return
        updated = traffic.without(version)
        self.store.set_traffic(name, updated.public() if updated.active else None)
        if updated.active:
            self.traffic[name] = updated
        else:
            self.traffic.pop(name, None)
        self.shadow_stats.pop((name, version), None)

    def shadow_result(self, name: str, version: str, outcome: str) -> None:
        """Count one mirrored call: ``same``, ``differ`` or ``error``."""
        stats = self.shadow_stats.setdefault((name, version), {"compared": 0, "differ": 0, "errors": 0})
        if outcome == "error":
            stats["errors"] += 1
            return
        stats["compared"] += 1
        if outcome == "differ":
            stats["differ"] += 1

    def traffic_view(self, name: str) -> dict[str, Any]:
        """Canary and shadow settings with the shadows' comparison counts."""
        traffic = self.traffic.get(name) or Traffic()
        view = traffic.public()
        view["shadow_stats"] = {
            v: self.shadow_stats.get((name, v), {"compared": 0, "differ": 0, "errors": 0}) for v in traffic.shadows
        }
        return view

    # versions and lifecycle
    def _switch_lock(self, name: str) -> asyncio.Lock:
        return self._switching.setdefault(name, asyncio.Lock())

    async def run_version(self, record: VersionRecord) -> Endpoint:
        """Start a version (if needed) and wait until it is healthy."""
        spec = self.spec(record)
        endpoint = await asyncio.to_thread(self.runtime.start, spec)
        await self.wait_healthy(spec, endpoint)
        self.store.set_version_status(record.service, record.version, "running", desired="running")
        self.version_routes[(record.service, record.version)] = endpoint
        return endpoint

    async def promote(self, name: str, version: str) -> dict[str, Any]:
        """Make a version main with no downtime: it must be healthy before traffic switches to it."""
        async with self._switch_lock(name):
            service, record = self.version_record(name, version)
            if record.status in ("building", "starting"):
                raise ApiError(409, f"{name} {version} is still {record.status}; wait for its deploy", "not-ready")
            if record.status == "failed" and not (self.bundle_dir(name, version) / bundle_format.PAYLOAD).exists():
                raise ApiError(409, f"{name} {version} failed and cannot run: {record.error}", "failed-version")
            previous = service["main_version"]
            leaving = service.get("previous_main")
            try:
                endpoint = await self.run_version(record)
            except ApiError:
                raise
            except Exception as exc:  # noqa: BLE001 - the old main keeps serving; say why
                self.store.add_event("failed", f"promote failed: {exc}", name, version)
                raise ApiError(409, f"{name} {version} did not become healthy, main is unchanged: {exc}", "unhealthy") from exc
            self.store.set_main(name, version)
            self._drop_from_traffic(name, version)
            self.route(name, version, endpoint)
            self.store.add_event("promoted", f"{version} is main (was {previous})", name, version)
        if leaving not in (version, previous):
            self._retire_later(name, leaving)
        return self.describe(name)

    async def rollback(self, name: str) -> dict[str, Any]:
        """Promote the version that was main before the current one."""
        service, _ = self.version_record(name)
        previous = service.get("previous_main")
        if not previous or self.store.get_version(name, previous) is None:
            raise ApiError(409, f"{name} has no previous main version to roll back to", "no-previous")
        return await self.promote(name, previous)

    async def stop_version(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Stop a version (main by default); the main route answers 503 until it is started again."""
        service, record = self.version_record(name, version)
        self.version_routes.pop((name, record.version), None)
        self._drop_from_traffic(name, record.version)
        if service["main_version"] == record.version:
            self.routes.pop(name, None)
        self.store.set_version_status(name, record.version, "stopping", desired="stopped")
        await asyncio.to_thread(self.runtime.stop, self.spec(record))
        self.store.set_version_status(name, record.version, "stopped", desired="stopped")
        self.store.add_event("stopped", f"{record.version} stopped", name, record.version)
        return self.describe(name)

    async def start_version(self, name: str, version: str | None = None, restart: bool = False) -> dict[str, Any]:
        """Start (or restart) a version (main by default) and wait for its health check."""
        service, record = self.version_record(name, version)
        if record.status in ("building", "starting"):
            raise ApiError(409, f"{name} {record.version} is still {record.status}", "not-ready")
        if restart:
            await asyncio.to_thread(self.runtime.stop, self.spec(record))
        try:
            endpoint = await self.run_version(record)
        except Exception as exc:  # noqa: BLE001
            self.store.set_version_status(name, record.version, "failed", error=str(exc), desired="stopped")
            raise ApiError(409, f"{name} {record.version} did not become healthy: {exc}", "unhealthy") from exc
        if service["main_version"] == record.version:
            self.route(name, record.version, endpoint)
        kind = "restarted" if restart else "started"
        self.store.add_event(kind, f"{record.version} {kind}", name, record.version)
        return self.describe(name)

    async def delete_version(self, name: str, version: str, keep_image: bool = False) -> dict[str, Any]:
        """Remove one version; main can only go once another version is main (or it is the last one)."""
        service, record = self.version_record(name, version)
        versions = self.store.list_versions(name)
        if service["main_version"] == version and len(versions) > 1:
            raise ApiError(409, f"{version} is main: promote another version first, or delete the service", "is-main")
        if len(versions) == 1:
            await self.delete(name, keep_images=keep_image)
            return {"name": name, "deleted": True}
        self.version_routes.pop((name, version), None)
        self._monitored.pop((name, version), None)
        self._drop_from_traffic(name, version)
        await asyncio.to_thread(self.runtime.remove, self.spec(record), keep_image)
        self.store.delete_version(name, version)
        self.store.add_event("deleted", f"version {version} deleted", name, version)
        shutil.rmtree(self.bundle_dir(name, version), ignore_errors=True)
        return self.describe(name)

    async def refresh_route(self, name: str) -> Endpoint | None:
        """Ask the runtime again where the main version answers (after a restart on a new port)."""
        service = self.store.get_service(name)
        if not service or not service["main_version"]:
            return None
        record = self.store.get_version(name, service["main_version"])
        if record is None:
            return None
        endpoint = await asyncio.to_thread(self.runtime.endpoint, self.spec(record))
        if endpoint is not None:
            self.route(name, record.version, endpoint)
        return endpoint

    # queries
    def describe(self, name: str) -> dict[str, Any]:
        """A service with its versions, as the API shows it."""
        service = self.store.get_service(name)
        if service is None:
            raise ApiError(404, f"no service named {name!r}", "unknown-service")
        versions = self.store.list_versions(name)
        main = service["main_version"]
        main_record = next((v for v in versions if v.version == main), None)
        latest = versions[-1] if versions else None
        shown = main_record or latest
        return {
            "name": name,
            "main_version": main,
            "previous_main": service.get("previous_main"),
            "traffic": self.traffic_view(name),
            "status": main_record.status if main_record else (latest.status if latest else "empty"),
            "created_by": service["created_by"],
            "versions": [v.public() for v in versions],
            "entrypoints": (shown.manifest.get("entrypoints") if shown else []) or [],
            "sample": shown.manifest.get("sample") if shown else None,
            "requirements": (shown.manifest.get("requirements") if shown else []) or [],
            "python": shown.manifest.get("python") if shown else None,
        }

    def list(self) -> list[dict[str, Any]]:
        """Every service with its main version's status."""
        out = []
        for service in self.store.list_services():
            versions = self.store.list_versions(service["name"])
            main = next((v for v in versions if v.version == service["main_version"]), None)
            latest = versions[-1] if versions else None
            out.append(
                {
                    "name": service["name"],
                    "main_version": service["main_version"],
                    "status": main.status if main else (latest.status if latest else "empty"),
                    "versions": len(versions),
                    "latest_version": latest.version if latest else None,
                    "entrypoints": [e["name"] for e in (main or latest).manifest.get("entrypoints", [])]
                    if (main or latest)
                    else [],
                }
            )
        return out

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

    def version_record(self, name: str, version: str | None = None) -> tuple[dict[str, Any], VersionRecord]:
        """A service and one of its versions (main, else the newest, when none is named); 404 otherwise."""
        service = self.store.get_service(name)
        if service is None:
            raise ApiError(404, f"no service named {name!r}", "unknown-service")
        if version is None:
            versions = self.store.list_versions(name)
            version = service["main_version"] or (versions[-1].version if versions else None)
        record = self.store.get_version(name, version) if version else None
        if record is None:
            raise ApiError(404, f"no version {version!r} of service {name!r}", "unknown-version")
        return service, record

    def logs(self, name: str, version: str | None, tail: int) -> str:
        """Log tail of a version (main by default)."""
        _, record = self.version_record(name, version)
        return self.runtime.logs(self.spec(record), tail)

    async def delete(self, name: str, keep_images: bool = False) -> None:
        """Stop and remove every version of a service, revoke its tokens, forget it."""
        service = self.store.get_service(name)
        if service is None:
            raise ApiError(404, f"no service named {name!r}", "unknown-service")
        self.routes.pop(name, None)
        self.mains.pop(name, None)
        self.traffic.pop(name, None)
        for key in [k for k in self.shadow_stats if k[0] == name]:
            del self.shadow_stats[key]
        for record in self.store.list_versions(name):
            self.version_routes.pop((name, record.version), None)
            await asyncio.to_thread(self.runtime.remove, self.spec(record), keep_images)
        self.auth.revoke_service(name)
        self.store.delete_service(name)
        self.store.delete_predictions(name)
        for key in [k for k in self._monitored if k[0] == name]:
            del self._monitored[key]
        self.store.add_event("deleted", f"service {name} deleted", name, None)
        shutil.rmtree(self.data_dir / "bundles" / name, ignore_errors=True)

    # startup
    async def reconcile(self) -> None:
        """Bring the runtime in line with the store after a (re)start of the manager."""
        for service in self.store.list_services():
            if service.get("traffic"):
                self.traffic[service["name"]] = Traffic.load(json.loads(service["traffic"]))
        known: set[tuple[str, str]] = set()
        for record in self.store.list_versions():
            known.add((record.service, record.version))
            if record.status in ("building", "starting"):
                # A deploy cut off by the manager's stop cannot resume its stream.
                self.store.set_version_status(
                    record.service, record.version, "failed", error="interrupted by a manager restart", desired="stopped"
                )
                continue
            if record.desired != "running" or record.status != "running":
                continue
            spec = self.spec(record)
            try:
                state = await asyncio.to_thread(self.runtime.state, spec)
                if state != "running":
                    self.store.add_event(
                        "restarted", f"was {state} after the manager restarted; starting it", record.service, record.version
                    )
                    log.info("starting %s %s (was %s)", record.service, record.version, state)
                endpoint = await asyncio.to_thread(self.runtime.start, spec)
                await self.wait_healthy(spec, endpoint)
                self.version_routes[(record.service, record.version)] = endpoint
                service = self.store.get_service(record.service)
                if service and service["main_version"] == record.version:
                    self.route(record.service, record.version, endpoint)
            except Exception as exc:  # noqa: BLE001 - one broken version must not stop the others
                self.store.set_version_status(record.service, record.version, "failed", error=str(exc))
                self.store.add_event("failed", f"could not start after restart: {exc}", record.service, record.version)
        try:
            running = await asyncio.to_thread(self.runtime.managed)
        except Exception:  # noqa: BLE001
            running = []
        for service, version in running:
            if (service, version) not in known:
                message = f"the {self.runtime.name} runtime runs {service} {version}, which this manager does not know"
                log.warning(message)
                self.store.add_event("unknown", message, service, version)

    def on_runtime_event(self, service: str, version: str, kind: str, message: str) -> None:
        """Called by runtimes (from their threads) when a version crashes or restarts."""
        self.store.add_event(kind, message, service, version)
