"""Tornado handlers and the serving loop (keep-alive, worker threads, graceful SIGTERM)."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import socket
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tornado.httpserver
import tornado.iostream
import tornado.web

from jupyter_deploy_contract import Unserialisable, dumps, error_json
from jupyter_deploy_contract.inputs import Entrypoint, InvalidInput

MAX_BODY = 64 * 1024 * 1024
"""Largest request body accepted, in bytes."""

INLINE_BELOW = 0.050
"""Calls an entrypoint usually finishes within this many seconds run on the IO loop itself."""

INLINE_MAX_BODY = 256 * 1024
"""Bodies larger than this always go to the worker pool (big input, likely a long call)."""


def _error(status: int, reason: str, message: str, **extra: Any) -> tuple[int, bytes]:
    return status, error_json(reason, message, **extra)


def _log_traceback(header: str) -> None:
    # One write, so tracebacks of concurrent failures do not interleave.
    sys.stderr.write(header + "\n" + traceback.format_exc())
    sys.stderr.flush()


class Service:
    """The served bundle: entrypoints, health answer, worker pool and in-flight count."""

    def __init__(self, manifest: dict[str, Any], entrypoints: dict[str, Entrypoint], threads: int,
                 access_log: bool = True, inline_below: float = INLINE_BELOW) -> None:
        self.name = manifest.get("name")
        self.version = manifest.get("version")
        self.entrypoints = entrypoints
        self.health = json.dumps(
            {"status": "ok", "name": self.name, "version": self.version, "entrypoints": list(entrypoints)}
        ).encode()
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="entrypoint") if threads > 0 else None
        self.access_log = access_log
        self.inline_below = inline_below
        # Expected duration per entrypoint; unknown (inf) until a first call is timed.
        self.estimate = {name: math.inf for name in entrypoints}
        self.inflight = 0
        self.closing = False

    def unknown(self, path: str) -> tuple[int, bytes]:
        """The 404 answer for a path that is no entrypoint."""
        return _error(404, "unknown-entrypoint",
                      f"unknown entrypoint {path.lstrip('/')!r}; this service has: {', '.join(self.entrypoints)} "
                      f"(POST /<entrypoint>) and GET /healthz")

    def inline(self, ep: Entrypoint, body: bytes) -> bool:
        """Whether to run this call on the IO loop rather than in the worker pool."""
        # A thread hop costs ~0.1 ms a call and 20-30% throughput under load
        # (GIL hand-offs), so quick calls stay on the loop; slow or unknown
        # ones go to the pool so /healthz and other requests keep answering.
        return self.executor is None or (self.estimate[ep.name] < self.inline_below and len(body) < INLINE_MAX_BODY)

    def timed(self, ep: Entrypoint, body: bytes) -> tuple[int, bytes]:
        """``handle`` plus updating the entrypoint's duration estimate."""
        start = time.perf_counter()
        answer = self.handle(ep, body)
        took = time.perf_counter() - start
        if answer[0] not in (200, 500):
            return answer  # refused before the call: says nothing about the function's speed
        previous = self.estimate[ep.name]
        # Up at once on a slow call, down slowly: one slow call sends the next
        # few to the pool. Racy across threads, which only blurs an estimate.
        self.estimate[ep.name] = took if took > previous or previous == math.inf else 0.8 * previous + 0.2 * took
        return answer

    def handle(self, ep: Entrypoint, body: bytes) -> tuple[int, bytes]:
        """Parse, validate, call and serialise one request; never raises."""
        # Parsing and serialising happen here too, so a pool call keeps big
        # inputs and outputs off the IO loop as well, at one thread hop a request.
        try:
            data = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            return _error(400, "bad-json", f"request body is not valid JSON: {exc}")
        except RecursionError:
            return _error(400, "bad-json", "request body is nested too deeply")
        if not isinstance(data, dict):
            example = "{" + ", ".join(f"{json.dumps(p.name)}: ..." for p in ep.params) + "}"
            return _error(400, "bad-json", f"request body must be a JSON object keyed by parameter name, e.g. {example}")
        try:
            args, kwargs = ep.arguments(data)
        except InvalidInput as exc:
            return _error(422, "invalid-input", str(exc), errors=exc.errors)
        try:
            result = ep.fn(*args, **kwargs)
        except (Exception, SystemExit) as exc:  # a stray sys.exit() must not end the service
            _log_traceback(f"entrypoint {ep.name} raised {type(exc).__name__}:")
            return _error(500, "entrypoint-error", f"{ep.name} raised {type(exc).__name__}; see the service log")
        try:
            return 200, dumps(result)
        except Unserialisable as exc:
            # A traceback would only show the encoder; the type is what the user needs.
            sys.stderr.write(f"entrypoint {ep.name} returned an unserialisable {exc.type_name}\n")
            return _error(500, "unserialisable-result",
                          f"{ep.name} returned {exc.type_name}, which cannot be sent as JSON; "
                          f"return lists, dicts, numbers, strings, numpy arrays or pandas objects")

    def log_request(self, handler: tornado.web.RequestHandler) -> None:
        """Access log: one short line a request on stdout (healthy health checks are skipped)."""
        status = handler.get_status()
        request = handler.request
        if not self.access_log or (status == 200 and request.path == "/healthz"):
            return
        sys.stdout.write(f"{status} {request.method} {request.path} {1000.0 * request.request_time():.1f}ms\n")


class _JSONHandler(tornado.web.RequestHandler):
    service: Service

    def initialize(self, service: Service) -> None:
        self.service = service

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")

    def compute_etag(self) -> None:
        return None

    def reply(self, answer: tuple[int, bytes]) -> Any:
        self.set_status(answer[0])
        return self.finish(answer[1])

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Tornado's own errors (405 for other methods, 500 bugs here) in our JSON shape.
        reason = {405: "method-not-allowed", 400: "bad-request"}.get(status_code, "server-error")
        self.finish(_error(status_code, reason, self._reason)[1])


class HealthHandler(_JSONHandler):
    """``GET /healthz``."""

    def get(self) -> None:
        """Answer the precomputed health document."""
        self.finish(self.service.health)


class EntrypointHandler(_JSONHandler):
    """``POST /<entrypoint>``; any other path is a 404."""

    async def post(self, name: str) -> None:
        """Call the entrypoint with the JSON body."""
        service = self.service
        ep = service.entrypoints.get(name)
        if ep is None:
            answer = service.unknown(self.request.path)
        elif service.closing:
            self.set_header("Connection", "close")
            answer = _error(503, "shutting-down", "the service is shutting down")
        else:
            service.inflight += 1
            try:
                body = self.request.body
                if service.inline(ep, body):
                    answer = service.timed(ep, body)
                else:
                    answer = await asyncio.get_running_loop().run_in_executor(service.executor, service.timed, ep, body)
                # Counted until the answer is flushed, so SIGTERM never cuts one off.
                await self.reply(answer)
            except tornado.iostream.StreamClosedError:
                pass  # the client left before its answer; nothing to tell anyone
            finally:
                service.inflight -= 1
            return
        try:
            await self.reply(answer)
        except tornado.iostream.StreamClosedError:
            pass

    def get(self, name: str) -> None:
        """Entrypoints take POST; tell the caller so."""
        if name in self.service.entrypoints:
            self.set_header("Allow", "POST")
            self.reply(_error(405, "method-not-allowed", f"use POST /{name} with a JSON object body"))
        else:
            self.reply(self.service.unknown(self.request.path))


class NotFoundHandler(_JSONHandler):
    """Every path that matches no route."""

    def prepare(self) -> None:
        """Answer 404 whatever the method."""
        self.reply(self.service.unknown(self.request.path))


def make_app(service: Service) -> tornado.web.Application:
    """The tornado application for one service."""
    kwargs = {"service": service}
    return tornado.web.Application(
        [
            (r"/healthz", HealthHandler, kwargs),
            (r"/([^/]+)", EntrypointHandler, kwargs),
        ],
        default_handler_class=NotFoundHandler,
        default_handler_args=kwargs,
        log_function=service.log_request,
        compress_response=False,
        serve_traceback=False,
    )


async def serve(service: Service, sockets: list[socket.socket], host: str, grace: float = 30.0) -> None:
    """Serve on bound ``sockets`` until SIGTERM/SIGINT, then drain in-flight requests and return."""
    server = tornado.httpserver.HTTPServer(
        make_app(service), max_body_size=MAX_BODY, max_buffer_size=MAX_BODY + (1 << 20), idle_connection_timeout=600
    )
    server.add_sockets(sockets)
    actual = sockets[0].getsockname()[1]
    print(f"listening on http://{host}:{actual}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    await stop.wait()

    print("stopping: no new connections; finishing requests in flight", flush=True)
    service.closing = True
    server.stop()
    deadline = time.monotonic() + grace
    while service.inflight and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if service.inflight:
        print(f"stopping with {service.inflight} request(s) still running after {grace:g}s", file=sys.stderr)
    try:
        await asyncio.wait_for(server.close_all_connections(), 5)
    except asyncio.TimeoutError:
        pass
