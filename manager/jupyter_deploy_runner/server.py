"""Tornado handlers and the serving loop (keep-alive, worker threads, graceful SIGTERM)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import tornado.httpserver
import tornado.iostream
import tornado.web

from jupyter_deploy_contract import Unserialisable, dumps, error_json
from jupyter_deploy_contract.inputs import Entrypoint, InvalidInput

from . import EXIT_OUT_OF_MEMORY

MAX_BODY = 64 * 1024 * 1024
"""Largest request body accepted, in bytes."""

INLINE_BELOW = 0.050
"""Calls an entrypoint usually finishes within this many seconds go to the fast lane, the IO loop waiting for
them; a call still running after this long is left to finish on its own while the loop serves on."""

INLINE_MAX_BODY = 256 * 1024
"""Bodies larger than this always go to the worker pool (big input, likely a long call)."""


def _error(status: int, reason: str, message: str, **extra: Any) -> tuple[int, bytes]:
    return status, error_json(reason, message, **extra)


def _log_traceback(header: str) -> None:
    # One write, so tracebacks of concurrent failures do not interleave.
    sys.stderr.write(header + "\n" + traceback.format_exc())
    sys.stderr.flush()


def out_of_memory(where: str) -> None:
    """End the runner after a MemoryError under an address-space limit, as an OOM kill would end it.

    The manager reads the exit status, reports "out of memory (limit ...)" and starts it again: a
    process that hit its limit (a leak, a cache) would otherwise keep failing every call.
    """
    _log_traceback(f"{where} ran out of memory:")
    sys.stderr.write(f"jupyter-deploy runner: out of memory in {where}\n")
    sys.stderr.flush()
    os._exit(EXIT_OUT_OF_MEMORY)


Answer = tuple[int, bytes]


class _LaneCall:
    """One call handed to a fast lane: done when the lane finished it, late once the loop stopped waiting."""

    __slots__ = ("fn", "args", "done", "answer", "guard", "late")

    def __init__(self, fn: Callable[..., Answer], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.done = threading.Event()
        self.answer: Answer | None = None
        self.guard = threading.Lock()
        self.late: tuple[asyncio.AbstractEventLoop, asyncio.Future[Answer]] | None = None


def _resolve(future: asyncio.Future[Answer], answer: Answer) -> None:
    if not future.done():
        future.set_result(answer)


class FastLane:
    """A thread of its own running one quick call at a time while the IO loop waits for it, up to a bound.

    The loop blocks in ``Event.wait``, which releases the GIL, so the lane runs at once: no GIL contention
    with the loop and no event-loop round trip, which is what a worker pool costs a quick call (about half
    of the throughput of a trivial entrypoint). A call still running at the bound is given up on: the loop
    awaits it as a future and a new lane takes the next calls; the old thread ends after that call.
    """

    def __init__(self, index: int) -> None:
        self._calls: queue.SimpleQueue[_LaneCall] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=f"fast-lane-{index}", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            call = self._calls.get()
            try:
                answer = call.fn(*call.args)
            except Exception:  # the loop waits for an answer: it must get one whatever happens here
                _log_traceback("answering a call failed:")
                answer = _error(500, "server-error", "the runner failed answering this call; see the service log")
            with call.guard:
                call.answer = answer
                call.done.set()
                late = call.late
            if late is not None:
                # Given up on: a newer lane has the next calls; hand the answer over and end.
                loop, future = late
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(_resolve, future, answer)
                return

    def run(self, call: _LaneCall, bound: float) -> asyncio.Future[Answer] | None:
        """Run ``call``, waiting up to ``bound`` seconds; None when it is done, else a future of its answer."""
        self._calls.put(call)
        if call.done.wait(bound):
            return None
        with call.guard:
            if call.done.is_set():
                return None
            loop = asyncio.get_running_loop()
            future: asyncio.Future[Answer] = loop.create_future()
            call.late = (loop, future)
        return future


class Service:
    """The served bundle: entrypoints, health answer, worker pool and in-flight count."""

    exit_on_memory_error = False
    """End the runner on a MemoryError (``--exit-on-memory-error``) instead of answering 500."""

    control_hash: str | None = None
    """sha256 (hex) of the key of the manager's control routes (the smoke test); None: they answer 404."""

    sample: dict[str, Any] | None = None
    """The manifest's sample, which the smoke test calls each entrypoint on."""

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
        self._lanes = 0
        self.lane = self._new_lane() if self.executor is not None and inline_below > 0 else None
        # Lanes given up on whose call still runs: each is a thread, so they are bounded like the pool.
        self.stuck = 0
        self.max_stuck = max(1, threads)

    def unknown(self, path: str) -> tuple[int, bytes]:
        """The 404 answer for a path that is no entrypoint."""
        return _error(404, "unknown-entrypoint",
                      f"unknown entrypoint {path.lstrip('/')!r}; this service has: {', '.join(self.entrypoints)} "
                      f"(POST /<entrypoint>) and GET /healthz")

    def _new_lane(self) -> FastLane:
        self._lanes += 1
        return FastLane(self._lanes)

    def quick(self, ep: Entrypoint, body: bytes) -> bool:
        """Whether this call goes to the fast lane: its entrypoint is quick or not timed yet, its body small."""
        return (self.lane is not None and self.stuck < self.max_stuck and len(body) < INLINE_MAX_BODY
                and (self.estimate[ep.name] < self.inline_below or self.estimate[ep.name] == math.inf))

    async def call(self, ep: Entrypoint, body: bytes) -> tuple[int, bytes]:
        """Answer one call without ever running user code on the IO loop (unless ``--threads 0`` asks for it)."""
        if self.executor is None:
            return self.timed(ep, body)
        if not self.quick(ep, body):
            # Slow entrypoints and big bodies: the pool, where they wait only behind each other.
            return await asyncio.get_running_loop().run_in_executor(self.executor, self.timed, ep, body)
        assert self.lane is not None
        call = _LaneCall(self.timed, (ep, body))
        late = self.lane.run(call, self.inline_below)
        if late is None:
            assert call.answer is not None
            return call.answer
        # Over the bound: the loop serves on, the next calls take a new lane, and this entrypoint goes to
        # the pool until a call there proves it quick again (timed() raises the estimate when it ends).
        self.estimate[ep.name] = max(self.inline_below, 0.0 if self.estimate[ep.name] == math.inf
                                     else self.estimate[ep.name])
        self.lane = self._new_lane()
        self.stuck += 1
        try:
            return await late
        finally:
            self.stuck -= 1

    def timed(self, ep: Entrypoint, body: bytes) -> tuple[int, bytes]:
        """``handle`` plus updating the entrypoint's duration estimate."""
        start = time.perf_counter()
        try:
            answer = self.handle(ep, body)
        except MemoryError:
            if self.exit_on_memory_error:
                out_of_memory(f"entrypoint {ep.name}")
            raise
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
            if isinstance(exc, MemoryError) and self.exit_on_memory_error:
                raise
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
        self.set_header("X-Content-Type-Options", "nosniff")

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
                answer = await service.call(ep, self.request.body)
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
    from . import smoke  # it builds on this module's handlers

    kwargs = {"service": service}
    return tornado.web.Application(
        [
            (r"/healthz", HealthHandler, kwargs),
            smoke.route(service),
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
