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

import tornado.httpserver
import tornado.web
from traitlets import Enum, Float, Int, Unicode, default
from traitlets.config import Application

from . import __version__
from .api_spec import ApiOpenAPIHandler
from .auth import Auth, LoginLimiter
from .dashboard import STATIC_DIR as DASHBOARD_DIR
from .dashboard import DashboardHandler, DashboardStaticHandler
from .deployments import DEFAULT_HEALTH_TIMEOUT, DEFAULT_MONITOR_KEEP, DeploymentService
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
from .docs import ApiDocsHandler, swagger_ui_dir
from .monitoring import MonitorHandler, UsageHandler
from .proxy import RunnerPool, ServiceProxyHandler, VersionProxyHandler
from .runtimes.base import Runtime
from .store import Store
from .users import PasswordHandler, UserHandler, UsersHandler
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


def make_app(store: Store, auth: Auth, deployments: DeploymentService, pool: RunnerPool) -> tornado.web.Application:
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
        (r"/api/users", UsersHandler),
        (rf"/api/users/{name}", UserHandler),
        (rf"/api/users/{name}/password", PasswordHandler),
        (r"/api/docs", ApiDocsHandler),
        (r"/api/openapi\.json", ApiOpenAPIHandler),
        (r"/static/swagger-ui/(.*)", tornado.web.StaticFileHandler, {"path": str(swagger_ui_dir())}),
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
        jd_login_limiter=LoginLimiter(),
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
    max_bundle_size = Int(512 * 1024 * 1024, help="Largest bundle accepted, in bytes.").tag(config=True)
    memory_limit = Unicode("1g", help="Memory limit of each service container.").tag(config=True)
    cpu_limit = Float(1.0, help="CPU limit of each service container, in cores.").tag(config=True)
    health_timeout = Float(
        DEFAULT_HEALTH_TIMEOUT, help="Seconds a new version has to answer its health check."
    ).tag(config=True)
    monitor_keep = Int(
        DEFAULT_MONITOR_KEEP, help="Monitored calls kept per service; older ones are dropped."
    ).tag(config=True)
    admin_password = Unicode(help="Admin password; generated and printed once when empty.").tag(config=True)

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
            )
        from .runtimes.process import ProcessRuntime

        return ProcessRuntime(data_dir, instance, on_event=on_event, cache_dir=cache_dir)

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
        store = Store(data_dir / "manager.sqlite")
        auth = Auth(store)
        generated = auth.ensure_admin(self.admin_password or None)
        if generated:
            # Printed once; only its hash is stored.
            print(f"jupyter-deploy-manager: created user 'admin' with password: {generated}", flush=True)
        instance = self.instance_id(data_dir)
        holder: dict[str, DeploymentService] = {}
        runtime = self.make_runtime(
            data_dir, instance, lambda *args: holder["d"].on_runtime_event(*args) if "d" in holder else None
        )
        deployments = DeploymentService(
            store, auth, runtime, data_dir, self.max_bundle_size, health_timeout=self.health_timeout
        )
        deployments.monitor_keep = self.monitor_keep
        holder["d"] = deployments
        pool = RunnerPool()
        app = make_app(store, auth, deployments, pool)
        server = tornado.httpserver.HTTPServer(app, max_body_size=self.max_bundle_size + (1 << 20), xheaders=False)
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
        await stop.wait()
        log.info("shutting down")
        server.stop()
        reconcile.cancel()
        await deployments.close()
        await pool.close()
        runtime.close()
        store.close()


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
