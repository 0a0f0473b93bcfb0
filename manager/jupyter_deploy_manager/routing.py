"""The routing table the proxy reads: one Route per running version, the main of each service, canary and shadows."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, replace
from typing import Any, Hashable

from .runtimes.base import Endpoint

NO_STATS = {"compared": 0, "differ": 0, "errors": 0}
"""Comparison counts of a shadow that has seen no call yet."""


@dataclass(frozen=True)
class Route:
    """Where one running version of a service answers, and which of its entrypoints are monitored."""

    service: str
    version: str
    endpoint: Endpoint
    monitored: frozenset[str] = frozenset()

    @property
    def url(self) -> str:
        """Base URL of the version's runner."""
        return self.endpoint.url

    @staticmethod
    def monitored_in(manifest: dict[str, Any]) -> frozenset[str]:
        """Entrypoints whose manifest entry asks for their calls to be kept."""
        entries = manifest.get("entrypoints", [])
        return frozenset(e["name"] for e in entries if isinstance(e, dict) and e.get("monitor"))


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

    def without(self, version: str) -> Traffic:
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
    def load(cls, data: dict[str, Any]) -> Traffic:
        """From the stored JSON view."""
        canary = data.get("canary") or {}
        return cls(canary.get("version"), int(canary.get("weight") or 0), tuple(data.get("shadows") or ()))


class InFlight:
    """Calls the proxy has forwarded to each version and not finished: what a version leaving service drains.

    Counted per version and per runner endpoint: a version whose runner is replaced (a new generation after its
    secrets rotated) drains only the calls still with the old runner.
    """

    def __init__(self) -> None:
        self._calls: dict[Hashable, int] = {}
        self._idle: dict[Hashable, asyncio.Event] = {}

    @staticmethod
    def _keys(route: Route) -> tuple[Hashable, ...]:
        return (route.service, route.version), route.endpoint

    def started(self, route: Route) -> None:
        """A call was sent (or is about to be) to the route's version."""
        for key in self._keys(route):
            self._calls[key] = self._calls.get(key, 0) + 1

    def ended(self, route: Route) -> None:
        """A call to the route's version is over (answered, failed, or resent elsewhere)."""
        for key in self._keys(route):
            left = self._calls.get(key, 0) - 1
            if left > 0:
                self._calls[key] = left
                continue
            self._calls.pop(key, None)
            idle = self._idle.pop(key, None)
            if idle is not None:
                idle.set()

    def count(self, name: str, version: str) -> int:
        """Calls in flight to one version."""
        return self._calls.get((name, version), 0)

    async def drained(self, name: str, version: str, timeout: float) -> int:
        """Wait until no call to the version is in flight, at most ``timeout`` seconds; return how many still are."""
        return await self._wait((name, version), timeout)

    async def endpoint_drained(self, endpoint: Endpoint, timeout: float) -> int:
        """Wait until no call to one runner is in flight, at most ``timeout`` seconds; return how many still are."""
        return await self._wait(endpoint, timeout)

    async def _wait(self, key: Hashable, timeout: float) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._calls.get(key) and (left := deadline - loop.time()) > 0:
            idle = self._idle.setdefault(key, asyncio.Event())
            try:
                await asyncio.wait_for(idle.wait(), left)
            except asyncio.TimeoutError:
                break
        return self._calls.get(key, 0)


class Routing:
    """In-memory routing state; read by the proxy on every call, changed only by the lifecycle under its lock.

    Everything runs on the event loop, so a read never sees half a change. The main route is not
    stored apart: it is the running version named main, so stopping main takes the main route with it.
    """

    def __init__(self) -> None:
        self._routes: dict[str, dict[str, Route]] = {}
        self._mains: dict[str, str] = {}
        self._traffic: dict[str, Traffic] = {}
        self._shadow_stats: dict[tuple[str, str], dict[str, int]] = {}
        # The proxy's own counts, kept beside the table it reads: the lifecycle waits on them before a stop.
        self.inflight = InFlight()

    # -- what the proxy reads -------------------------------------------------------------

    def main(self, name: str) -> Route | None:
        """The main version's route while it runs."""
        main = self._mains.get(name)
        return self._routes.get(name, {}).get(main) if main else None

    def version(self, name: str, version: str) -> Route | None:
        """One version's route while it runs."""
        return self._routes.get(name, {}).get(version)

    def pick(self, name: str) -> Route | None:
        """The route one call to the service takes: main, or the canary for its share of calls."""
        main = self.main(name)
        traffic = self._traffic.get(name)
        if main is not None and traffic is not None and traffic.canary and random.random() * 100 < traffic.weight:
            return self.version(name, traffic.canary) or main
        return main

    def shadows(self, name: str) -> tuple[str, ...]:
        """Versions that get a copy of every call to main."""
        traffic = self._traffic.get(name)
        return traffic.shadows if traffic is not None else ()

    def shadow_result(self, name: str, version: str, outcome: str) -> None:
        """Count one mirrored call: ``same``, ``differ`` or ``error``."""
        stats = self._shadow_stats.setdefault((name, version), dict(NO_STATS))
        if outcome == "error":
            stats["errors"] += 1
            return
        stats["compared"] += 1
        if outcome == "differ":
            stats["differ"] += 1

    # -- what the API shows ---------------------------------------------------------------

    def running(self, name: str) -> list[str]:
        """Versions of a service that have a route."""
        return list(self._routes.get(name, {}))

    def traffic(self, name: str) -> Traffic:
        """A service's canary and shadow settings."""
        return self._traffic.get(name) or Traffic()

    def traffic_view(self, name: str) -> dict[str, Any]:
        """Canary and shadow settings with the shadows' comparison counts."""
        traffic = self.traffic(name)
        view = traffic.public()
        view["shadow_stats"] = {v: dict(self._shadow_stats.get((name, v), NO_STATS)) for v in traffic.shadows}
        return view

    # -- changes (the lifecycle's, under the service's lock) ------------------------------

    def add(self, route: Route) -> None:
        """A version runs and answers at ``route``."""
        self._routes.setdefault(route.service, {})[route.version] = route

    def remove(self, name: str, version: str) -> None:
        """A version stops taking calls (main included: the main route answers 503 until it is back)."""
        routes = self._routes.get(name)
        if routes is not None:
            routes.pop(version, None)
            if not routes:
                del self._routes[name]

    def set_main(self, name: str, version: str) -> None:
        """The service's calls go to this version (from now on, for calls not yet routed)."""
        self._mains[name] = version

    def set_traffic(self, name: str, traffic: Traffic) -> None:
        """New canary and shadow settings; counts of versions no longer shadows are dropped."""
        if traffic.active:
            self._traffic[name] = traffic
        else:
            self._traffic.pop(name, None)
        for key in [k for k in self._shadow_stats if k[0] == name and k[1] not in traffic.shadows]:
            del self._shadow_stats[key]

    def replace_endpoint(self, route: Route, endpoint: Endpoint) -> Route | None:
        """The version answers elsewhere now (restarted on a new port); only if ``route`` is still current.

        Returns the route now in the table: None when the version stopped meanwhile.
        """
        current = self.version(route.service, route.version)
        if current == route and endpoint != route.endpoint:
            current = replace(route, endpoint=endpoint)
            self.add(current)
        return current

    def forget(self, name: str) -> None:
        """Drop everything about a deleted service."""
        self._routes.pop(name, None)
        self._mains.pop(name, None)
        self._traffic.pop(name, None)
        for key in [k for k in self._shadow_stats if k[0] == name]:
            del self._shadow_stats[key]
