"""Lifecycle of services and versions: finishing a deploy, promote, rollback, stop, start, delete, traffic, retire.

Every change of a service's routing and stored state happens under that service's one lock
(:class:`ServiceLocks`), so two operations on a service never interleave and leave the routing
table and the store disagreeing. Builds run outside it; health checks of a version about to take
traffic run inside it, so nothing else can change the service between "healthy" and "switched".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .auth import Auth
from .errors import ApiError
from .pipeline import BundleUpload, DeployFailed, DeployTask, Pipeline
from .routing import Route, Routing, Traffic
from .runtimes.base import Endpoint, Runtime, VersionSpec
from .store import Store, VersionRecord

log = logging.getLogger("jupyter_deploy_manager")

DRAIN_GRACE = 60.0
"""Seconds calls in flight to a version leaving service get to finish before it stops (``ManagerApp.drain_grace``)."""

NOT_READY = ("building", "starting")
"""Statuses of a version whose deploy is still under way: no lifecycle operation but delete applies."""


@dataclass
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class ServiceLocks:
    """One asyncio.Lock per service name, dropped again when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        """Hold the service's lock for the block (not reentrant)."""
        entry = self._entries.get(name)
        if entry is None:
            entry = self._entries[name] = _Entry()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0 and self._entries.get(name) is entry:
                del self._entries[name]


class Lifecycle:
    """Changes services and versions; the only writer of the routing table."""

    def __init__(
        self,
        store: Store,
        auth: Auth,
        runtime: Runtime,
        routing: Routing,
        pipeline: Pipeline,
        view: Callable[[str], dict[str, Any]],
    ):
        self.store = store
        self.auth = auth
        self.runtime = runtime
        self.routing = routing
        self.pipeline = pipeline
        self.locks = ServiceLocks()
        self.drain_grace = DRAIN_GRACE
        # The API's view of a service, taken before the lock is released so it shows this operation's result.
        self._view = view
        self._background: set[asyncio.Task] = set()

    # -- helpers ---------------------------------------------------------------------------

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        """Run a coroutine in the background; it is cancelled on close."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def close(self) -> None:
        """Cancel background work (deploys, retirements, mirrored calls)."""
        for task in list(self._background):
            task.cancel()

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

    @staticmethod
    def _ready(record: VersionRecord, doing: str) -> None:
        if record.status in NOT_READY:
            raise ApiError(
                409, f"{record.service} {record.version} is still {record.status}; wait for its deploy to {doing}",
                "not-ready",
            )

    def _spec(self, record: VersionRecord) -> VersionSpec:
        return self.pipeline.spec(record)

    def _mark_running(self, record: VersionRecord, endpoint: Endpoint) -> None:
        """Store and routing agree that the version runs at ``endpoint``."""
        self.store.set_version_status(record.service, record.version, "running", desired="running")
        self.routing.add(Route(record.service, record.version, endpoint, Route.monitored_in(record.manifest)))

    def _switch_main(self, name: str, version: str) -> None:
        """Calls not yet routed go to ``version``; the store remembers the main before for a rollback."""
        self.store.set_main(name, version)
        self.routing.set_main(name, version)
        self._drop_from_traffic(name, version)

    def _drop_from_traffic(self, name: str, version: str) -> None:
        """A version that becomes main or stops leaves the canary/shadow settings."""
        traffic = self.routing.traffic(name)
        if version not in traffic.versions:
            return
        updated = traffic.without(version)
        self.store.set_traffic(name, updated.public() if updated.active else None)
        self.routing.set_traffic(name, updated)

    def _take_offline(self, name: str, version: str) -> None:
        self.routing.remove(name, version)
        self._drop_from_traffic(name, version)

    async def _run(self, record: VersionRecord) -> Endpoint:
        """Start a version (if needed), wait until it is healthy, then route to it.

        A version that failed (its smoke test, say) must pass the smoke test before it takes any traffic.
        """
        endpoint = await self.pipeline.start_healthy(self._spec(record), smoke=record.status == "failed")
        self._mark_running(record, endpoint)
        return endpoint

    async def _stop_runtime(self, spec: VersionSpec) -> None:
        try:
            await asyncio.to_thread(self.runtime.stop, spec)
        except Exception:  # noqa: BLE001 - the error that brought us here is what the user needs
            log.exception("stopping %s %s failed", spec.service, spec.version)

    # -- deploy ----------------------------------------------------------------------------

    async def submit(
        self, name: str, upload: BundleUpload, sha256: str | None, username: str, make_main: bool = True,
        direct_urls: bool = False,
    ) -> dict[str, Any]:
        """Accept a received bundle, start building it, return the new version and an invoke token."""
        # Reading, checking and unpacking a bundle of hundreds of MB takes seconds: never on the event loop.
        manifest, checksum = await asyncio.get_running_loop().run_in_executor(
            self.pipeline.upload_threads, self.pipeline.check_bundle, name, upload, sha256, direct_urls)
        # Under the lock, so a delete of the service in progress finishes before the version is recorded.
        async with self.locks.hold(name):
            task, info = self.pipeline.register(name, upload, manifest, checksum, username, make_main)
        self.spawn(self._deploy(task))
        return info

    def _current(self, task: DeployTask) -> VersionRecord | None:
        """The deploy's version, unless it was deleted (or deleted and deployed again) meanwhile."""
        record = self.store.get_version(task.service, task.version)
        return record if record is not None and record.created == task.created else None

    async def _deploy(self, task: DeployTask) -> None:
        record = self._current(task)
        if record is None:
            task.finish("failed", "error", f"{task.service} {task.version} was deleted before it was built")
            return
        spec = self._spec(record)
        try:
            endpoint = await self.pipeline.build_and_start(task, spec)
        except DeployFailed as failure:
            async with self.locks.hold(task.service):
                await self._deploy_failed(task, spec, failure)
            return
        async with self.locks.hold(task.service):
            await self._deploy_done(task, spec, endpoint)

    async def _abandon(self, task: DeployTask, spec: VersionSpec) -> None:
        """The version was deleted while it deployed: remove what the deploy left in the runtime."""
        if self.store.get_version(task.service, task.version) is None:
            # With the lock held no new deploy of this number can be registered meanwhile.
            try:
                await asyncio.to_thread(self.runtime.remove, spec, False)
            except Exception:  # noqa: BLE001
                log.exception("removing deleted version %s %s", task.service, task.version)
        task.finish("failed", "error", f"{task.service} {task.version} was deleted while it was deploying")

    async def _deploy_failed(self, task: DeployTask, spec: VersionSpec, failure: DeployFailed) -> None:
        log.warning("deploy %s %s failed in %s: %s", task.service, task.version, failure.phase, failure.message)
        if self._current(task) is None:
            await self._abandon(task, spec)
            return
        self.store.set_version_status(task.service, task.version, "failed", error=failure.message, desired="stopped")
        kind = "build failed" if failure.phase == "build" else "failed"
        self.store.add_event(kind, failure.message, task.service, task.version)
        if failure.phase != "build":
            await self._stop_runtime(spec)
        what = "the smoke test" if failure.phase == "smoke" else failure.phase
        task.finish("failed", "error", f"{what} failed: {failure.message}", failed_in=failure.phase)

    async def _deploy_done(self, task: DeployTask, spec: VersionSpec, endpoint: Endpoint) -> None:
        """The final step of a deploy: route to the healthy version and make it main unless asked not to."""
        record = self._current(task)
        service = self.store.get_service(task.service)
        if record is None or service is None:
            await self._abandon(task, spec)
            return
        name, version = task.service, task.version
        previous = service["main_version"]
        self._mark_running(record, endpoint)
        if previous and not task.make_main:
            self.store.add_event("deployed", f"{version} runs beside main {previous}", name, version)
            task.finish("running", "done", f"{name} {version} is running beside main {previous}", main=False)
            return
        leaving = service.get("previous_main")
        self._switch_main(name, version)
        self.store.add_event("deployed", f"{version} is main", name, version)
        task.finish("running", "done", f"{name} {version} is running", main=True)
        self._retire_later(name, leaving)

    # -- main ------------------------------------------------------------------------------

    async def promote(self, name: str, version: str) -> dict[str, Any]:
        """Make a version main with no downtime: it must be healthy before traffic switches to it."""
        async with self.locks.hold(name):
            await self._promote(name, version)
            return self._view(name)

    async def rollback(self, name: str) -> dict[str, Any]:
        """Promote the version that was main before the current one."""
        async with self.locks.hold(name):
            service, _ = self.version_record(name)
            previous = service.get("previous_main")
            if not previous or self.store.get_version(name, previous) is None:
                raise ApiError(409, f"{name} has no previous main version to roll back to", "no-previous")
            await self._promote(name, previous)
            return self._view(name)

    async def _promote(self, name: str, version: str) -> None:
        service, record = self.version_record(name, version)
        self._ready(record, "promote it")
        if record.status == "failed" and not self.pipeline.can_run(record):
            raise ApiError(409, f"{name} {version} failed and cannot run: {record.error}", "failed-version")
        previous = service["main_version"]
        leaving = service.get("previous_main")
        try:
            await self._run(record)
        except Exception as exc:  # noqa: BLE001 - the old main keeps serving; say why
            self.store.add_event("failed", f"promote failed: {exc}", name, version)
            raise ApiError(
                409, f"{name} {version} did not become healthy, main is unchanged: {exc}", "unhealthy"
            ) from exc
        self._switch_main(name, version)
        self.store.add_event("promoted", f"{version} is main (was {previous})", name, version)
        if leaving not in (version, previous):
            self._retire_later(name, leaving)

    def _retire_later(self, name: str, version: str | None) -> None:
        """After main changed: stop the version that is neither main nor the previous main any more."""
        if version:
            self.spawn(self._retire(name, version))

    async def _retire(self, name: str, version: str) -> None:
        """Stop a version that left main and previous main; its image stays for a rollback.

        Main and the previous main keep running, so a rollback is instant and both answer at their own path.
        It takes no new call from the start; the calls the proxy forwarded to it before finish first (up to
        ``drain_grace`` seconds), with the service's lock free meanwhile.
        """
        async with self.locks.hold(name):
            record = self._retiring(name, version, draining=False)
            if record is None:
                return
            self.routing.remove(name, version)
            self.store.set_version_status(name, version, "stopping", desired="stopped")
            busy = self.routing.inflight.count(name, version)
            if busy:
                self.store.add_event("draining", f"{version} takes no new calls; waiting up to {self.drain_grace:g} s "
                                                 f"for {busy} in flight", name, version)
        left = await self.routing.inflight.drained(name, version, self.drain_grace)
        async with self.locks.hold(name):
            # Brought back meanwhile (a rollback, a start), stopped or deleted: nothing left to do.
            record = self._retiring(name, version, draining=True)
            if record is None:
                return
            try:
                if left:
                    self.store.add_event("draining", f"stopping {version} with {left} call(s) still running after "
                                                     f"{self.drain_grace:g} s (ManagerApp.drain_grace)", name, version)
                await asyncio.to_thread(self.runtime.stop, self._spec(record))
                self.store.set_version_status(name, version, "stopped", desired="stopped")
            except Exception as exc:  # noqa: BLE001
                self.store.add_event("error", f"could not stop {version}: {exc}", name, version)

    def _retiring(self, name: str, version: str, draining: bool) -> VersionRecord | None:
        """The version to retire, if it is still neither main nor previous main and outside traffic.

        Before the drain it must not be stopped or stopping already; after it, still ``stopping`` (as the drain
        left it: a start or a stop meanwhile changed that).
        """
        record = self.store.get_version(name, version)
        current = self.store.get_service(name)
        if record is None or current is None or version in (current["main_version"], current.get("previous_main")):
            # Promoted back meanwhile (a quick rollback), or gone.
            return None
        stale = record.status != "stopping" if draining else record.status in ("stopped", "stopping")
        if version in self.routing.traffic(name).versions or stale:
            # Still taking canary or shadow traffic, or stopped, or started again.
            return None
        return record

    # -- stop, start, restart --------------------------------------------------------------

    async def stop_version(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Stop a version (main by default); the main route answers 503 until it is started again."""
        async with self.locks.hold(name):
            _, record = self.version_record(name, version)
            await self._stop(record)
            return self._view(name)

    async def start_version(self, name: str, version: str | None = None, restart: bool = False) -> dict[str, Any]:
        """Start (or restart) a version (main by default) and wait for its health check."""
        async with self.locks.hold(name):
            _, record = self.version_record(name, version)
            await self._start(record, restart)
            return self._view(name)

    async def act_on_service(self, name: str, action: str) -> dict[str, Any]:
        """``stop`` or ``restart`` every running version (main when none runs); ``start`` brings main back."""
        async with self.locks.hold(name):
            _, main = self.version_record(name)
            if action == "start":
                await self._start(main, restart=False)
            else:
                running = [v for v in self.store.list_versions(name) if self.routing.version(name, v.version)]
                for record in running or [main]:
                    if action == "stop":
                        await self._stop(record)
                    else:
                        await self._start(record, restart=True)
            return self._view(name)

    async def _stop(self, record: VersionRecord) -> None:
        self._ready(record, "stop it")
        name, version = record.service, record.version
        self._take_offline(name, version)
        self.store.set_version_status(name, version, "stopping", desired="stopped")
        await asyncio.to_thread(self.runtime.stop, self._spec(record))
        self.store.set_version_status(name, version, "stopped", desired="stopped")
        self.store.add_event("stopped", f"{version} stopped", name, version)

    async def _start(self, record: VersionRecord, restart: bool) -> None:
        self._ready(record, "start it")
        name, version = record.service, record.version
        spec = self._spec(record)
        if restart:
            # Calls meanwhile get a 503 "not running" rather than a refused connection.
            self.routing.remove(name, version)
            await asyncio.to_thread(self.runtime.stop, spec)
        try:
            await self._run(record)
        except Exception as exc:  # noqa: BLE001
            self.routing.remove(name, version)
            self.store.set_version_status(name, version, "failed", error=str(exc), desired="stopped")
            await self._stop_runtime(spec)
            raise ApiError(409, f"{name} {version} did not become healthy: {exc}", "unhealthy") from exc
        kind = "restarted" if restart else "started"
        self.store.add_event(kind, f"{version} {kind}", name, version)

    # -- secrets ---------------------------------------------------------------------------

    def using(self, secret: str) -> list[VersionRecord]:
        """Every stored version whose deploy names ``secret``."""
        return [r for r in self.store.list_versions() if secret in (r.manifest.get("secrets") or [])]

    async def rotate(self, secret: str) -> dict[str, list[dict[str, str]]]:
        """Give every running version that uses ``secret`` a runner started with its new value, failing no call.

        Per version, under its service's lock: a new generation of its runner starts beside the serving one and
        must pass its health check; the route then switches to it (calls not yet sent go there) and the old
        runner stops once the calls it holds are answered. A version that is not running reads the new value
        when it starts. A new runner that does not become healthy is removed; the old one keeps serving.
        """
        restarted: list[dict[str, str]] = []
        failed: list[dict[str, str]] = []
        for listed in self.using(secret):
            name, version = listed.service, listed.version
            async with self.locks.hold(name):
                record = self.store.get_version(name, version)
                route = self.routing.version(name, version)
                if record is None or route is None or record.created != listed.created:
                    continue
                try:
                    await self._replace_runner(record, route)
                except Exception as exc:  # noqa: BLE001 - the running runner keeps serving; say why
                    message = f"a runner with the new value of {secret} did not become healthy; the running one " \
                              f"keeps serving: {exc}"
                    self.store.add_event("failed", message, name, version)
                    failed.append({"service": name, "version": version, "error": message})
                    continue
                self.store.add_event("restarted", f"{version} runs with the new value of secret {secret}", name, version)
                restarted.append({"service": name, "version": version})
        return {"restarted": restarted, "failed": failed}

    async def _replace_runner(self, record: VersionRecord, route: Route) -> None:
        """Start the version's next generation, switch its route to it, and retire the old one after its calls."""
        old = self._spec(record)
        fresh = self.pipeline.spec(dataclasses.replace(record, generation=record.generation + 1))
        try:
            endpoint = await self.pipeline.start_healthy(fresh)
        except Exception:
            await self._retire_runner(fresh)
            raise
        self.store.set_generation(record.service, record.version, fresh.generation)
        self.routing.add(dataclasses.replace(route, endpoint=endpoint))
        self.spawn(self._drain_runner(route, old))

    async def _drain_runner(self, route: Route, spec: VersionSpec) -> None:
        """Retire a replaced runner once no call is in flight to it (at most ``drain_grace`` seconds)."""
        left = await self.routing.inflight.endpoint_drained(route.endpoint, self.drain_grace)
        if left:
            self.store.add_event("draining", f"stopping the replaced runner of {route.version} with {left} call(s) "
                                             f"still running after {self.drain_grace:g} s (ManagerApp.drain_grace)",
                                 route.service, route.version)
        await self._retire_runner(spec)

    async def _retire_runner(self, spec: VersionSpec) -> None:
        try:
            await asyncio.to_thread(self.runtime.retire, spec)
        except Exception:  # noqa: BLE001 - nothing routes to it any more; say so in the log
            log.exception("retiring runner %s of %s %s", spec.generation, spec.service, spec.version)

    # -- delete ----------------------------------------------------------------------------

    async def delete_version(self, name: str, version: str, keep_image: bool = False) -> dict[str, Any]:
        """Remove one version; main can only go once another version is main (or it is the last one)."""
        async with self.locks.hold(name):
            service, record = self.version_record(name, version)
            versions = self.store.list_versions(name)
            if service["main_version"] == version and len(versions) > 1:
                raise ApiError(
                    409, f"{version} is main: promote another version first, or delete the service", "is-main"
                )
            if len(versions) == 1:
                await self._delete_service(name, keep_image)
                return {"name": name, "deleted": True}
            self._take_offline(name, version)
            await asyncio.to_thread(self.runtime.remove, self._spec(record), keep_image)
            self.store.delete_version(name, version)
            self.store.add_event("deleted", f"version {version} deleted", name, version)
            self.pipeline.remove_bundle(name, version)
            return self._view(name)

    async def delete(self, name: str, keep_images: bool = False) -> None:
        """Stop and remove every version of a service, revoke its tokens, forget it."""
        async with self.locks.hold(name):
            await self._delete_service(name, keep_images)

    async def _delete_service(self, name: str, keep_images: bool) -> None:
        if self.store.get_service(name) is None:
            raise ApiError(404, f"no service named {name!r}", "unknown-service")
        self.routing.forget(name)
        for record in self.store.list_versions(name):
            await asyncio.to_thread(self.runtime.remove, self._spec(record), keep_images)
        self.auth.revoke_service(name)
        self.store.delete_service(name)
        self.store.delete_predictions(name)
        self.store.add_event("deleted", f"service {name} deleted", name, None)
        self.pipeline.remove_bundle(name)

    # -- canary and shadow traffic ---------------------------------------------------------

    async def set_traffic(self, name: str, canary: str | None, weight: int, shadows: list[str]) -> dict[str, Any]:
        """Route ``weight`` % of main's calls to a canary and mirror every call to the shadows."""
        async with self.locks.hold(name):
            service, _ = self.version_record(name)
            main = service["main_version"]
            wanted = ([canary] if canary else []) + list(shadows)
            if len(set(wanted)) != len(wanted):
                raise ApiError(422, "a version can be canary or shadow, not both, and is named once", "invalid-input")
            if main in wanted:
                raise ApiError(422, f"{main} is main; canary and shadows are other versions", "invalid-input")
            records = [self.version_record(name, v)[1] for v in wanted]
            for record in records:
                self._ready(record, "route traffic to it")
            for record in records:
                if self.routing.version(name, record.version) is None:
                    try:
                        await self._run(record)
                    except Exception as exc:  # noqa: BLE001 - traffic stays as it was
                        raise ApiError(
                            409, f"{name} {record.version} did not become healthy: {exc}", "unhealthy"
                        ) from exc
            traffic = Traffic(canary=canary, weight=weight if canary else 0, shadows=tuple(shadows))
            self.store.set_traffic(name, traffic.public() if traffic.active else None)
            self.routing.set_traffic(name, traffic)
            self.store.add_event("traffic", traffic.describe(main), name, None)
            return self._view(name)

    # -- the proxy's second look, and start-up ---------------------------------------------

    async def refresh_route(self, route: Route) -> Route | None:
        """Ask the runtime again where a routed version answers (after a restart on a new port).

        Without the lock: a call must not wait for another operation's health check. The table
        takes the new endpoint only if the route is still the one the call used.
        """
        record = self.store.get_version(route.service, route.version)
        if record is None:
            return None
        endpoint = await asyncio.to_thread(self.runtime.endpoint, self._spec(record))
        if endpoint is None:
            return None
        return self.routing.replace_endpoint(route, endpoint)

    async def reconcile(self) -> None:
        """Bring the runtime in line with the store after a (re)start of the manager."""
        for service in self.store.list_services():
            if service.get("traffic"):
                self.routing.set_traffic(service["name"], Traffic.load(json.loads(service["traffic"])))
            if service["main_version"]:
                self.routing.set_main(service["name"], service["main_version"])
        known: set[tuple[str, str]] = set()
        for listed in self.store.list_versions():
            known.add((listed.service, listed.version))
            # Calls and operations arrive while this runs: each version is brought back under its lock.
            async with self.locks.hold(listed.service):
                await self._bring_back(listed.service, listed.version)
        try:
            running = await asyncio.to_thread(self.runtime.managed)
        except Exception:  # noqa: BLE001
            running = []
        for service_name, version in running:
            if (service_name, version) not in known:
                message = (
                    f"the {self.runtime.name} runtime runs {service_name} {version}, which this manager does not know"
                )
                log.warning(message)
                self.store.add_event("unknown", message, service_name, version)

    async def _bring_back(self, name: str, version: str) -> None:
        record = self.store.get_version(name, version)
        if record is None:
            return
        if record.status in NOT_READY:
            # A deploy cut off by the manager's stop cannot resume its stream.
            self.store.set_version_status(
                name, version, "failed", error="interrupted by a manager restart", desired="stopped"
            )
            return
        if record.desired != "running" or record.status not in ("running", "crashed"):
            return
        spec = self._spec(record)
        try:
            state = await asyncio.to_thread(self.runtime.state, spec)
            if state != "running":
                message = f"was {state} after the manager restarted; starting it"
                self.store.add_event("restarted", message, name, version)
                log.info("starting %s %s (was %s)", name, version, state)
            await self._run(record)
        except Exception as exc:  # noqa: BLE001 - one broken version must not stop the others
            self.store.set_version_status(name, version, "failed", error=str(exc))
            self.store.add_event("failed", f"could not start after restart: {exc}", name, version)
