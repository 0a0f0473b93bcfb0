"""Real managers for tests: a subprocess on a free port with its own data dir, cleaned up afterwards."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from jupyter_deploy.client import ManagerClient

from .conftest import free_port, passable

CACHE_DIR = Path(os.environ.get("JUPYTER_DEPLOY_TEST_CACHE", "/tmp/jupyter-deploy-test-cache"))


class ManagerProcess:
    """A ``jupyter-deploy-manager`` subprocess."""

    def __init__(self, workdir: Path, runtime: str = "process", extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.runtime = runtime
        self.password = secrets.token_urlsafe(12)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = extra_args or []
        self.env = dict(os.environ, JUPYTER_DEPLOY_ADMIN_PASSWORD=self.password,
                        JUPYTER_DEPLOY_CACHE_DIR=str(CACHE_DIR), PYTHONUNBUFFERED="1")
        self.env.pop("JUPYTER_DEPLOY_TOKEN", None)
        self.env.pop("JUPYTER_DEPLOY_URL", None)
        if env:
            self.env.update(env)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "manager.log"
        self._token: str | None = None

    def start(self, timeout: float = 60) -> "ManagerProcess":
        """Start the manager and wait for its health check."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        passable(self.workdir)
        cmd = [sys.executable, "-m", "jupyter_deploy_manager.app", "--host", "127.0.0.1", "--port", str(self.port),
               "--runtime", self.runtime, "--data-dir", str(self.data_dir), *self.extra_args]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"manager exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/api/health", timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"manager did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        """What the manager printed."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def token(self) -> str:
        """An admin token, obtained by logging in once."""
        if self._token is None:
            resp = requests.post(f"{self.url}/api/login", json={"username": "admin", "password": self.password}, timeout=30)
            resp.raise_for_status()
            self._token = resp.json()["token"]
        return self._token

    def client(self, token: str | None = None) -> ManagerClient:
        """An SDK client for this manager."""
        return ManagerClient(self.url, token or self.token)

    def headers(self, token: str | None = None) -> dict[str, str]:
        """Authorization headers."""
        return {"Authorization": f"Bearer {token or self.token}"}

    def stop(self) -> None:
        """Stop the manager (its services keep running, as after a crash or an upgrade)."""
        terminate(self.proc)
        self.proc = None

    def cleanup(self) -> None:
        """Stop the manager and everything it started: processes, containers, images, networks."""
        self.stop()
        kill_processes_under(self.data_dir)
        remove_runner_cgroups(self.data_dir)
        instance_file = self.data_dir / "instance"
        if instance_file.exists():
            instance = instance_file.read_text().strip()
            remove_docker_objects(instance)
            # The containers went without the runtime: their secrets files on the host's tmpfs go here.
            from jupyter_deploy_manager.runtimes.docker import default_secrets_dir

            shutil.rmtree(default_secrets_dir(instance, self.data_dir), ignore_errors=True)


def terminate(proc: subprocess.Popen | None) -> None:
    """SIGTERM a child process, then SIGKILL if it has not exited within 30 s."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def kill_processes_under(path: Path) -> None:
    """Kill processes whose command line mentions ``path`` (service runners of a process runtime)."""
    needle = str(path).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass


def remove_runner_cgroups(data_dir: Path, timeout: float = 10.0) -> None:
    """Remove the cgroups the process runtime made for the runners of ``data_dir`` (named in their state files)."""
    from jupyter_deploy_manager.runtimes.limits import Limiter

    leaves = []
    for state in (data_dir / "versions").glob("*/state.json"):
        try:
            leaves += [Path(c) for c in json.loads(state.read_text()).get("cgroups") or ()]
        except (OSError, ValueError):
            continue
    deadline = time.monotonic() + timeout
    for leaf in leaves:
        Limiter.kill_rest([str(leaf)])
        # A killed process leaves its cgroup when the kernel has reaped it, a moment after the signal.
        while leaf.exists() and time.monotonic() < deadline:
            try:
                leaf.rmdir()
            except OSError:
                time.sleep(0.05)
    # The instance's directories, then the one they share with other instances, each if now empty.
    for directory in sorted({leaf.parent for leaf in leaves} | {leaf.parent.parent for leaf in leaves},
                            key=lambda d: -len(d.parts)):
        try:
            directory.rmdir()
        except OSError:
            pass


def remove_docker_objects(instance: str) -> None:
    """Remove containers, app images and networks labelled with a manager instance."""
    try:
        import docker

        client = docker.from_env(timeout=60)
        client.ping()
    except Exception:  # noqa: BLE001 - no engine, nothing to clean
        return
    label = f"io.jupyter-deploy.instance={instance}"
    for container in client.containers.list(all=True, filters={"label": label}):
        container.remove(force=True)
    for image in client.images.list(filters={"label": label}):
        try:
            client.images.remove(image.id, force=True)
        except Exception:  # noqa: BLE001
            pass
    for network in client.networks.list(filters={"label": label}):
        try:
            network.remove()
        except Exception:  # noqa: BLE001
            pass
    client.close()


class JupyterProcess:
    """A real ``jupyter lab`` (or ``jupyter server``) with its own config, data, runtime and login dirs."""

    def __init__(self, workdir: Path, app: str = "lab", extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.root = self.workdir / "notebooks"
        self.deploy_config = self.workdir / "jupyter-deploy"
        self.app = app
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = extra_args or []
        # JUPYTER_CONFIG_DIR is per test; the installed jupyter_server_config.d (sys.prefix) still applies.
        self.env = dict(os.environ, JUPYTER_DEPLOY_CONFIG_DIR=str(self.deploy_config),
                        JUPYTER_CONFIG_DIR=str(self.workdir / "jupyter-config"),
                        JUPYTER_RUNTIME_DIR=str(self.workdir / "runtime"), PYTHONUNBUFFERED="1")
        for name in ("JUPYTER_DEPLOY_TOKEN", "JUPYTER_DEPLOY_URL"):
            self.env.pop(name, None)
        if env:
            self.env.update(env)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / f"jupyter-{app}.log"

    def start(self, timeout: float = 90) -> "JupyterProcess":
        """Start it and wait until its API answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "jupyterlab" if self.app == "lab" else "jupyter_server",
               "--allow-root", "--no-browser", "--ip", "127.0.0.1", "--port", str(self.port),
               "--port-retries", "0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root}"]
        if self.app == "lab":
            # No "get Jupyter news?" toast over the screenshots, and no fetch from the internet for it.
            news = self.workdir / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
            news.parent.mkdir(parents=True, exist_ok=True)
            news.write_text('{"fetchNews": "false", "checkForUpdates": false}')
            cmd += [f"--LabApp.workspaces_dir={self.workdir / 'workspaces'}",
                    f"--LabApp.user_settings_dir={self.workdir / 'settings'}"]
        cmd += self.extra_args
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter {self.app} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/api/status", headers=self.headers(), timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"jupyter {self.app} did not answer within {timeout} s:\n{self.log()}")

    def headers(self) -> dict[str, str]:
        """Jupyter's own authorization header."""
        return {"Authorization": f"token {self.token}"}

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        """Call the jupyter-deploy server extension."""
        kwargs.setdefault("timeout", 120)
        return requests.request(method, f"{self.url}/jupyter-deploy/api/{path}", headers=self.headers(), **kwargs)

    def log(self) -> str:
        """What the server printed."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop the server and its kernels."""
        terminate(self.proc)
        self.proc = None
        kill_processes_under(self.workdir)


def wait_for(predicate: Any, what: str = "condition", timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something true, and return that; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
