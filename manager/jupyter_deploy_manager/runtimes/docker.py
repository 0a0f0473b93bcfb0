"""Docker runtime: base -> shared dependency image -> small app image; one container per version."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import secrets
import shlex
import shutil
import tarfile
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import docker
import docker.errors
from docker.types import LogConfig, Mount

from jupyter_deploy_contract import SECRETS_FILE_ENV

from ..baseimage import resolve_base_image
from ..builder import CONTRACT_PACKAGE, PIP_TIMEOUT, Wheelhouse, install_command, stage_runner
from .base import (
    LABEL,
    PERMANENT_EXITS,
    RUNNER_PORT,
    Backoff,
    Endpoint,
    EventSink,
    Lock,
    LogSink,
    Runtime,
    RuntimeError_,
    VersionSpec,
)


EVENTS_RECONNECT_DELAY = 1.0
"""Seconds before watching Docker's events again after the stream broke (engine restart)."""

SOURCE_BUILD_TIMEOUT = 900.0
"""Seconds a source build container may run before it is killed and the deploy fails."""

SOURCE_BUILD_MEMORY = "2g"
"""Memory limit of a source build container."""

SOURCE_BUILD_PIDS = 512
"""Process limit of a source build container (compilers fork a lot)."""

CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
"""The host's CA bundle, copied into build containers so they trust what the host trusts (TLS proxies)."""

_PASSED_TO_BUILDS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                     "http_proxy", "https_proxy", "no_proxy")

RUNNER_UID = 10001
"""Unprivileged uid the runner runs as inside its container."""

SECRETS_TMPFS = "/dev/shm"
"""The host's tmpfs, where secrets files live while their containers exist (``ManagerApp.secrets_run_dir``)."""

SECRETS_MOUNT = "/run/jupyter-deploy"
"""Where a container sees its secrets directory (read-only)."""

SECRETS_FILE = "secrets.json"
"""The file in it: a JSON object of secret name -> value, read by the runner before the payload loads."""

DEPS_REPO = "jupyter-deploy/deps"
"""Repository of the dependency images, tagged by lock hash and shared by every instance."""

_PATH = "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_L_INSTANCE = f"{LABEL}.instance"
_L_SERVICE = f"{LABEL}.service"
_L_VERSION = f"{LABEL}.version"
_L_ROLE = f"{LABEL}.role"

BUILD_ROLES = ("deps-build", "app-build", "source-build")
"""Roles of the throwaway containers of a build; any of this instance left at start is a killed manager's."""


def _safe(text: str, pattern: str = r"[^A-Za-z0-9_.-]") -> str:
    """``text`` with characters Docker refuses in names replaced, plus a hash if anything changed."""
    clean = re.sub(pattern, "_", text)
    if clean != text:
        clean += "-" + hashlib.sha1(text.encode()).hexdigest()[:6]
    return clean


class DockerRuntime(Runtime):
    """Runs each version as a locked-down container on a per-instance internal network."""

    name = "docker"

    def __init__(self, data_dir: Path, instance: str, base_image: str | None = None, memory: str = "512m",
                 cpus: float = 1.0, on_event: EventSink | None = None, client: Any = None,
                 cache_dir: Path | None = None, pip_timeout: float | None = PIP_TIMEOUT,
                 secrets_dir: Path | None = None) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", instance):
            raise ValueError(f"instance {instance!r} must be 1-40 chars of a-z, 0-9, '_' or '-'")
        self.data_dir = Path(data_dir)
        self.instance = instance
        self.base_image = base_image
        self.memory = memory
        self.cpus = cpus
        self.on_event = on_event
        self.client = client if client is not None else docker.from_env(timeout=300)
        # Wheels are keyed by content, so several managers may share them.
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.data_dir
        self.wheelhouse = Wheelhouse(self.cache_dir / "wheelhouse", pip_timeout)
        self.network_name = f"jd-{instance}"
        # Secret values reach a container as a file in a directory mounted read-only, on a tmpfs of the
        # host: never in the container's configuration (docker inspect), an image layer or the data dir.
        self.secrets_dir = Path(secrets_dir) if secrets_dir is not None else default_secrets_dir(instance, data_dir)
        self.app_repo = f"jupyter-deploy/app-{instance}"
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # Containers we are stopping on purpose: their "die" event is not a crash.
        self._stopping: set[str] = set()
        self._crashed: set[str] = set()
        # The manager restarts crashed runners itself (Docker's on-failure count never resets and
        # `docker kill` is never restarted): per container, its backoff and the pending restart.
        self._backoff: dict[str, Backoff] = {}
        self._restarts: dict[str, threading.Timer] = {}
        self._oom: set[str] = set()
        self._events_stream: Any = None
        self._events_thread: threading.Thread | None = None
        self._closed = False
        self.remove_build_leftovers()
        self.remove_orphan_secrets()
        self._watch_events()

    def remove_orphan_secrets(self) -> list[str]:
        """Delete secrets directories no container of this instance mounts (their container went outside us)."""
        if not self.secrets_dir.is_dir():
            return []
        mounted = {self._secrets_source(c) for c in self.client.containers.list(
            all=True, filters={"label": [f"{_L_INSTANCE}={self.instance}", f"{_L_ROLE}=service"]})}
        removed = []
        for entry in self.secrets_dir.iterdir():
            if entry.is_dir() and entry not in mounted:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        return removed

    def remove_build_leftovers(self) -> list[str]:
        """Remove this instance's build containers, running or exited; return their names.

        Called at construction, before any build of this manager: they belong to a manager of this
        instance (this data dir) that was killed mid-build and can never finish its work.
        """
        found = self.client.containers.list(
            all=True, filters={"label": [f"{_L_INSTANCE}={self.instance}"]})
        removed = []
        for container in found:
            if container.labels.get(_L_ROLE) in BUILD_ROLES:
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True)
                    removed.append(container.name)
        return removed

    # -- names ---------------------------------------------------------------------------

    def container_name(self, spec: VersionSpec) -> str:
        """Container name of a version: ``jd-<instance>-<service>-<version>`` (plus its generation after the first)."""
        generation = f"~{spec.generation}" if spec.generation else ""
        return f"jd-{self.instance}-" + _safe(f"{spec.service}-{spec.version}{generation}")

    def image_tag(self, spec: VersionSpec) -> str:
        """App image of a version: ``jupyter-deploy/app-<instance>:<service>-<version>``."""
        tag = _safe(f"{spec.service}-{spec.version}")
        if len(tag) > 128:
            tag = tag[:120] + hashlib.sha1(tag.encode()).hexdigest()[:8]
        return f"{self.app_repo}:{tag}"

    @staticmethod
    def deps_tag(lock: Lock) -> str:
        """Dependency image of a lock, shared across services, versions and instances."""
        return f"{DEPS_REPO}:{lock.hash}"

    def _labels(self, spec: VersionSpec | None = None, role: str = "service") -> dict[str, str]:
        labels = {_L_INSTANCE: self.instance, _L_ROLE: role}
        if spec is not None:
            labels.update({_L_SERVICE: spec.service, _L_VERSION: spec.version, f"{LABEL}.lock": spec.lock.hash})
        return labels

    @contextlib.contextmanager
    def _keyed(self, key: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield

    # -- docker helpers ------------------------------------------------------------------

    def _container(self, name: str) -> Any:
        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound:
            return None

    def _image(self, ref: str) -> Any:
        try:
            return self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None

    def _network(self) -> Any:
        """The instance's internal bridge: no route out, no container-to-container traffic."""
        with self._keyed("network"):
            found = self.client.networks.list(names=[self.network_name])
            for net in found:
                if net.name == self.network_name:
                    return net
            try:
                return self.client.networks.create(
                    self.network_name, driver="bridge", internal=True, check_duplicate=True,
                    options={"com.docker.network.bridge.enable_icc": "false"},
                    labels={_L_INSTANCE: self.instance, _L_ROLE: "network"},
                )
            except docker.errors.APIError as exc:
                # Another manager process of this instance won the race.
                if exc.status_code == 409:
                    return self.client.networks.get(self.network_name)
                raise

    # -- build ---------------------------------------------------------------------------

    def build(self, spec: VersionSpec, log: LogSink) -> None:
        """Ensure wheels, the shared dependency image and this version's app image."""
        base = resolve_base_image(spec.lock.python, self.base_image, self.client)
        log(f"base image {base}")
        self.wheelhouse.ensure(spec.lock, log, self._build_sources)
        deps = self._ensure_deps(spec.lock, base, log)
        started = time.monotonic()
        self._build_app(spec, deps)
        log(f"built image {self.image_tag(spec)} in {time.monotonic() - started:.2f} s")

    def _build_sources(self, lock: Lock, reqs: list[Any], out: Path, log: LogSink) -> None:
        """Build wheels of ``reqs`` in a throwaway container: unprivileged, no socket, no host mounts."""
        base = resolve_base_image(lock.python, self.base_image, self.client)
        files: dict[str, bytes] = {}
        specs: list[str] = []
        for req in reqs:
            url = getattr(req, "url", None)
            if url and url.startswith("file://"):
                # The container sees no host path: a local archive is copied in, never mounted.
                source = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))
                if not source.is_file():
                    raise RuntimeError_(f"requirement {req} names {source}, which is not a file on the manager's host")
                files[f"src/{source.name}"] = source.read_bytes()
                specs.append(f"{req.name} @ file:///tmp/build/src/{source.name}")
            else:
                specs.append(str(req))
        ca = next((Path(p) for p in CA_BUNDLES if Path(p).is_file()), None)
        if ca is not None:
            files["ca.pem"] = ca.read_bytes()
        env = {"HOME": "/tmp/build", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_PROGRESS_BAR": "off",
               "PIP_NO_CACHE_DIR": "1", "PYTHONUNBUFFERED": "1", "PIP_DEFAULT_TIMEOUT": "60",
               **({"PIP_CERT": "/tmp/build/ca.pem", "SSL_CERT_FILE": "/tmp/build/ca.pem"} if ca else {}),
               **{k: v for k, v in os.environ.items() if k in _PASSED_TO_BUILDS and not v.startswith("file:")}}
        script = ("set -e; python3 -m venv /tmp/build/venv; "
                  + shlex.join(["/tmp/build/venv/bin/pip", "wheel", "--no-deps", "--use-pep517",
                                "--wheel-dir", "/tmp/build/out", *specs]))
        log(f"building {', '.join(specs)} from source in an isolated container (uid {RUNNER_UID}, no host mounts)")
        container = self.client.containers.create(
            base, ["/bin/sh", "-c", script], user=str(RUNNER_UID), working_dir="/tmp/build", environment=env,
            cap_drop=["ALL"], security_opt=["no-new-privileges"], mem_limit=SOURCE_BUILD_MEMORY,
            memswap_limit=SOURCE_BUILD_MEMORY, pids_limit=SOURCE_BUILD_PIDS,
            labels={_L_INSTANCE: self.instance, _L_ROLE: "source-build"},
        )
        timer = threading.Timer(SOURCE_BUILD_TIMEOUT, lambda: _kill_quietly(container))
        try:
            container.put_archive("/tmp", _build_tar(files))
            container.start()
            timer.start()
            tail = _stream_logs(container, log)
            code = container.wait().get("StatusCode", -1)
            if code != 0:
                timed_out = not timer.is_alive()
                why = f"ran over {SOURCE_BUILD_TIMEOUT:.0f} s" if timed_out else f"exit {code}"
                raise RuntimeError_(f"building {', '.join(specs)} from source failed ({why}):\n" + "\n".join(tail))
            stream, _ = container.get_archive("/tmp/build/out")
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream)), mode="r:") as tar:
                for member in tar.getmembers():
                    name = Path(member.name).name
                    # Only regular wheel files, written by name: nothing the build made escapes ``out``.
                    if member.isfile() and name.endswith(".whl") and "/" not in name:
                        data = tar.extractfile(member)
                        if data is not None:
                            (out / name).write_bytes(data.read())
        finally:
            timer.cancel()
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)

    def _ensure_deps(self, lock: Lock, base: str, log: LogSink) -> str:
        tag = self.deps_tag(lock)
        if self._image(tag) is not None:
            log(f"reusing dependency image {tag}")
            return tag
        locks = self.cache_dir / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with self._keyed(f"deps-{lock.hash}"), open(locks / f"deps-{lock.hash}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            if self._image(tag) is not None:
                log(f"reusing dependency image {tag}")
                return tag
            self._build_deps(lock, base, tag, log)
        return tag

    def _build_deps(self, lock: Lock, base: str, tag: str, log: LogSink) -> None:
        wheels = self.wheelhouse.wheels(lock)
        if wheels is None:
            raise RuntimeError_(f"wheelhouse lost the wheels of lock {lock.hash}; build again")
        pip = shlex.join(["/opt/venv/bin/pip", *install_command("/wheels", wheels)])
        script = f"set -e; python3 -m venv /opt/venv; {pip}"
        name = f"jd-{self.instance}-deps-{lock.hash}"
        stale = self._container(name)
        if stale is not None:
            stale.remove(force=True)
        started = time.monotonic()
        log(f"building dependency image {tag} from {base} ({len(wheels)} wheels)")
        # The wheelhouse is bind-mounted, so wheels are read but never land in a layer.
        container = self.client.containers.create(
            base, ["/bin/sh", "-c", script], name=name, network_disabled=True,
            labels={_L_INSTANCE: self.instance, _L_ROLE: "deps-build"},
            volumes={str(self.wheelhouse.root.resolve()): {"bind": "/wheels", "mode": "ro"}},
        )
        try:
            container.start()
            tail = _stream_logs(container, log)
            code = container.wait().get("StatusCode", -1)
            if code != 0:
                raise RuntimeError_(f"installing the requirements into {tag} failed (exit {code}):\n" + "\n".join(tail))
            repo, _, hash_ = tag.rpartition(":")
            container.commit(repository=repo, tag=hash_, changes=[
                f"ENV PATH={_PATH}",
                # The builder's labels must not make a shared image look like one instance's.
                f'LABEL {_L_INSTANCE}="" {_L_ROLE}=deps {LABEL}.lock={lock.hash} {LABEL}.python={lock.python}',
                'CMD ["python3"]',
            ])
        finally:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
        log(f"built dependency image {tag} in {time.monotonic() - started:.1f} s")

    def _build_app(self, spec: VersionSpec, deps: str) -> None:
        """Commit runner + bundle on top of the deps image: one small layer, no Dockerfile round trip."""
        tag = self.image_tag(spec)
        old = self._image(tag)
        data = _app_tar(spec.bundle_dir)
        container = self.client.containers.create(
            deps, ["true"], network_disabled=True, labels=self._labels(spec, role="app-build"),
        )
        try:
            container.put_archive("/", data)
            repo, _, version_tag = tag.rpartition(":")
            cmd = ["/opt/venv/bin/python", "-m", "jupyter_deploy_runner", "--bundle", "/app/bundle",
                   "--host", "0.0.0.0", "--port", str(RUNNER_PORT)]
            container.commit(repository=repo, tag=version_tag, changes=[
                f"USER {RUNNER_UID}",
                "WORKDIR /app",
                # HOME on the tmpfs: libraries that want a config dir must not hit the read-only root.
                f"ENV PYTHONPATH=/app PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp PATH={_PATH}",
                f"EXPOSE {RUNNER_PORT}",
                f"LABEL {_L_ROLE}=app",
                "CMD " + json.dumps(cmd),
            ])
        finally:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
        if old is not None:
            new = self._image(tag)
            if new is not None and new.id != old.id:
                with contextlib.suppress(docker.errors.APIError):
                    self.client.images.remove(old.id)

    # -- run -----------------------------------------------------------------------------

    def start(self, spec: VersionSpec) -> Endpoint:
        """Start (or reuse, or create) the version's container; return its IP and the runner port."""
        name = self.container_name(spec)
        tag = self.image_tag(spec)
        with self._keyed(name):
            image = self._image(tag)
            if image is None:
                raise RuntimeError_(f"image {tag} is missing: build {spec.service} version {spec.version} first")
            container = self._container(name)
            if container is not None and not self._current(container, image, spec):
                # Rebuilt since the container was made (it runs stale code), or made with another environment.
                self._drop_secrets(container)
                container.remove(force=True)
                container = None
            if container is None:
                container = self._create(spec, name, tag)
            self._stopping.discard(name)
            self._crashed.discard(name)
            self._cancel_restart(name)
            self._backoff[name] = Backoff(started=time.time())
            if container.status == "paused":
                container.unpause()
            elif container.status in ("created", "exited", "dead"):
                self._write_secrets(container, spec)
                container.start()
            return self._wait_endpoint(container)

    def _environment(self, spec: VersionSpec) -> dict[str, str]:
        """The container's configured variables: the plain ones, and where the secrets file is (not what it holds)."""
        env = dict(spec.env)
        if spec.secrets:
            env[SECRETS_FILE_ENV] = f"{SECRETS_MOUNT}/{SECRETS_FILE}"
        return env

    def _current(self, container: Any, image: Any, spec: VersionSpec) -> bool:
        """Whether an existing container runs this image with this environment (and a secrets mount if needed)."""
        if container.attrs.get("Image") != image.id:
            return False
        configured = set((container.attrs.get("Config") or {}).get("Env") or [])
        if not {f"{k}={v}" for k, v in self._environment(spec).items()} <= configured:
            return False
        return bool(spec.secrets) == (self._secrets_source(container) is not None)

    @staticmethod
    def _secrets_source(container: Any) -> Path | None:
        """The host directory mounted as the container's secrets directory, if it has one."""
        for mount in container.attrs.get("Mounts") or []:
            if mount.get("Destination") == SECRETS_MOUNT and mount.get("Source"):
                return Path(mount["Source"])
        return None

    def _write_secrets(self, container: Any, spec: VersionSpec) -> None:
        """Put the secret values where the container's runner reads them at start: a private file on a tmpfs."""
        source = self._secrets_source(container)
        if source is None:
            return
        self.secrets_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.secrets_dir, 0o711)
        source.mkdir(exist_ok=True)
        as_root = os.geteuid() == 0
        path = source / SECRETS_FILE
        tmp = source / f".{SECRETS_FILE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400 if as_root else 0o444)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(spec.secrets, fh)
            if as_root:
                # Readable by the container's runner uid alone; without root the directory's unguessable
                # name (0711 above it, never listed) is what keeps other users out.
                os.chown(tmp, RUNNER_UID, RUNNER_UID)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if as_root:
            os.chown(source, RUNNER_UID, RUNNER_UID)
        os.chmod(source, 0o500 if as_root else 0o711)

    def _clear_secrets(self, container: Any) -> None:
        """A stopped container needs no secret values: start() writes them again."""
        source = self._secrets_source(container)
        if source is not None:
            with contextlib.suppress(FileNotFoundError):
                (source / SECRETS_FILE).unlink()

    def _drop_secrets(self, container: Any) -> None:
        """Delete a container's secrets directory (before the container goes)."""
        source = self._secrets_source(container)
        if source is not None and source.parent == self.secrets_dir:
            shutil.rmtree(source, ignore_errors=True)

    def _create(self, spec: VersionSpec, name: str, tag: str) -> Any:
        network = self._network()
        mounts = []
        if spec.secrets:
            # A name nobody can guess: without root the file in it is world-readable (see _write_secrets).
            source = self.secrets_dir / secrets.token_hex(16)
            self.secrets_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.secrets_dir, 0o711)
            source.mkdir(mode=0o700)
            mounts.append(Mount(SECRETS_MOUNT, str(source), type="bind", read_only=True))
        return self.client.containers.create(
            tag, name=name, labels=self._labels(spec), network=network.name, hostname=_safe(spec.service)[:63],
            environment=self._environment(spec), mounts=mounts,
            mem_limit=self.memory, memswap_limit=self.memory, nano_cpus=int(self.cpus * 1e9), pids_limit=256,
            # No Docker restart policy: the manager's event watcher restarts with backoff and no lifetime cap.
            restart_policy={"Name": "no"},
            cap_drop=["ALL"], security_opt=["no-new-privileges"], read_only=True, user=str(RUNNER_UID),
            tmpfs={"/tmp": "rw,nosuid,nodev,size=64m"},
            # tini as PID 1 forwards SIGTERM, so `stop` does not wait out the kill timeout.
            init=True,
            log_config=LogConfig(type="json-file", config={"max-size": "10m", "max-file": "3"}),
        )

    def _ip(self, container: Any) -> str | None:
        nets = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        ip = (nets.get(self.network_name) or {}).get("IPAddress")
        return ip or None

    def _wait_endpoint(self, container: Any, timeout: float = 10.0) -> Endpoint:
        deadline = time.monotonic() + timeout
        while True:
            container.reload()
            ip = self._ip(container)
            if ip:
                return Endpoint(ip, RUNNER_PORT)
            if time.monotonic() > deadline:
                last = container.logs(tail=5).decode(errors="replace").strip()
                raise RuntimeError_(
                    f"container {container.name} did not come up (status {container.status})"
                    + (f":\n{last}" if last else "")
                )
            time.sleep(0.1)

    def stop(self, spec: VersionSpec) -> None:
        """Stop the container; it stays, so ``start`` brings it back quickly."""
        name = self.container_name(spec)
        with self._keyed(name):
            container = self._container(name)
            if container is None:
                return
            self._stopping.add(name)
            self._cancel_restart(name)
            if container.status in ("running", "restarting", "paused"):
                container.stop(timeout=5)
            self._clear_secrets(container)

    def remove(self, spec: VersionSpec, keep_image: bool = False) -> None:
        """Delete the container and, unless ``keep_image``, the app image (never the shared deps image)."""
        name = self.container_name(spec)
        with self._keyed(name):
            container = self._container(name)
            self._stopping.add(name)
            self._cancel_restart(name)
            if container is not None:
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True)
                self._drop_secrets(container)
            if not keep_image:
                with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.NotFound):
                    self.client.images.remove(self.image_tag(spec))

    def state(self, spec: VersionSpec) -> str:
        """running, exited (also while Docker waits to restart a crashed runner), or missing."""
        container = self._container(self.container_name(spec))
        if container is None:
            return "missing"
        # "restarting" is a runner that just died: reporting it as running would make a
        # deploy wait out its health timeout instead of showing the runner's error.
        return "running" if container.status == "running" else "exited"

    def usage(self, spec: VersionSpec) -> dict[str, float] | None:
        """Memory and CPU time of the container, from one stats sample."""
        container = self._container(self.container_name(spec))
        if container is None or container.status != "running":
            return None
        try:
            stats = container.stats(stream=False, one_shot=True)
        except docker.errors.APIError:
            return None
        memory = (stats.get("memory_stats") or {}).get("usage") or 0
        cpu_ns = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0
        return {"memory_mb": round(memory / 2**20, 1), "cpu_seconds": round(cpu_ns / 1e9, 2)}

    def endpoint(self, spec: VersionSpec) -> Endpoint | None:
        """The container's address on the internal network while it runs."""
        container = self._container(self.container_name(spec))
        if container is None or container.status != "running":
            return None
        ip = self._ip(container)
        return Endpoint(ip, RUNNER_PORT) if ip else None

    def logs(self, spec: VersionSpec, tail: int = 200) -> str:
        """The container's last ``tail`` log lines (stdout and stderr)."""
        container = self._container(self.container_name(spec))
        if container is None:
            return ""
        return container.logs(stdout=True, stderr=True, tail=tail).decode(errors="replace")

    def follow(self, spec: VersionSpec, stop: threading.Event) -> Iterator[str]:
        """New log lines of the container, polled with timestamps so a stop is noticed quickly."""
        since = time.time()
        seen: set[str] = set()
        while not stop.is_set():
            container = self._container(self.container_name(spec))
            if container is not None:
                raw = container.logs(stdout=True, stderr=True, timestamps=True, since=since)
                newest = since
                for line in raw.decode(errors="replace").splitlines():
                    stamp, _, text = line.partition(" ")
                    if stamp in seen:
                        continue
                    seen.add(stamp)
                    newest = max(newest, _parse_stamp(stamp) or newest)
                    yield text
                # Lines at the boundary second come again next time; their stamps are remembered.
                if newest > since:
                    since = newest
                    seen = {s for s in seen if (_parse_stamp(s) or 0) >= since - 1}
            stop.wait(0.3)

    def managed(self) -> list[tuple[str, str]]:
        """(service, version) of every container of this instance, running or not."""
        found = self.client.containers.list(
            all=True, filters={"label": [f"{_L_INSTANCE}={self.instance}", f"{_L_ROLE}=service"]}
        )
        return sorted((c.labels[_L_SERVICE], c.labels[_L_VERSION]) for c in found)

    def container_for(self, spec: VersionSpec) -> Any:
        """The docker-py container of a version, or None (for inspection)."""
        return self._container(self.container_name(spec))

    def purge(self) -> None:
        """Remove every container, app image and the network of this instance (not shared deps images)."""
        for container in self.client.containers.list(all=True, filters={"label": f"{_L_INSTANCE}={self.instance}"}):
            self._stopping.add(container.name)
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        for image in self.client.images.list(name=self.app_repo):
            for ref in image.tags:
                with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
                    self.client.images.remove(ref, force=True)
        for net in self.client.networks.list(names=[self.network_name]):
            if net.name == self.network_name:
                with contextlib.suppress(docker.errors.NotFound):
                    net.remove()
        shutil.rmtree(self.secrets_dir, ignore_errors=True)

    # -- crash events and restarts ------------------------------------------------------

    def _watch_events(self) -> None:
        self._events_thread = threading.Thread(target=self._pump_events, name=f"jd-docker-events-{self.instance}",
                                               daemon=True)
        self._events_thread.start()

    def _pump_events(self) -> None:
        while not self._closed:
            try:
                # events() streams without a timeout on the shared client's connection pool.
                self._events_stream = self.client.api.events(decode=True, filters={
                    "type": "container", "event": ["die", "start", "oom"],
                    "label": [f"{_L_INSTANCE}={self.instance}", f"{_L_ROLE}=service"],
                })
                for event in self._events_stream:
                    with contextlib.suppress(Exception):  # one odd event must not end the watcher
                        self._on_docker_event(event)
            except Exception:  # the stream broke (close(), or the engine restarted): watch again
                pass
            if not self._closed:
                time.sleep(EVENTS_RECONNECT_DELAY)

    def _emit(self, service: str, version: str, kind: str, message: str) -> None:
        if self.on_event is not None:
            with contextlib.suppress(Exception):
                self.on_event(service, version, kind, message)

    def _on_docker_event(self, event: dict[str, Any]) -> None:
        attrs = (event.get("Actor") or {}).get("Attributes") or {}
        name = attrs.get("name", "")
        service, version = attrs.get(_L_SERVICE, ""), attrs.get(_L_VERSION, "")
        action = event.get("Action") or event.get("status")
        if action == "oom":
            self._oom.add(name)
        elif action == "start" and name in self._crashed:
            self._crashed.discard(name)
            self._emit(service, version, "restarted", "the manager restarted the runner")
        elif action == "die" and name not in self._stopping:
            self._crashed.add(name)
            self._crash(name, service, version, attrs.get("exitCode", "?"))

    def _crash(self, name: str, service: str, version: str, code: str) -> None:
        """Report why a runner died and schedule its restart, unless restarting cannot help."""
        container = self._container(name)
        state = (container.attrs.get("State") or {}) if container is not None else {}
        if name in self._oom or state.get("OOMKilled"):
            self._oom.discard(name)
            why = f"out of memory (limit {self.memory})"
        else:
            why = f"runner exited with code {code}"
            if container is not None:
                last = container.logs(tail=1).decode(errors="replace").strip()
                if last:
                    why += f": {last}"
        exit_code = int(code) if str(code).isdigit() else None
        if exit_code in PERMANENT_EXITS:
            self._emit(service, version, "crashed", why)
            self._emit(service, version, "failed", f"not restarting: {PERMANENT_EXITS[exit_code]}; last: {why}")
            return
        with self._keyed(f"restart-{name}"):
            delay = self._backoff.setdefault(name, Backoff()).crashed(time.time())
            self._cancel_restart(name)
            timer = threading.Timer(delay, self._restart, (name,))
            timer.daemon = True
            self._restarts[name] = timer
            timer.start()
        self._emit(service, version, "crashed", f"{why}; restarting in {delay:.2f} s")

    def _restart(self, name: str) -> None:
        with self._keyed(name):
            self._restarts.pop(name, None)
            if self._closed or name in self._stopping:
                return
            container = self._container(name)
            if container is None or container.status == "running":
                return
            self._backoff.setdefault(name, Backoff()).started = time.time()
            try:
                container.start()
            except docker.errors.APIError as exc:
                labels = container.labels
                # A start that fails (e.g. the image went away) counts as another crash.
                self._crash(name, labels.get(_L_SERVICE, ""), labels.get(_L_VERSION, ""), f"? (start failed: {exc})")

    def _cancel_restart(self, name: str) -> None:
        timer = self._restarts.pop(name, None)
        if timer is not None:
            timer.cancel()

    def close(self) -> None:
        """Stop watching Docker events and restarting runners; containers keep running."""
        self._closed = True
        for name in list(self._restarts):
            self._cancel_restart(name)
        if self._events_stream is not None:
            with contextlib.suppress(Exception):
                self._events_stream.close()
        if self._events_thread is not None:
            self._events_thread.join(timeout=5)


def default_secrets_dir(instance: str, data_dir: Path) -> Path:
    """Where the secrets files of an instance's containers live: on the host's tmpfs (/dev/shm), else the data dir."""
    shm = Path(SECRETS_TMPFS)
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm / f"jupyter-deploy-{instance}"
    return Path(data_dir) / "secrets-run"


def _kill_quietly(container: Any) -> None:
    with contextlib.suppress(docker.errors.APIError):
        container.kill()


def _build_tar(files: dict[str, bytes]) -> bytes:
    """Tar of ``build/`` (owned by the build uid) holding ``files``, for put_archive into /tmp."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs = {"build", "build/out", *(f"build/{Path(n).parent}" for n in files if "/" in n)}
        for name in sorted(dirs):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, RUNNER_UID, RUNNER_UID
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(f"build/{name}")
            info.size, info.mode, info.uid, info.gid = len(data), 0o644, RUNNER_UID, RUNNER_UID
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _stream_logs(container: Any, log: LogSink) -> list[str]:
    """Forward a container's output to ``log`` line by line; return the last lines."""
    tail: list[str] = []
    buf = b""
    for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace").rstrip("\r")
            log(line)
            tail = (tail + [line])[-15:]
    if buf:
        line = buf.decode(errors="replace")
        log(line)
        tail = (tail + [line])[-15:]
    return tail


def _app_tar(bundle_dir: Path) -> bytes:
    """Tar of /app: the runner and contract packages and the bundle's two files, owned by root, world-readable."""
    buf = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="jd-app-") as tmp:
        runner = stage_runner(Path(tmp))
        with tarfile.open(fileobj=buf, mode="w") as tar:
            def add(path: Path, arcname: str) -> None:
                info = tar.gettarinfo(str(path), arcname)
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mode = 0o755 if info.isdir() else 0o644
                if info.isfile():
                    with open(path, "rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)

            add(Path(tmp), "app")
            for package in (runner, runner.parent / CONTRACT_PACKAGE):
                add(package, f"app/{package.name}")
                for path in sorted(package.rglob("*")):
                    add(path, f"app/{package.name}/{path.relative_to(package).as_posix()}")
            add(Path(bundle_dir), "app/bundle")
            for member in ("manifest.json", "payload.pkl"):
                source = Path(bundle_dir) / member
                if not source.is_file():
                    raise RuntimeError_(f"bundle dir {bundle_dir} lacks {member}")
                add(source, f"app/bundle/{member}")
    return buf.getvalue()


def _parse_stamp(stamp: str) -> float | None:
    """Seconds since the epoch of a Docker log timestamp (RFC 3339 with nanoseconds)."""
    import datetime as _dt

    try:
        head, _, frac = stamp.rstrip("Z").partition(".")
        base = _dt.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=_dt.timezone.utc).timestamp()
        return base + float(f"0.{frac or 0}")
    except ValueError:
        return None
