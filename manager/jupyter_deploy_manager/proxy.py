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
from .pages import set_page_headers
from .routing import Route
from .serving import DEFAULT_CALL_TIMEOUT, RUNNER_CONNECT_TIMEOUT

log = logging.getLogger("jupyter_deploy_manager")

# Hop-by-hop and framing headers are the proxy's own business.
_SKIP_RESPONSE_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}
_BUFFER_LIMIT = 1 << 20


class RunnerPool:
    """One aiohttp session shared by every proxied request: connections to runners are reused."""

    def __init__(self, limit: int = 256, call_timeout: float = DEFAULT_CALL_TIMEOUT):
        self.limit = limit
        self.call_timeout = call_timeout
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The shared session, created on first use inside the running loop."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.limit, keepalive_timeout=75, ttl_dns_cache=None),
                # sock_read: a service silent that long (before its answer or within it) is given up on.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=RUNNER_CONNECT_TIMEOUT,
                                              sock_read=self.call_timeout),
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
            # The sidebar shows this page in a frame of the Jupyter server's origin.
            set_page_headers(self, self.settings.get("jd_docs_frame_ancestors"))
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
        # Counted before the first await: a version leaving service sees every call routed to it.
        self._count(route)
        shadows = routing.shadows(name) if version is None and method == "POST" else ()
        headers = {"Content-Type": self.request.headers.get("Content-Type", "application/json")}
        session = self.settings["jd_pool"].session()
        body = self.request.body if method == "POST" else None
        # Tornado hands the path over decoded; quoted again, a '?' or '#' in it stays part of the path.
        path = quote(path, safe="/")
        started = time.perf_counter()
        try:
            resp = await session.request(method, f"{route.url}/{path}", data=body, headers=headers)
        except aiohttp.SocketTimeoutError as exc:
            # The runner has the call and is still on it: sending it again would run it twice.
            raise self._timed_out(name) from exc
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            # The runner may have been restarted elsewhere (new port); look again once.
            fresh = await deployments.refresh_route(route)
            if fresh is None or fresh.endpoint == route.endpoint:
                fresh = self._fallback(name, version, route, exc)
                if fresh is None:
                    raise self._unreachable(name, route.url, exc) from exc
            # Whoever takes the call now is who answers it: the header and the monitor record name it.
            route = fresh
            self._count(route)
            try:
                resp = await session.request(method, f"{route.url}/{path}", data=body, headers=headers)
            except aiohttp.SocketTimeoutError as again:
                raise self._timed_out(name) from again
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
                    if isinstance(exc, aiohttp.SocketTimeoutError):
                        raise self._timed_out(name) from exc
                    raise self._unreachable(name, route.url, exc) from exc
                # Half an answer is out: closing tells the client it is cut, a clean end would not.
                log.warning("service %s broke off its answer: %s", name, exc)
                self.request.connection.close()
                return
            self.finish()

    def _count(self, route: Route) -> None:
        """The call is in flight to ``route`` (and no longer to the one it was counted for before)."""
        inflight = self.deployments.routing.inflight
        previous = getattr(self, "_counted", None)
        if previous is not None:
            inflight.ended(previous)
        self._counted: Route | None = route
        inflight.started(route)

    def _uncount(self) -> None:
        route = getattr(self, "_counted", None)
        if route is not None:
            self._counted = None
            self.deployments.routing.inflight.ended(route)

    def on_finish(self) -> None:
        """The answer is out (or the error): the call no longer holds its version."""
        self._uncount()

    def on_connection_close(self) -> None:
        """The caller left; nobody waits for what the runner still does."""
        self._uncount()

    def _fallback(self, name: str, version: str | None, route: Route, exc: BaseException) -> Route | None:
        """Main's route for a call the canary could not take, else None.

        Only when no connection to the canary was made: the call never reached it, so main is the one
        to run it; a call cut off after it was sent is not run twice.
        """
        if version is not None or not isinstance(exc, aiohttp.ClientConnectorError):
            return None
        main = self.deployments.routing.main(name)
        if main is None or main.version == route.version:
            return None
        log.warning("canary %s %s did not answer; main %s takes the call", name, route.version, main.version)
        return main

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

    def _timed_out(self, name: str) -> ApiError:
        limit = self.settings["jd_pool"].call_timeout
        log.warning("service %s sent no answer within %g s (ManagerApp.call_timeout)", name, limit)
        return ApiError(504, f"service {name!r} sent no answer within {limit:g} s (the manager's limit, set with "
                             f"ManagerApp.call_timeout); the call may still be running in the service", "timeout")

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
