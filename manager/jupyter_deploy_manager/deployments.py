"""The deployment service handlers call: wires routing, pipeline and lifecycle together and answers queries."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from .auth import Auth
from .errors import ApiError
from .lifecycle import Lifecycle
from .pipeline import BundleUpload, DeployTask, Pipeline
from .routing import Route, Routing
from .runtimes.base import Runtime, VersionSpec
from .store import Store, VersionRecord
from .vault import Vault, redact

DEFAULT_HEALTH_TIMEOUT = 180.0
"""Seconds a new version has to answer its health check (``ManagerApp.health_timeout`` sets it)."""
DEFAULT_MONITOR_KEEP = 10_000
"""Monitored calls kept per service (``ManagerApp.monitor_keep`` sets it)."""
DEFAULT_MONITOR_BODY_LIMIT = 64 * 1024
"""Bytes of a monitored call's request and of its answer that are stored (``ManagerApp.monitor_body_limit``)."""


def clip(data: bytes, limit: int) -> str:
    """``data`` as text, cut to ``limit`` bytes with a note saying how much was left out."""
    if len(data) <= limit:
        return data.decode(errors="replace")
    return (data[:limit].decode(errors="replace")
            + f"... [{len(data) - limit} more bytes not stored: ManagerApp.monitor_body_limit is {limit}]")


class DeploymentService:
    """One object in the app's settings: the routing table the proxy reads, deploys, lifecycle and queries."""

    lock_for = staticmethod(Pipeline.lock_for)

    def __init__(
        self,
        store: Store,
        auth: Auth,
        runtime: Runtime,
        data_dir: Path,
        max_bundle_size: int,
        health_timeout: float = DEFAULT_HEALTH_TIMEOUT,
        vault: Vault | None = None,
    ):
        self.store = store
        self.auth = auth
        self.runtime = runtime
        self.monitor_keep = DEFAULT_MONITOR_KEEP
        self.monitor_body_limit = DEFAULT_MONITOR_BODY_LIMIT
        self.routing = Routing()
        self.pipeline = Pipeline(store, auth, runtime, Path(data_dir), max_bundle_size, health_timeout)
        self.lifecycle = Lifecycle(store, auth, runtime, self.routing, self.pipeline, self.describe)
        # Without a key from the app (embedded use), one for this process: its secrets last as long.
        self.vault = vault if vault is not None else Vault(store, Fernet.generate_key())
        self.pipeline.vault = self.vault

    # -- what handlers call to change things (each serialized per service by the lifecycle) ----

    async def submit(
        self, name: str, upload: BundleUpload, sha256: str | None, username: str, make_main: bool = True,
        direct_urls: bool = False,
    ) -> dict[str, Any]:
        """Accept a received bundle (``receive``), start building it, return the new version and an invoke token.

        With ``make_main`` False the new version runs at its own path and main stays as it is
        (the first version of a service is main whatever is asked). ``direct_urls`` allows
        requirements fetched from a URL rather than the package index (admins only).
        """
        return await self.lifecycle.submit(name, upload, sha256, username, make_main, direct_urls)

    def receive(self, name: str, sha256: str | None) -> BundleUpload:
        """Where an upload's body goes as it arrives; refused (422, 400) before it when the name or checksum is bad."""
        self.pipeline.check_upload(name, sha256)
        return self.pipeline.receive()

    async def promote(self, name: str, version: str) -> dict[str, Any]:
        """Make a version main once it is healthy."""
        return await self.lifecycle.promote(name, version)

    async def rollback(self, name: str) -> dict[str, Any]:
        """Promote the previous main."""
        return await self.lifecycle.rollback(name)

    async def stop_version(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Stop a version (main by default)."""
        return await self.lifecycle.stop_version(name, version)

    async def start_version(self, name: str, version: str | None = None, restart: bool = False) -> dict[str, Any]:
        """Start or restart a version (main by default)."""
        return await self.lifecycle.start_version(name, version, restart)

    async def act_on_service(self, name: str, action: str) -> dict[str, Any]:
        """``stop``, ``start`` or ``restart`` a whole service."""
        return await self.lifecycle.act_on_service(name, action)

    async def delete_version(self, name: str, version: str, keep_image: bool = False) -> dict[str, Any]:
        """Remove one version (the service with it when it is the last)."""
        return await self.lifecycle.delete_version(name, version, keep_image)

    async def delete(self, name: str, keep_images: bool = False) -> None:
        """Remove a service and everything it has."""
        await self.lifecycle.delete(name, keep_images)

    async def set_traffic(self, name: str, canary: str | None, weight: int, shadows: list[str]) -> dict[str, Any]:
        """Set a service's canary and shadows."""
        return await self.lifecycle.set_traffic(name, canary, weight, shadows)

    async def refresh_route(self, route: Route) -> Route | None:
        """Where a routed version answers now, when its runner moved."""
        return await self.lifecycle.refresh_route(route)

    async def reconcile(self) -> None:
        """Bring the runtime in line with the store after a (re)start of the manager."""
        await self.lifecycle.reconcile()

    # -- secrets -------------------------------------------------------------------------------

    def list_secrets(self) -> list[dict[str, Any]]:
        """Every secret's name, times and the versions that use it; never a value."""
        out = []
        for info in self.vault.names():
            users = self.lifecycle.using(str(info["name"]))
            out.append(dict(info, used_by=[f"{r.service} {r.version}" for r in users]))
        return out

    async def set_secret(self, name: str, value: object, username: str) -> dict[str, Any]:
        """Keep a secret (encrypted); running versions that use it move to runners started with the new value."""
        replaced = self.vault.set(name, value, username)
        self.store.add_event("secret", f"secret {name} {'changed' if replaced else 'set'} by {username}", None, None)
        rotated = await self.lifecycle.rotate(name)
        return {"name": name, "replaced": replaced, **rotated}

    def delete_secret(self, name: str, force: bool = False) -> dict[str, Any]:
        """Forget a secret; 409 while a stored version names it, unless ``force`` (such versions then cannot start)."""
        self.vault.check_name(name)
        if not self.vault.has(name):
            raise ApiError(404, f"no secret named {name!r}", "unknown-secret")
        users = [f"{r.service} {r.version}" for r in self.lifecycle.using(name)]
        if users and not force:
            raise ApiError(409, f"secret {name} is used by {', '.join(users)}: delete those versions first, or "
                                "remove it anyway with force (they then cannot start)", "in-use")
        self.vault.delete(name)
        self.store.add_event("secret", f"secret {name} removed", None, None)
        return {"deleted": name, "used_by": users}

    def spawn(self, coro: Any) -> asyncio.Task:
        """Background work that ends with the manager."""
        return self.lifecycle.spawn(coro)

    async def close(self) -> None:
        """Cancel background work and close sessions."""
        await self.lifecycle.close()
        await self.pipeline.close()

    def on_runtime_event(self, service: str, version: str, kind: str, message: str) -> None:
        """Called by runtimes (from their threads) when a version crashes, restarts or fails for good."""
        self.store.add_event(kind, message, service, version)
        record = self.store.get_version(service, version)
        if record is None or record.desired != "running":
            return
        # The stored status follows the runner, so the API never says running while it is down.
        if kind == "crashed" and record.status in ("running", "crashed"):
            self.store.set_version_status(service, version, "crashed", error=message)
        elif kind == "restarted" and record.status == "crashed":
            self.store.set_version_status(service, version, "running")
        elif kind == "failed" and record.status in ("running", "crashed"):
            self.store.set_version_status(service, version, "failed", error=message)

    # -- queries -----------------------------------------------------------------------------

    def spec(self, record: VersionRecord) -> VersionSpec:
        """The runtime's view of a stored version."""
        return self.pipeline.spec(record)

    def task(self, name: str, version: str) -> DeployTask:
        """The deploy task of a version (its progress stream)."""
        return self.pipeline.task(name, version)

    def version_record(self, name: str, version: str | None = None) -> tuple[dict[str, Any], VersionRecord]:
        """A service and one of its versions (main, else the newest, when none is named); 404 otherwise."""
        return self.lifecycle.version_record(name, version)

    def traffic_view(self, name: str) -> dict[str, Any]:
        """Canary and shadow settings with the shadows' comparison counts."""
        return self.routing.traffic_view(name)

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

    def logs(self, name: str, version: str | None, tail: int) -> str:
        """Log tail of a version (main by default)."""
        _, record = self.version_record(name, version)
        text = self.runtime.logs(self.spec(record), tail)
        names = record.manifest.get("secrets") or []
        # A function that prints its secret must not hand it to every reader of the log.
        return redact(text, [self.vault.value(n) for n in names if self.vault.has(n)]) if names else text

    async def usage(self, name: str) -> dict[str, dict[str, float] | None]:
        """Memory and CPU time of each running version of a service."""
        self.version_record(name)
        out: dict[str, dict[str, float] | None] = {}
        for record in self.store.list_versions(name):
            if self.routing.version(name, record.version) is not None:
                out[record.version] = await asyncio.to_thread(self.runtime.usage, self.spec(record))
        return out

    def record_call(
        self, name: str, version: str, entrypoint: str, status: int, latency_ms: float, request: bytes, response: bytes
    ) -> None:
        """Keep a monitored call's request and answer (each cut to ``monitor_body_limit`` bytes)."""
        self.store.add_prediction(
            name, version, entrypoint, status, latency_ms,
            clip(request, self.monitor_body_limit), clip(response, self.monitor_body_limit), self.monitor_keep,
        )
