"""Proxy ``/services/{name}/{entrypoint}`` to the main version's runner over pooled keep-alive connections."""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import quote

import aiohttp

import jupyter_deploy_contract as contract

from .docs import ServiceDocs
from .errors import ApiError
from .handlers import BaseHandler

log = logging.getLogger("jupyter_deploy_manager")

# Hop-by-hop and framing headers are the proxy's own business.
_SKIP_RESPONSE_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}
_BUFFER_LIMIT = 1 << 20


class RunnerPool:
    """One aiohttp session shared by every proxied request: connections to runners are reused."""

    def __init__(self, limit: int = 256):
        self.limit = limit
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The shared session, created on first use inside the running loop."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.limit, keepalive_timeout=75, ttl_dns_cache=None),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._session

    async def close(self) -> None:
        """Close pooled connections."""
        if self._session is not None:
            await self._session.close()


class ServiceProxyHandler(BaseHandler):
    """Checks the token, then streams the request to the main version's runner and its answer back."""

    async def post(self, name: str, path: str) -> None:
        """Invoke an entrypoint."""
        await self._forward("POST", name, None, path)

    async def get(self, name: str, path: str) -> None:
        """The docs page, the OpenAPI document, or a read-only runner route (health)."""
        await self._get(name, None, path)

    async def _get(self, name: str, version: str | None, path: str) -> None:
        if path in ("docs", "docs/"):
            if not contract.is_service_name(name) or (version is not None and not contract.is_version(version)):
                # No such service can exist, and the page would otherwise echo the name into its script.
                raise ApiError(404, f"no service named {name!r}", "unknown-service")
            # The page holds no service data: it asks for a token, then loads the document with it.
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(ServiceDocs.page(self, name, version))
            return
        if path == "openapi.json":
            self.send(ServiceDocs.document(self, name, version))
            return
        await self._forward("GET", name, version, path)

    async def _forward(self, method: str, name: str, version: str | None, path: str) -> None:
        principal = self.principal()
        if not principal.may_invoke(name):
            if principal.scope == "invoke":
                raise ApiError(403, f"this token is for service {principal.service!r}, not {name!r}", "forbidden")
            raise ApiError(403, "this token cannot invoke services", "forbidden")
        deployments = self.deployments
        routing = deployments.routing
        route = routing.pick(name) if version is None else routing.version(name, version)
        if route is None:
            raise self._not_routable(name, version)
        shadows = routing.shadows(name) if version is None and method == "POST" else ()
        headers = {"Content-Type": self.request.headers.get("Content-Type", "application/json")}
        session = self.settings["jd_pool"].session()
        body = self.request.body if method == "POST" else None
        # Tornado hands the path over decoded; quoted again, a '?' or '#' in it stays part of the path.
        path = quote(path, safe="/")
        started = time.perf_counter()
        try:
            resp = await session.request(method, f"{route.url}/{path}", data=body, headers=headers)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            # The runner may have been restarted elsewhere (new port); look again once.
            fresh = await deployments.refresh_route(route)
            if fresh is None or fresh.endpoint == route.endpoint:
                raise self._unreachable(name, route.url, exc) from exc
            route = fresh
            try:
                resp = await session.request(method, f"{route.url}/{path}", data=body, headers=headers)
            except (aiohttp.ClientError, asyncio.TimeoutError) as again:
                raise self._unreachable(name, route.url, again) from again
        except aiohttp.ClientError as exc:
            raise self._unreachable(name, route.url, exc) from exc
        async with resp:
            self.set_status(resp.status)
            self.set_header("X-Service-Version", route.version)
            for key, value in resp.headers.items():
                if key.lower() not in _SKIP_RESPONSE_HEADERS:
                    self.set_header(key, value)
            try:
                if resp.content_length is not None and resp.content_length <= _BUFFER_LIMIT:
                    answer = await resp.read()
                    self.finish(answer)
                    if method == "POST" and path in route.monitored:
                        deployments.record_call(
                            name, route.version, path, resp.status, (time.perf_counter() - started) * 1000,
                            body or b"", answer,
                        )
                    for shadow in shadows:
                        # Mirrored after main answered: the caller never waits for a shadow.
                        deployments.spawn(self._mirror(name, shadow, path, body, headers, resp.status, answer))
                    return
                async for chunk in resp.content.iter_chunked(1 << 16):
                    self.write(chunk)
                    await self.flush()
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                if not self._headers_written:
                    raise self._unreachable(name, route.url, exc) from exc
                # Half an answer is out: closing tells the client it is cut, a clean end would not.
                log.warning("service %s broke off its answer: %s", name, exc)
                self.request.connection.close()
                return
            self.finish()

    async def _mirror(
        self, name: str, shadow: str, path: str, body: bytes | None, headers: dict[str, str], status: int, answer: bytes
    ) -> None:
        """Send a copy of a call to a shadow version, discard its answer, count whether it differs."""
        routing = self.deployments.routing
        route = routing.version(name, shadow)
        if route is None:
            routing.shadow_result(name, shadow, "error")
            return
        try:
            async with self.settings["jd_pool"].session().post(
                f"{route.url}/{path}", data=body, headers=headers
            ) as resp:
                same = resp.status == status and await resp.read() == answer
        except (aiohttp.ClientError, asyncio.TimeoutError):
            routing.shadow_result(name, shadow, "error")
            return
        routing.shadow_result(name, shadow, "same" if same else "differ")

    @staticmethod
    def _unreachable(name: str, url: str, exc: BaseException) -> ApiError:
        log.warning("service %s unreachable at %s: %s", name, url, exc)
        return ApiError(502, f"service {name!r} did not answer; see its log", "unreachable")

    def _not_routable(self, name: str, version: str | None) -> ApiError:
        store = self.deployments.store
        if store.get_service(name) is None:
            return ApiError(404, f"no service named {name!r}", "unknown-service")
        if version is None:
            return ApiError(503, f"service {name!r} has no running version", "not-running")
        record = store.get_version(name, version)
        if record is None:
            return ApiError(404, f"no version {version!r} of service {name!r}", "unknown-version")
        return ApiError(503, f"version {version} of {name} is {record.status}, not running", "not-running")


class VersionProxyHandler(ServiceProxyHandler):
    """``/services/{name}/versions/{version}/...``: the same, for one version."""

    async def post(self, name: str, version: str, path: str) -> None:  # type: ignore[override]
        """Invoke an entrypoint of that version."""
        await self._forward("POST", name, version, path)

    async def get(self, name: str, version: str, path: str) -> None:  # type: ignore[override]
        """That version's docs, document, or health."""
        await self._get(name, version, path)
