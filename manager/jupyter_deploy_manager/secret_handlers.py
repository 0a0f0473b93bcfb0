"""Secrets handlers: list them (names only), set one (its value in the body, never answered), remove one."""

from __future__ import annotations

from .handlers import BaseHandler


class SecretsHandler(BaseHandler):
    """``GET /api/secrets``."""

    def get(self) -> None:
        """Every secret's name, times and the versions that use it; values are never answered."""
        self.need_view()
        self.send({"secrets": self.deployments.list_secrets()})


class SecretHandler(BaseHandler):
    """``PUT`` / ``DELETE /api/secrets/{secret}``."""

    async def put(self, name: str) -> None:
        """Set a secret ``{"value": str}``; running versions that use it restart with it, failing no call."""
        p = self.need_deploy("manage secrets")
        body = self.json_body()
        self.send(await self.deployments.set_secret(name, body.get("value"), p.username))

    def delete(self, name: str) -> None:
        """Remove a secret (``?force=1`` even while versions use it)."""
        self.need_deploy("manage secrets")
        force = self.get_query_argument("force", "0") in ("1", "true")
        self.send(self.deployments.delete_secret(name, force))
