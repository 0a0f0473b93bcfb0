"""REST API handlers: thin, they call the services kept in the tornado app's settings."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable
from typing import Any

import tornado.web

from jupyter_deploy_contract import dumps, error_body

from . import __version__
from .auth import SCOPES, Auth, Principal, client_address
from .deployments import DeploymentService
from .pipeline import BundleUpload
from .errors import ApiError

log = logging.getLogger("jupyter_deploy_manager")

MAX_TOKEN_LIFETIME = 10 * 365 * 24 * 3600
"""Longest ``expires_in`` a new token may have, in seconds (ten years)."""

FOLLOW_QUEUE_LINES = 1000
"""Log lines kept waiting for one follower; when it reads more slowly than the log grows, newer lines are dropped."""


class FollowQueue:
    """The lines waiting for one log follower, bounded: what a slow follower misses is said in a marker line."""

    def __init__(self, limit: int = FOLLOW_QUEUE_LINES, on_drop: Any = None) -> None:
        self.limit = max(2, limit)
        self.dropped = 0
        self._on_drop = on_drop
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()

    def _marker(self) -> str:
        dropped, self.dropped = self.dropped, 0
        return (f"[jupyter-deploy: {dropped} log line(s) dropped here: this follower read more slowly than "
                f"the service wrote]")

    def offer(self, line: str) -> None:
        """Queue a line (on the loop's thread), or count it as dropped when the follower is that far behind."""
        room = self.limit - self._lines.qsize()
        if self.dropped and room >= 2:
            self._lines.put_nowait(self._marker())
        elif self.dropped or room < 1:
            if self._on_drop is not None:
                self._on_drop()  # once per follower: the marker lines tell the rest
                self._on_drop = None
            self.dropped += 1
            return
        self._lines.put_nowait(line)

    def end(self) -> None:
        """No more lines (never dropped)."""
        self._lines.put_nowait(None)

    async def get(self) -> str | None:
        """The next line, or None at the end; the marker as soon as the lines before the dropped ones are out."""
        if self.dropped and self._lines.empty():
            return self._marker()
        return await self._lines.get()


class BaseHandler(tornado.web.RequestHandler):
    """JSON errors, bearer-token auth and access to the app's services."""

    def set_default_headers(self) -> None:
        """On every answer, errors included: browsers must take a JSON answer as JSON, never sniff it into HTML."""
        self.set_header("X-Content-Type-Options", "nosniff")

    @property
    def auth(self) -> Auth:
        """The app's Auth."""
        return self.settings["jd_auth"]

    @property
    def deployments(self) -> DeploymentService:
        """The app's DeploymentService."""
        return self.settings["jd_deployments"]

    def bearer(self) -> str | None:
        """The token from the Authorization header, if any."""
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None

    def principal(self) -> Principal:
        """The verified caller; 401 without a valid token."""
        token = self.bearer()
        if token is None:
            raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'", "missing-token")
        principal = self.auth.verify(token)
        if principal is None:
            raise ApiError(401, "invalid, expired or revoked token", "invalid-token")
        return principal

    def need_view(self) -> Principal:
        """A token that may list services and read logs."""
        p = self.principal()
        if not p.may_view():
            raise ApiError(403, f"a token of scope {p.scope!r} cannot use the management API", "forbidden")
        return p

    def need_deploy(self, action: str = "deploy or change services") -> Principal:
        """A token that may deploy and manage services (and create tokens); the 403 names the role."""
        p = self.principal()
        if not p.may_deploy():
            raise ApiError(403, p.refusal(action), "forbidden")
        return p

    def need_admin(self, action: str = "manage users") -> Principal:
        """An admin token of an admin user."""
        p = self.principal()
        if not p.is_admin():
            if p.role != "admin":
                raise ApiError(403, f"user {p.username!r} has role {p.role!r}; only admins can {action}", "forbidden")
            raise ApiError(
                403, f"a token of scope {p.scope!r} cannot {action}; it takes an admin-scope token", "forbidden"
            )
        return p

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object; 400 otherwise."""
        try:
            body = json.loads(self.request.body or b"{}")
            # JSON may escape lone surrogates ("\ud800"), which no password hash or database takes.
            json.dumps(body, ensure_ascii=False).encode()
        except UnicodeEncodeError as exc:
            raise ApiError(400, "request body holds a string that is not valid Unicode", "bad-json") from exc
        except ValueError as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}", "bad-json") from exc
        except RecursionError as exc:
            raise ApiError(400, "request body is nested too deeply", "bad-json") from exc
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object", "bad-json")
        return body

    def int_argument(self, name: str, default: int) -> int:
        """An integer query argument; 422 naming it when it is not one."""
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError as exc:
            raise ApiError(422, f"{name} must be an integer, not {raw[:40]!r}", "invalid-input") from exc

    def send(self, data: Any, status: int = 200) -> None:
        """Answer with JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        # The contract's encoder: strict JSON (a stray NaN or infinity becomes null, never a bare token).
        self.finish(dumps(data))

    def log_exception(self, typ, value, tb) -> None:  # type: ignore[override]
        """Expected API errors are not server errors; keep the log for real failures."""
        if isinstance(value, ApiError):
            return
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error is JSON ``{"message", "reason"}``."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            self.set_status(exc.status)
            for name, value in exc.headers.items():
                self.set_header(name, value)
            body = error_body(exc.reason, exc.message)
        elif isinstance(exc, tornado.web.HTTPError):
            body = error_body(self._reason.lower().replace(" ", "-"), exc.log_message or self._reason)
        else:
            body = error_body("internal-error", "internal error in the manager; see its log")
        self.set_header("Content-Type", "application/json")
        self.finish(dumps(body))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ApiError):
            if self._finished:
                return
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)


class HealthHandler(BaseHandler):
    """``GET /api/health``: no auth, for probes."""

    def get(self) -> None:
        """Report that the manager is up and which runtime it uses."""
        self.send({"status": "ok", "runtime": self.deployments.runtime.name, "version": __version__})


class LoginHandler(BaseHandler):
    """``POST /api/login``: a password for a token."""

    async def post(self) -> None:
        """Check the password (in the password threads) and issue an expiring token for the user."""
        body = self.json_body()
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise ApiError(422, "login needs 'username' and 'password' strings", "invalid-input")
        address = client_address(self.request.remote_ip or "", self.request.headers.get("X-Forwarded-For"),
                                 self.settings["jd_trusted_proxies"])
        token, record = await self.auth.hashing(self.auth.login, username, password, address)
        self.send({"token": token, "token_id": record.id, "username": username, "scope": record.scope,
                   "expires_at": record.public()["expires_at"]})


class WhoAmIHandler(BaseHandler):
    """``GET /api/whoami``."""

    def get(self) -> None:
        """Describe the caller's token."""
        p = self.principal()
        self.send({"username": p.username, "scope": p.scope, "service": p.service, "role": p.role})


class ServicesHandler(BaseHandler):
    """``GET /api/services``."""

    def get(self) -> None:
        """List services."""
        self.need_view()
        self.send({"services": self.deployments.list()})


class ServiceHandler(BaseHandler):
    """``GET`` / ``DELETE /api/services/{name}``."""

    def get(self, name: str) -> None:
        """Describe one service; an invoke token of that service may read it too."""
        p = self.principal()
        if not (p.may_view() or p.may_invoke(name)):
            raise ApiError(403, f"this token cannot read service {name!r}", "forbidden")
        info = self.deployments.describe(name)
        route = self.deployments.routing.main(name)
        if p.may_view() and route is not None:
            # Where the runner answers, for operators and benchmarks; never shown to invoke tokens.
            info["endpoint"] = route.url
        self.send(info)

    async def delete(self, name: str) -> None:
        """Stop and remove a service."""
        self.need_deploy("delete services")
        keep = self.get_query_argument("keep_images", "0") in ("1", "true")
        await self.deployments.delete(name, keep_images=keep)
        self.send({"deleted": name})


@tornado.web.stream_request_body
class VersionsHandler(BaseHandler):
    """``POST /api/services/{name}/versions``: upload a bundle, written to disk and hashed as it arrives."""

    upload: BundleUpload | None = None
    refusal: ApiError | None = None
    caller: Principal | None = None
    receiving = True

    def prepare(self) -> None:
        """Check the caller, the name and the checksum header before the body comes, and open its file."""
        # Refused requests are answered once their body is in (and dropped): closing a connection the
        # client still sends on resets it, and the client may never read why.
        try:
            self.caller = self.need_deploy()
            main = self.get_query_argument("main", "1")
            if main not in ("0", "1", "true", "false"):
                raise ApiError(422, "main must be 1/true (the new version becomes main) or 0/false", "invalid-input")
            self.upload = self.deployments.receive(self.path_args[0], self.request.headers.get("X-Bundle-SHA256"))
        except ApiError as exc:
            self.refusal = exc

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        """Write (and hash) a chunk in the upload threads; tornado reads the next one once it is written."""
        if self.upload is None:
            return None
        return asyncio.get_running_loop().run_in_executor(
            self.deployments.pipeline.upload_threads, self.upload.write, chunk)

    async def post(self, name: str) -> None:
        """Accept the received bundle and start building it."""
        self.receiving = False
        try:
            if self.refusal is not None:
                raise self.refusal
            assert self.upload is not None and self.caller is not None
            result = await self.deployments.submit(
                name, self.upload, self.request.headers.get("X-Bundle-SHA256"), self.caller.username,
                make_main=self.get_query_argument("main", "1") in ("1", "true"), direct_urls=self.caller.is_admin(),
            )
        finally:
            self._discard()
        base = f"{self.request.protocol}://{self.request.host}"
        result["url"] = f"{base}/services/{name}"
        result["events_url"] = f"{base}/api/services/{name}/versions/{result['version']}/events"
        self.send(result, status=202)

    def on_connection_close(self) -> None:
        """The client left mid-upload: drop what came (once the body is in, ``post`` cleans up)."""
        if self.receiving:
            self._discard()

    def _discard(self) -> None:
        upload, self.upload = self.upload, None
        if upload is not None:
            # What register did not move into the bundles dir: the spooled tar, a refused bundle's files.
            asyncio.get_running_loop().run_in_executor(self.deployments.pipeline.upload_threads, upload.discard)


class EventsHandler(BaseHandler):
    """``GET /api/services/{name}/versions/{version}/events``: NDJSON progress stream."""

    async def get(self, name: str, version: str) -> None:
        """Stream the deploy's events until it is running or failed."""
        self.need_view()
        task = self.deployments.task(name, version)
        follow = self.get_query_argument("follow", "1") not in ("0", "false")
        start = self.int_argument("since", 0)
        if start < 0:
            raise ApiError(422, "since must be an event number, 0 or more", "invalid-input")
        self.set_header("Content-Type", "application/x-ndjson")
        self.set_header("Cache-Control", "no-cache")
        if not follow:
            for event in task.since(start):
                self.write(dumps(event) + b"\n")
            self.finish()
            return
        async for event in task.follow(start):
            self.write(dumps(event) + b"\n")
            try:
                await self.flush()
            except tornado.iostream.StreamClosedError:
                # The client left; the deploy goes on regardless.
                return
        self.finish()


class LogsHandler(BaseHandler):
    """``GET /api/services/{name}/logs``."""

    async def get(self, name: str) -> None:
        """Tail of a version's log as plain text."""
        self.need_view()
        tail = self.int_argument("tail", 200)
        version = self.get_query_argument("version", None)
        text = await tornado.ioloop.IOLoop.current().run_in_executor(
            None, self.deployments.logs, name, version, max(1, min(tail, 100_000))
        )
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        if self.get_query_argument("follow", "0") not in ("1", "true"):
            self.finish(text)
            return
        self.write(text)
        await self._follow(name, version)

    async def _follow(self, name: str, version: str | None) -> None:
        """Stream new lines until the client goes away."""
        _, record = self.deployments.version_record(name, version)
        spec = self.deployments.spec(record)
        runtime = self.deployments.runtime
        self._stop = stop = threading.Event()
        queue = FollowQueue(on_drop=lambda: log.info(
            "a log follower of %s %s reads more slowly than the log grows: dropping lines", name, record.version))
        loop = asyncio.get_running_loop()

        def pump() -> None:
            try:
                for line in runtime.follow(spec, stop):
                    loop.call_soon_threadsafe(queue.offer, line)
            except Exception:  # noqa: BLE001 - the version went away; end the stream
                log.debug("log follow of %s %s ended", name, record.version, exc_info=True)
            finally:
                loop.call_soon_threadsafe(queue.end)

        # Its own thread: a follower may last for hours and must not hold a pool worker.
        threading.Thread(target=pump, name=f"follow-{name}", daemon=True).start()
        try:
            await self.flush()
            while (line := await queue.get()) is not None:
                self.write(line + "\n")
                await self.flush()
        except tornado.iostream.StreamClosedError:
            return
        finally:
            stop.set()
        self.finish()

    def on_connection_close(self) -> None:
        """Stop following when the client leaves."""
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()


class EventsListHandler(BaseHandler):
    """``GET /api/events``: recorded events (deployed, crashed, restarted, build failed)."""

    def get(self) -> None:
        """Newest events first, optionally for one service."""
        self.need_view()
        service = self.get_query_argument("service", None)
        self.send({"events": self.deployments.store.list_events(service)})


class TokensHandler(BaseHandler):
    """``GET`` / ``POST /api/tokens``."""

    def get(self) -> None:
        """List tokens (all for admins, one's own otherwise), never their secrets."""
        p = self.need_view()
        records = self.auth.store.list_tokens(None if p.is_admin() else p.username)
        self.send({"tokens": [r.public() for r in records]})

    def post(self) -> None:
        """Create a token of some scope, optionally expiring."""
        p = self.need_deploy("create tokens")
        body = self.json_body()
        scope = body.get("scope", "invoke")
        if scope not in SCOPES:
            raise ApiError(422, f"scope must be one of {', '.join(SCOPES)}, not {scope!r}", "invalid-input")
        service = body.get("service")
        if scope == "invoke":
            if not isinstance(service, str) or not service:
                raise ApiError(422, "an invoke token needs 'service'", "invalid-input")
            if self.deployments.store.get_service(service) is None:
                raise ApiError(404, f"no service named {service!r}", "unknown-service")
        else:
            service = None
        if scope == "admin" and not p.is_admin():
            raise ApiError(403, "only admins can create admin tokens", "forbidden")
        expires_in = body.get("expires_in")
        if expires_in is not None and (
            type(expires_in) not in (int, float) or not 0 < expires_in <= MAX_TOKEN_LIFETIME
        ):
            # NaN fails the range test too; an expiry past what dates can show would break every token list.
            raise ApiError(
                422, f"expires_in must be a number of seconds above 0 and at most {MAX_TOKEN_LIFETIME}", "invalid-input"
            )
        note = body.get("note")
        if note is not None and not isinstance(note, str):
            raise ApiError(422, "note must be a string", "invalid-input")
        token, record = self.auth.issue(p.username, scope, service, expires_in, note=note)
        self.send(dict(record.public(), token=token), status=201)


class TokenHandler(BaseHandler):
    """``DELETE /api/tokens/{id}``."""

    def delete(self, token_id: str) -> None:
        """Revoke a token (one's own, or any for admins)."""
        p = self.need_view()
        record = self.auth.store.get_token(token_id)
        if record is None or (record.username != p.username and not p.is_admin()):
            raise ApiError(404, f"no token with id {token_id!r}", "unknown-token")
        self.auth.revoke(token_id)
        self.send({"revoked": token_id})


class NotFoundHandler(BaseHandler):
    """JSON 404 for every unknown path."""

    def prepare(self) -> None:
        """Answer 404 whatever the method."""
        raise ApiError(404, f"no route for {self.request.path}", "not-found")
