"""The manager's HTTP server: its size limits and timeouts, and JSON answers when a request breaks one.

Every limit and timeout the manager applies to HTTP is a ``ManagerApp`` traitlet whose default is a
constant here. Tornado enforces its own size limits by answering a bare ``400`` or by dropping the
connection, which tells a user nothing; here, oversize requests are refused before tornado's limits
are reached, by ``RequestGuard`` wrapping every request: ``413`` for a body (an upload, a call, any
other API body), ``431`` for headers, each with ``{"message", "reason"}`` naming the limit and the
traitlet that sets it. Tornado's own limits stay as a backstop above them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import tornado.httpserver
import tornado.httputil

from jupyter_deploy_contract import dumps, error_body

DEFAULT_MAX_BUNDLE_SIZE = 512 * 1024 * 1024
"""Largest bundle upload accepted, in bytes (``ManagerApp.max_bundle_size``)."""
DEFAULT_MAX_CALL_BODY_SIZE = 64 * 1024 * 1024
"""Largest body of a call to a service, in bytes (``ManagerApp.max_call_body_size``); the runner takes as much."""
DEFAULT_MAX_API_BODY_SIZE = 1024 * 1024
"""Largest body of any other API request (logins, tokens, users, traffic), in bytes (``ManagerApp.max_api_body_size``)."""
DEFAULT_MAX_HEADER_SIZE = 64 * 1024
"""Largest request line plus headers, in bytes (``ManagerApp.max_header_size``)."""
HEADER_BUFFER_FACTOR = 16
"""Tornado reads headers up to this many times ``max_header_size`` to answer 431; past that it drops the
connection unanswered (what RFC 6585 advises against such a flood)."""

DEFAULT_CALL_TIMEOUT = 300.0
"""Seconds the proxy waits for a service to send its answer (or its next part) (``ManagerApp.call_timeout``)."""
RUNNER_CONNECT_TIMEOUT = 5.0
"""Seconds the proxy waits to connect to a runner before it looks for the runner elsewhere."""
DEFAULT_IDLE_CONNECTION_TIMEOUT = 300.0
"""Seconds a client connection may take to send a request's headers, the first or the next one on a kept-alive
connection, before it is closed (``ManagerApp.idle_connection_timeout``)."""
DEFAULT_BODY_TIMEOUT = 900.0
"""Seconds a client may take to send a request's body, e.g. a bundle upload (``ManagerApp.body_timeout``)."""

_UPLOAD = re.compile(r"/api/services/[^/]+/versions/?")
_CALL = re.compile(r"/services/.*")


@dataclass(frozen=True)
class Limits:
    """What the server accepts, in bytes; every refusal names the limit and the traitlet that sets it."""

    max_header_size: int = DEFAULT_MAX_HEADER_SIZE
    max_bundle_size: int = DEFAULT_MAX_BUNDLE_SIZE
    max_call_body_size: int = DEFAULT_MAX_CALL_BODY_SIZE
    max_api_body_size: int = DEFAULT_MAX_API_BODY_SIZE

    def body_limit(self, method: str, path: str) -> tuple[int, str, str]:
        """The body limit of a request: (bytes, what the body is, the traitlet that sets the limit)."""
        if method == "POST" and _UPLOAD.fullmatch(path):
            return self.max_bundle_size, "bundle", "ManagerApp.max_bundle_size"
        if _CALL.fullmatch(path):
            return self.max_call_body_size, "call body", "ManagerApp.max_call_body_size"
        return self.max_api_body_size, "request body", "ManagerApp.max_api_body_size"

    @property
    def largest_body(self) -> int:
        """The largest body any route accepts: tornado's own limit is set above it."""
        return max(self.max_bundle_size, self.max_call_body_size, self.max_api_body_size)


def _header_bytes(start_line: tornado.httputil.RequestStartLine, headers: tornado.httputil.HTTPHeaders) -> int:
    # As on the wire: "METHOD path HTTP/1.1\r\n", "Name: value\r\n" each, and the blank line.
    size = len(start_line.method) + len(start_line.path) + len(start_line.version) + 4 + 2
    return size + sum(len(name) + len(value) + 4 for name, value in headers.get_all())


class RequestGuard(tornado.httputil.HTTPMessageDelegate):
    """Passes a request on to the application unless it breaks a limit; then answers 413 or 431 itself.

    A refused request's body is read and dropped (up to the body timeout) rather than left unread: a
    connection closed with unread data is reset, and the client may lose the answer, or never read it
    because it is still sending. A client that asked ``Expect: 100-continue`` has sent no body: it gets
    the answer instead of the go-ahead, and the connection is closed.
    """

    def __init__(self, delegate: tornado.httputil.HTTPMessageDelegate,
                 connection: tornado.httputil.HTTPConnection, limits: Limits) -> None:
        self.delegate = delegate
        self.connection = connection
        self.limits = limits
        self.refused = False
        self.answered = False
        self.received = 0
        self.limit = limits.max_api_body_size
        self.what = ""
        self.traitlet = ""

    def headers_received(self, start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
                         headers: tornado.httputil.HTTPHeaders) -> Awaitable[None] | None:
        """Check the headers' size and the announced body size before the application sees the request."""
        assert isinstance(start_line, tornado.httputil.RequestStartLine)
        path = start_line.path.split("?", 1)[0]
        self.limit, self.what, self.traitlet = self.limits.body_limit(start_line.method, path)
        size = _header_bytes(start_line, headers)
        if size > self.limits.max_header_size:
            return self._refuse(431, "headers-too-large",
                                f"the request line and headers are {size} bytes, over the manager's limit of "
                                f"{self.limits.max_header_size} (ManagerApp.max_header_size)", headers)
        length = headers.get("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > self.limit:
            # Read on (and dropped) whatever its length, which tornado's own limit would refuse bare.
            self._set_max_body_size(int(length))
            return self._refuse(413, "too-large", self._too_large(f"{int(length)} bytes"), headers)
        # The guard counts the bytes of a chunked body itself: tornado's limit is only a backstop above.
        self._set_max_body_size(self.limit if length is not None else self.limits.largest_body * 2 + (1 << 20))
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        """Hand the body on, or drop it once the request is refused or past its limit."""
        if self.refused:
            return None
        self.received += len(chunk)
        if self.received > self.limit:
            # Only a chunked body (no Content-Length) gets here; the application never sees the request.
            self.refused = True
            self.delegate.on_connection_close()
            return self._answer(413, "too-large", self._too_large(f"more than {self.limit} bytes"), close=False)
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        """The body is all in: let the application answer, or end the refusal's answer."""
        if self.refused:
            self.connection.finish()
            return
        self.delegate.finish()

    def on_connection_close(self) -> None:
        """The client left (or the body timed out) before the request was whole."""
        if not self.refused:
            self.delegate.on_connection_close()

    def _too_large(self, size: str) -> str:
        return (f"the {self.what} is {size}, over the manager's limit of {self.limit} bytes ({self.traitlet})")

    def _set_max_body_size(self, size: int) -> None:
        setter = getattr(self.connection, "set_max_body_size", None)
        if setter is not None:
            setter(size)

    def _refuse(self, status: int, reason: str, message: str,
                headers: tornado.httputil.HTTPHeaders) -> Awaitable[None] | None:
        self.refused = True
        # The application never got the headers, so it has nothing to be told when the connection ends.
        if headers.get("Expect", "").lower() == "100-continue":
            # No body is on its way yet: answering ends the request, and tornado closes the connection.
            self._answer(status, reason, message, close=True)
            return None
        return self._answer(status, reason, message, close=False)

    def _answer(self, status: int, reason: str, message: str, close: bool) -> Awaitable[None] | None:
        if self.answered:
            return None
        self.answered = True
        body = dumps(error_body(reason, message))
        headers = tornado.httputil.HTTPHeaders({
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "X-Content-Type-Options": "nosniff",
        })
        start = tornado.httputil.ResponseStartLine("HTTP/1.1", status, tornado.httputil.responses.get(status, ""))
        written = self.connection.write_headers(start, headers, body)
        if close:
            # Finishing before the body was read makes tornado close the connection once this is sent.
            self.connection.finish()
        return written


class Server(tornado.httpserver.HTTPServer):
    """Tornado's HTTPServer with every request behind a ``RequestGuard``."""

    limits: Limits

    def initialize(self, request_callback: Any, limits: Limits | None = None,  # type: ignore[override]
                   **kwargs: Any) -> None:
        """Like HTTPServer's, plus the limits; tornado's own size limits are set above them."""
        self.limits = limits or Limits()
        kwargs.setdefault("max_header_size", self.limits.max_header_size * HEADER_BUFFER_FACTOR)
        kwargs.setdefault("max_body_size", self.limits.largest_body)
        super().initialize(request_callback, **kwargs)

    def start_request(self, server_conn: object,
                      request_conn: tornado.httputil.HTTPConnection) -> tornado.httputil.HTTPMessageDelegate:
        """The application's delegate for this request, behind the guard."""
        return RequestGuard(super().start_request(server_conn, request_conn), request_conn, self.limits)
