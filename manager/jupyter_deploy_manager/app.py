"""The manager application: configuration (traitlets), start-up, and the ``jupyter-deploy-manager`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

import tornado.web
from traitlets import Enum, Float, Int, List, Unicode, default
from traitlets.config import Application

from . import __version__
from .api_spec import ApiOpenAPIHandler
from .auth import (
    DEFAULT_LOGIN_TOKEN_LIFETIME,
    DEFAULT_TOKEN_CLEANUP_INTERVAL,
    MIN_TOKEN_CLEANUP_INTERVAL,
    Auth,
    Network,
    trusted_networks,
)
from .dashboard import STATIC_DIR as DASHBOARD_DIR
from .dashboard import DashboardHandler, DashboardStaticHandler
from .builder import PIP_TIMEOUT
from .deployments import DEFAULT_HEALTH_TIMEOUT, DEFAULT_MONITOR_BODY_LIMIT, DEFAULT_MONITOR_KEEP, DeploymentService
from .handlers import (
    EventsHandler,
    EventsListHandler,
    HealthHandler,
    LoginHandler,
    LogsHandler,
    NotFoundHandler,
    ServiceHandler,
    ServicesHandler,
    TokenHandler,
    TokensHandler,
    VersionsHandler,
    WhoAmIHandler,
)
from .docs import STATIC_DIR as DOCS_DIR
from .docs import ApiDocsHandler, swagger_ui_dir
from .monitoring import MonitorHandler, UsageHandler
from .pages import DOCS_FRAME_ANCESTORS, PageStaticHandler
from .lifecycle import DRAIN_GRACE
from .pipeline import BUILD_LOG_LINES, DEPLOY_TASK_KEEP, SMOKE_TIMEOUT
from .proxy import RunnerPool, ServiceProxyHandler, VersionProxyHandler
from .runtimes.base import Runtime
from .runtimes.limits import MECHANISMS as LIMIT_MECHANISMS
from .runtimes.limits import parse_memory
from .runtimes.process import LOG_ROTATE_BYTES
from .serving import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_IDLE_CONNECTION_TIMEOUT,
    DEFAULT_MAX_API_BODY_SIZE,
    DEFAULT_MAX_BUNDLE_SIZE,
    DEFAULT_MAX_CALL_BODY_SIZE,
    DEFAULT_MAX_HEADER_SIZE,
    Limits,
    Server,
)
from .secret_handlers import SecretHandler, SecretsHandler
from .store import Store
from .users import PasswordHandler, UserHandler, UsersHandler
from .vault import KEY_ENV, KEY_FILE, Vault, load_key
from .versions import (
    PromoteHandler,
    RollbackHandler,
    ServiceActionHandler,
    TrafficHandler,
    VersionActionHandler,
    VersionHandler,
)

log = logging.getLogger("jupyter_deploy_manager")


def docker_answers() -> bool:
    """Whether a Docker engine answers on this host."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no engine"
        return False


def make_app(store: Store, auth: Auth, deployments: DeploymentService, pool: RunnerPool,
             trusted_proxies: list[Network] | None = None,
             docs_frame_ancestors: str = DOCS_FRAME_ANCESTORS) -> tornado.web.Application:
    """The tornado application with the API, the proxy and their services in its settings."""
    name = r"([^/]+)"
    routes: list[Any] = [
        (r"/api/health", HealthHandler),
        (r"/api/login", LoginHandler),
        (r"/api/whoami", WhoAmIHandler),
        (r"/api/services", ServicesHandler),
        (rf"/api/services/{name}", ServiceHandler),
        (rf"/api/services/{name}/versions", VersionsHandler),
        (rf"/api/services/{name}/versions/{name}/events", EventsHandler),
        (rf"/api/services/{name}/versions/{name}", VersionHandler),
        (rf"/api/services/{name}/versions/{name}/(stop|start|restart)", VersionActionHandler),
        (rf"/api/services/{name}/promote", PromoteHandler),
        (rf"/api/services/{name}/rollback", RollbackHandler),
        (rf"/api/services/{name}/traffic", TrafficHandler),
        (rf"/api/services/{name}/monitor", MonitorHandler),
        (rf"/api/services/{name}/usage", UsageHandler),
        (rf"/api/services/{name}/(stop|start|restart)", ServiceActionHandler),
        (rf"/api/services/{name}/logs", LogsHandler),
        (r"/api/events", EventsListHandler),
        (r"/api/tokens", TokensHandler),
        (rf"/api/tokens/{name}", TokenHandler),
        (r"/api/secrets", SecretsHandler),
        (rf"/api/secrets/{name}", SecretHandler),
        (r"/api/users", UsersHandler),
        (rf"/api/users/{name}", UserHandler),
        (rf"/api/users/{name}/password", PasswordHandler),
        (r"/api/docs", ApiDocsHandler),
        (r"/api/openapi\.json", ApiOpenAPIHandler),
        (r"/static/swagger-ui/(.*)", PageStaticHandler, {"path": str(swagger_ui_dir())}),
        (r"/static/docs/(.*)", PageStaticHandler, {"path": str(DOCS_DIR)}),
        (r"/", DashboardHandler),
        (r"/static/dashboard/(.*)", DashboardStaticHandler, {"path": str(DASHBOARD_DIR)}),
        (rf"/services/{name}/versions/{name}/(.+)", VersionProxyHandler),
        (rf"/services/{name}/(.+)", ServiceProxyHandler),
    ]
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        jd_store=store,
        jd_auth=auth,
        jd_deployments=deployments,
        jd_pool=pool,
        jd_trusted_proxies=list(trusted_proxies or []),
        jd_docs_frame_ancestors=docs_frame_ancestors,
        # The proxy's hot path should not pay for an access log line per call.
        log_function=lambda handler: None,
        compress_response=False,
    )


class ManagerApp(Application):
    """Runs the manager: REST API, deploy pipeline, runtime, proxy."""

    name = "jupyter-deploy-manager"
    description = "Build notebook-captured models into services and serve them behind authentication."
    version = __version__

    host = Unicode("127.0.0.1", help="Address to listen on.").tag(config=True)
    port = Int(8765, help="Port to listen on.").tag(config=True)
    runtime = Enum(
        ["auto", "process", "docker", "swarm"],
        default_value="auto",
        help="Where services run: docker, process (a venv per lock), or auto (docker when an engine answers).",
    ).tag(config=True)
    data_dir = Unicode(
        help="Directory for the database, bundles, wheelhouse and venvs "
        "(default: /var/lib/jupyter-deploy as root, else ~/.local/share/jupyter-deploy)."
    ).tag(config=True)
    cache_dir = Unicode(
        help="Directory for the wheelhouse and venvs, keyed by content and shareable between managers "
        "(default: the data dir)."
    ).tag(config=True)
    base_image = Unicode(
        "", help="Base image for service containers (default python:X.Y-slim, else a locally built one)."
    ).tag(config=True)
    # Sizes and timeouts of HTTP requests: every refusal (413, 431, 504) names the traitlet it hit.
    max_bundle_size = Int(DEFAULT_MAX_BUNDLE_SIZE, help="Largest bundle accepted, in bytes.").tag(config=True)
    max_call_body_size = Int(
        DEFAULT_MAX_CALL_BODY_SIZE, help="Largest body of a call to a service, in bytes (413 above it)."
    ).tag(config=True)
    max_api_body_size = Int(
        DEFAULT_MAX_API_BODY_SIZE, help="Largest body of any other API request (login, tokens, users), in bytes."
    ).tag(config=True)
    max_header_size = Int(
        DEFAULT_MAX_HEADER_SIZE, help="Largest request line plus headers, in bytes (431 above it)."
    ).tag(config=True)
    call_timeout = Float(
        DEFAULT_CALL_TIMEOUT,
        help="Seconds the proxy waits for a service's answer, or for its next part, before answering 504.",
    ).tag(config=True)
    idle_connection_timeout = Float(
        DEFAULT_IDLE_CONNECTION_TIMEOUT,
        help="Seconds a client connection may take to send a request's headers (also between kept-alive requests).",
    ).tag(config=True)
    body_timeout = Float(
        DEFAULT_BODY_TIMEOUT, help="Seconds a client may take to send a request's body, e.g. a bundle upload."
    ).tag(config=True)
    memory_limit = Unicode(
        "1g", help="Memory limit of each service runner, as 512m or 1g: its container's, or on the process runtime "
        "its cgroup's (else an address-space rlimit, see process_limits). Past it the runner is restarted and "
        "the crash reads 'out of memory (limit ...)'."
    ).tag(config=True)
    cpu_limit = Float(
        1.0, help="CPU limit of each service runner, in cores (container, or process runtime cgroup); 0 for none."
    ).tag(config=True)
    process_limits = Enum(
        list(LIMIT_MECHANISMS), default_value="auto",
        help="How the process runtime applies memory_limit and cpu_limit: cgroup (a cgroup v2, else v1, of its own "
        "per runner; the manager must be able to create cgroups), rlimit (an address-space limit, memory only; "
        "it counts reserved address space, so limits under about 512m may keep numpy services from starting), "
        "auto (cgroup when possible, else rlimit) or none.",
    ).tag(config=True)
    pip_timeout = Float(
        PIP_TIMEOUT, help="Seconds one pip run (download, index lookup, venv install) may take before it is "
        "killed and the deploy fails; pip holds the wheelhouse lock meanwhile."
    ).tag(config=True)
    service_log_bytes = Int(
        LOG_ROTATE_BYTES, help="Size past which a process-runtime service.log is moved to service.log.1, "
        "checked every second while the runner runs."
    ).tag(config=True)
    build_log_lines = Int(
        BUILD_LOG_LINES, help="Build log lines a deploy's event stream keeps (the last ones; a marker counts the rest)."
    ).tag(config=True)
    deploy_task_keep = Float(
        DEPLOY_TASK_KEEP, help="Seconds a finished deploy keeps its whole event stream; after that only its result."
    ).tag(config=True)
    drain_grace = Float(
        DRAIN_GRACE, help="Seconds calls in flight to a version that leaves service (main and previous main moved "
        "on) get to finish before it is stopped."
    ).tag(config=True)
    health_timeout = Float(
        DEFAULT_HEALTH_TIMEOUT, help="Seconds a new version has to answer its health check."
    ).tag(config=True)
    monitor_keep = Int(
        DEFAULT_MONITOR_KEEP, help="Monitored calls kept per service; older ones are dropped."
    ).tag(config=True)
    monitor_body_limit = Int(
        DEFAULT_MONITOR_BODY_LIMIT, help="Bytes of each monitored call's request and answer that are stored; "
        "longer ones are cut, with a note of how much is missing."
    ).tag(config=True)
    admin_password = Unicode(help="Admin password; generated and printed once when empty.").tag(config=True)
    smoke_timeout = Float(
        SMOKE_TIMEOUT, help="Seconds one entrypoint's call on the deploy's sample may take in the smoke test "
        "(before the version takes traffic); past it the deploy fails."
    ).tag(config=True)
    secret_key_file = Unicode(
        help=f"File holding the Fernet key secrets are encrypted with, generated (0600) on first start "
        f"(default: {KEY_FILE} in the data dir); ${KEY_ENV} wins over it."
    ).tag(config=True)
    secrets_run_dir = Unicode(
        help="Docker runtime: directory on a tmpfs, visible to the Docker engine at the same path, where each "
        "container's secrets file lives while it exists (default /dev/shm/jupyter-deploy-<instance>)."
    ).tag(config=True)
    login_token_lifetime = Float(
        DEFAULT_LOGIN_TOKEN_LIFETIME, help="Seconds a token from a login (CLI, SDK, dashboard) stays valid; 0 for "
        "no expiry. Expired tokens are removed from the database (see token_cleanup_interval)."
    ).tag(config=True)
    token_cleanup_interval = Float(
        DEFAULT_TOKEN_CLEANUP_INTERVAL, help="Seconds between two removals of expired tokens from the database."
    ).tag(config=True)
    docs_frame_ancestors = Unicode(
        DOCS_FRAME_ANCESTORS,
        help="CSP frame-ancestors of the service docs pages: the JupyterLab sidebar shows them in a frame "
        "from the Jupyter server's origin, which the manager cannot know. Narrow it to that origin "
        "(e.g. 'https://jupyter.example.org'), or set 'none' to forbid framing.",
    ).tag(config=True)
    trusted_proxies = List(
        Unicode(), help="Addresses or networks (CIDR) of reverse proxies in front of the manager. For a request "
        "from one of them, the client's address (which failed logins are limited by) is the last one in "
        "X-Forwarded-For that is not a trusted proxy; from anyone else, X-Forwarded-For is ignored."
    ).tag(config=True)

    aliases = {
        "host": "ManagerApp.host",
        "port": "ManagerApp.port",
        "runtime": "ManagerApp.runtime",
        "data-dir": "ManagerApp.data_dir",
        "cache-dir": "ManagerApp.cache_dir",
        "base-image": "ManagerApp.base_image",
        "log-level": "Application.log_level",
    }

    @default("data_dir")
    def _data_dir_default(self) -> str:
        if os.environ.get("JUPYTER_DEPLOY_DATA_DIR"):
            return os.environ["JUPYTER_DEPLOY_DATA_DIR"]
        # As root, runners run as other users and must pass through the path to their stages: not /root.
        if os.geteuid() == 0:
            return "/var/lib/jupyter-deploy"
        return str(Path.home() / ".local" / "share" / "jupyter-deploy")

    @default("cache_dir")
    def _cache_dir_default(self) -> str:
        return os.environ.get("JUPYTER_DEPLOY_CACHE_DIR", "")

    @default("base_image")
    def _base_image_default(self) -> str:
        return os.environ.get("JUPYTER_DEPLOY_BASE_IMAGE", "")

    @default("admin_password")
    def _admin_password_default(self) -> str:
        return os.environ.get("JUPYTER_DEPLOY_ADMIN_PASSWORD", "")

    def instance_id(self, data_dir: Path) -> str:
        """A short id unique to this data dir, so several managers can share one Docker engine."""
        path = data_dir / "instance"
        if not path.exists():
            path.write_text(secrets.token_hex(4))
        return path.read_text().strip()

    def make_runtime(self, data_dir: Path, instance: str, on_event: Any) -> Runtime:
        """Pick and construct the runtime."""
        cache_dir = Path(self.cache_dir).expanduser().resolve() if self.cache_dir else data_dir
        choice = self.runtime
        if choice == "auto":
            choice = "docker" if docker_answers() else "process"
        if choice == "swarm":
            raise SystemExit("jupyter-deploy-manager: the swarm runtime is not available yet; use docker or process")
        try:
            parse_memory(self.memory_limit)
        except ValueError as exc:
            raise SystemExit(f"jupyter-deploy-manager: --ManagerApp.memory_limit: {exc}") from exc
        if choice == "docker":
            from .runtimes.docker import DockerRuntime

            return DockerRuntime(
                data_dir,
                instance,
                base_image=self.base_image or None,
                memory=self.memory_limit,
                cpus=self.cpu_limit,
                on_event=on_event,
                cache_dir=cache_dir,
                pip_timeout=self.pip_timeout,
                secrets_dir=Path(self.secrets_run_dir) if self.secrets_run_dir else None,
            )
        from .runtimes.process import ProcessRuntime

        return ProcessRuntime(data_dir, instance, on_event=on_event, cache_dir=cache_dir, memory=self.memory_limit,
                              cpus=self.cpu_limit, limits=self.process_limits, pip_timeout=self.pip_timeout,
                              log_rotate_bytes=self.service_log_bytes)

    def start(self) -> None:
        """Start serving until SIGINT/SIGTERM."""
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
        # Everything the manager writes (database, bundles, wheels) is its own unless a runtime opens up
        # exactly what a runner needs: deployed code may run on this host as another user.
        os.umask(0o077)
        data_dir = Path(self.data_dir).expanduser().resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(data_dir, 0o700)
        asyncio.run(self._serve(data_dir))

    async def _serve(self, data_dir: Path) -> None:
        try:
            trusted = trusted_networks(self.trusted_proxies)
        except ValueError as exc:
            raise SystemExit(f"jupyter-deploy-manager: --ManagerApp.trusted_proxies: {exc}") from exc
        store = Store(data_dir / "manager.sqlite")
        auth = Auth(store, login_token_lifetime=self.login_token_lifetime)
        generated = auth.ensure_admin(self.admin_password or None)
        if generated:
            # Printed once; only its hash is stored.
            print(f"jupyter-deploy-manager: created user 'admin' with password: {generated}", flush=True)
        instance = self.instance_id(data_dir)
        holder: dict[str, DeploymentService] = {}
        runtime = self.make_runtime(
            data_dir, instance, lambda *args: holder["d"].on_runtime_event(*args) if "d" in holder else None
        )
        vault = Vault(store, load_key(Path(self.secret_key_file).expanduser() if self.secret_key_file
                                      else data_dir / KEY_FILE))
        deployments = DeploymentService(
            store, auth, runtime, data_dir, self.max_bundle_size, health_timeout=self.health_timeout, vault=vault
        )
        deployments.pipeline.smoke_timeout = self.smoke_timeout
        deployments.monitor_keep = self.monitor_keep
        deployments.monitor_body_limit = self.monitor_body_limit
        deployments.pipeline.build_log_lines = self.build_log_lines
        deployments.pipeline.task_keep = self.deploy_task_keep
        deployments.lifecycle.drain_grace = self.drain_grace
        holder["d"] = deployments
        pool = RunnerPool(call_timeout=self.call_timeout)
        app = make_app(store, auth, deployments, pool, trusted_proxies=trusted,
                       docs_frame_ancestors=self.docs_frame_ancestors)
        limits = Limits(max_header_size=self.max_header_size, max_bundle_size=self.max_bundle_size,
                        max_call_body_size=self.max_call_body_size, max_api_body_size=self.max_api_body_size)
        server = Server(app, limits=limits, xheaders=False, idle_connection_timeout=self.idle_connection_timeout,
                        body_timeout=self.body_timeout)
        server.listen(self.port, self.host)
        print(
            f"jupyter-deploy-manager {__version__} listening on http://{self.host}:{self.port} "
            f"(runtime {runtime.name}, data dir {data_dir})",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        reconcile = asyncio.ensure_future(deployments.reconcile())
        cleanup = asyncio.ensure_future(self._purge_tokens(auth))
        await stop.wait()
        log.info("shutting down")
        server.stop()
        reconcile.cancel()
        cleanup.cancel()
        auth.close()
        await deployments.close()
        await pool.close()
        runtime.close()
        store.close()

    async def _purge_tokens(self, auth: Auth) -> None:
        """Remove expired tokens now and then every ``token_cleanup_interval`` seconds."""
        while True:
            try:
                removed = auth.purge_expired()
                if removed:
                    log.info("removed %d expired token(s)", removed)
            except Exception:  # noqa: BLE001 - a busy or broken database: try again next time
                log.exception("removing expired tokens failed")
            await asyncio.sleep(max(MIN_TOKEN_CLEANUP_INTERVAL, self.token_cleanup_interval))


def build_base_image_command(argv: list[str]) -> int:
    """``jupyter-deploy-manager build-base-image [--python X.Y] [--tag TAG]``."""
    from .baseimage import build_base_image
    from .runtimes.base import host_python

    parser = argparse.ArgumentParser(
        prog="jupyter-deploy-manager build-base-image",
        description="Build a base image for service containers locally from Debian packages (no registry needed).",
    )
    parser.add_argument("--python", default=host_python(), help="Python X.Y of the image (default: this host's)")
    parser.add_argument("--tag", default=None, help="image tag (default jupyter-deploy/python:X.Y)")
    args = parser.parse_args(argv)
    try:
        tag = build_base_image(args.python, tag=args.tag, log=lambda line: print(line, flush=True))
    except Exception as exc:  # noqa: BLE001 - a command-line tool reports, it does not trace
        print(f"build-base-image failed: {exc}", file=sys.stderr)
        return 1
    print(tag)
    return 0


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``jupyter-deploy-manager``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "build-base-image":
        raise SystemExit(build_base_image_command(argv[1:]))
    ManagerApp.launch_instance(argv)


if __name__ == "__main__":
    main()
