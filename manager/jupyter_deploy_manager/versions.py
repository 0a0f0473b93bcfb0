"""Handlers that operate versions: promote, rollback, stop/start/restart, delete one version."""

from __future__ import annotations

from .errors import ApiError
from .handlers import BaseHandler

ACTIONS = ("stop", "start", "restart")


class PromoteHandler(BaseHandler):
    """``POST /api/services/{name}/promote`` ``{"version"}``: make a version main, zero downtime."""

    async def post(self, name: str) -> None:
        """Start the version if needed, wait for its health check, then switch traffic to it."""
        self.need_deploy()
        version = self.json_body().get("version")
        if not isinstance(version, str) or not version:
            raise ApiError(422, "promote needs 'version'", "invalid-input")
        self.send(await self.deployments.promote(name, version))


class RollbackHandler(BaseHandler):
    """``POST /api/services/{name}/rollback``: promote the previous main again."""

    async def post(self, name: str) -> None:
        """Switch back to the version that was main before."""
        self.need_deploy()
        self.send(await self.deployments.rollback(name))


class ServiceActionHandler(BaseHandler):
    """``POST /api/services/{name}/(stop|start|restart)``: act on the whole service."""

    async def post(self, name: str, action: str) -> None:
        """Stop or restart every running version, or start main again."""
        self.need_deploy()
        self.send(await _act(self, name, None, action))


class VersionActionHandler(BaseHandler):
    """``POST /api/services/{name}/versions/{version}/(stop|start|restart)``."""

    async def post(self, name: str, version: str, action: str) -> None:
        """Stop, start or restart one version."""
        self.need_deploy()
        self.send(await _act(self, name, version, action))


class VersionHandler(BaseHandler):
    """``GET`` / ``DELETE /api/services/{name}/versions/{version}``."""

    def get(self, name: str, version: str) -> None:
        """One version's status and manifest summary."""
        self.need_view()
        _, record = self.deployments.version_record(name, version)
        self.send(record.public())

    async def delete(self, name: str, version: str) -> None:
        """Remove one version (its image too unless ``keep_images=1``)."""
        self.need_deploy()
        keep = self.get_query_argument("keep_images", "0") in ("1", "true")
        self.send(await self.deployments.delete_version(name, version, keep_image=keep))


class TrafficHandler(BaseHandler):
    """``GET`` / ``PUT /api/services/{name}/traffic``: canary weight and shadow versions."""

    def get(self, name: str) -> None:
        """The settings, with how often each shadow's answers differed from main's."""
        self.need_view()
        self.deployments.version_record(name)
        self.send(self.deployments.traffic_view(name))

    async def put(self, name: str) -> None:
        """Set ``{"canary": {"version", "weight"} | null, "shadows": [versions]}``."""
        self.need_deploy("change traffic")
        body = self.json_body()
        canary, shadows = body.get("canary"), body.get("shadows", [])
        version, weight = None, 0
        if canary is not None:
            if not isinstance(canary, dict) or not isinstance(canary.get("version"), str):
                raise ApiError(422, "canary must be null or {\"version\": str, \"weight\": 0-100}", "invalid-input")
            version, weight = canary["version"], canary.get("weight", 10)
            if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
                raise ApiError(422, "canary weight must be an integer percentage from 0 to 100", "invalid-input")
        if not isinstance(shadows, list) or not all(isinstance(v, str) for v in shadows):
            raise ApiError(422, "shadows must be a list of versions", "invalid-input")
        await self.deployments.set_traffic(name, version, weight, shadows)
        self.send(self.deployments.traffic_view(name))


async def _act(handler: BaseHandler, name: str, version: str | None, action: str) -> dict:
    deployments = handler.deployments
    if version is None:
        return await deployments.act_on_service(name, action)
    if action == "stop":
        return await deployments.stop_version(name, version)
    return await deployments.start_version(name, version, restart=action == "restart")
