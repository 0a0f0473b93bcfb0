"""Process runtime: a venv per lock and one local runner process per version, restarted on crashes."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..builder import (
    CONTRACT_PACKAGE,
    PIP_TIMEOUT,
    PIP_TIMEOUT_SETTING,
    RUNNER_PACKAGE,
    Wheelhouse,
    install_command,
    stage_runner,
)
from .base import (
    OUT_OF_MEMORY_EXIT,
    PERMANENT_EXITS,
    Endpoint,
    EventSink,
    Lock,
    LogSink,
    Runtime,
    RuntimeError_,
    VersionSpec,
    host_python,
    run_streamed,
)
from .limits import Limiter

HOST = "127.0.0.1"
"""Runners listen on loopback only: the manager's proxy is the one way in."""

MAX_QUICK_CRASHES = 5
"""Crashes within QUICK_CRASH_WINDOW seconds of each other after which the monitor gives up."""

QUICK_CRASH_WINDOW = 60.0
"""A process that ran longer than this before dying resets the crash count."""

LOG_ROTATE_BYTES = 10 * 2**20
"""service.log is moved to service.log.1 once it is this big (``ManagerApp.service_log_bytes``), while it runs too."""

LOG_CHECK_EVERY = 5
"""Monitor rounds (of 0.2 s) between two looks at the size of each running version's service.log."""

RUNNER_UID_BASE = 200_000
"""First uid (and gid) given to an isolated runner; each version gets one of its own, which no login uses."""

RUNNER_UID_COUNT = 100_000
"""How many runner uids there are, from RUNNER_UID_BASE on."""

PROBE_TIMEOUT = 20.0
"""Seconds an interpreter gets to say which Python it is."""

# Variables passed to runners; everything else (PYTHONPATH, VIRTUAL_ENV, tokens, the admin password)
# stays with the manager.
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
_BUILD_ENV_KEEP = (*_ENV_KEEP, "HOME", "TMPDIR", "USER", "LOGNAME")

_UNFINISHED_VENV = re.compile(r"\.(?:tmp|old)-([0-9a-f]+)-[0-9a-f]{8}")
"""A venv being built (``.tmp-<lock>-<id>``) or set aside (``.old-...``); left behind when a manager is killed."""


def _interpreters(version: str) -> list[str]:
    found = [sys.executable] if version == host_python() else []
    for candidate in (shutil.which(f"python{version}"), f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        if candidate and candidate not in found and os.path.exists(candidate):
            found.append(candidate)
    return found


def _probe(python: str, code: str, uid: int | None) -> str | None:
    """What ``python -c code`` prints when run as ``uid`` (the manager's own user when None), or None if it fails."""
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=PROBE_TIMEOUT,
                             user=uid, group=uid, extra_groups=[] if uid is not None else None,
                             cwd="/", env={"PATH": os.environ.get("PATH", "")})
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def find_python(version: str, uid: int | None = None) -> str:
    """An interpreter for Python X.Y (the manager's own first), runnable by ``uid`` when one is given."""
    for exe in _interpreters(version):
        # PATH may hold shims (pyenv) that exist but refuse to run, or live where an unprivileged
        # runner cannot reach (under /root): ask the interpreter itself, as the runner would run it.
        said = _probe(exe, "import sys; print('%d.%d' % sys.version_info[:2])", uid)
        if said is not None and said.strip() == version:
            return exe
    if uid is not None:
        raise RuntimeError_(
            f"this version needs Python {version}, and runners run as unprivileged users, who cannot run "
            f"{' or '.join(_interpreters(version)) or f'python{version}'}; install python{version} from the "
            f"system's packages (e.g. /usr/bin/python{version}) or use the docker runtime"
        )
    raise RuntimeError_(
        f"this version needs Python {version} but the manager runs {host_python()} and no working "
        f"python{version} is on its PATH; install python{version} (with venv) or use the docker runtime"
    )


def _clean_env(keep: tuple[str, ...] = _BUILD_ENV_KEEP) -> dict[str, str]:
    return {k: os.environ[k] for k in keep if k in os.environ}


def _blocked_ancestor(path: Path) -> Path | None:
    """The first directory above ``path`` that other users cannot pass through, or None."""
    for parent in [*reversed(path.parents)]:
        if not os.stat(parent).st_mode & 0o001:
            return parent
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # Like the runner (tornado) does: connections of the dead process in TIME_WAIT do not block it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def _tail(path: Path, lines: int) -> str:
    """Last ``lines`` lines of a file, read from its end."""
    if lines <= 0:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            pos = fh.tell()
            data = b""
            while pos > 0 and data.count(b"\n") <= lines:
                step = min(65536, pos)
                pos -= step
                fh.seek(pos)
                data = fh.read(step) + data
    except OSError:
        return ""
    text = data.decode(errors="replace")
    parts = text.splitlines(keepends=True)
    return "".join(parts[-lines:])


def _rotate_in_place(path: Path) -> None:
    """Move a log a runner still appends to into ``<name>.1``: copy it, then empty it where it is.

    The runner writes through a descriptor opened with O_APPEND, so after the truncation its next line
    lands at the start of the emptied file (a rename would leave it writing to the moved one). What is
    written between the copy's last read and the truncation, one system call apart, is lost.
    """
    kept = path.with_suffix(path.suffix + ".1")
    tmp = path.with_suffix(path.suffix + ".1.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(path, "r+b") as src, open(fd, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        src.truncate(0)
    os.replace(tmp, kept)


def _read_from(path: Path, offset: int) -> bytes:
    """A file's bytes from ``offset`` on (nothing when it is gone or shorter)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read()
    except OSError:
        return b""


@dataclass
class _Proc:
    """One version's runner process as the monitor sees it."""

    service: str
    version: str
    key: str
    stage: Path
    python: str
    port: int = 0
    pid: int = 0
    popen: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    wanted: bool = True
    crashes: list[float] = field(default_factory=list)
    restart_at: float | None = None
    uid: int | None = None
    # The runner's own cgroups (memory, cpu) and their OOM-kill count when it started.
    cgroups: tuple[str, ...] = ()
    oom_kills: int = 0
    # The deploy's variables and secret values, in memory only, for this process and its restarts.
    env: dict[str, str] = field(default_factory=dict, repr=False)


class ProcessRuntime(Runtime):
    """Runs each version as a local process on 127.0.0.1 from a venv shared per lock."""

    name = "process"

    def __init__(self, data_dir: Path, instance: str, on_event: EventSink | None = None,
                 cache_dir: Path | None = None, isolate: bool | None = None, memory: str | None = None,
                 cpus: float | None = None, limits: str = "auto", pip_timeout: float | None = PIP_TIMEOUT,
                 log_rotate_bytes: int = LOG_ROTATE_BYTES) -> None:
        self.data_dir = Path(data_dir)
        self.instance = instance
        self.on_event = on_event
        # Wheels and venvs are keyed by content, so several managers may share them.
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.data_dir
        self.wheelhouse = Wheelhouse(self.cache_dir / "wheelhouse", pip_timeout)
        # The same memory and CPU limits as a container: a cgroup per runner, else an address-space rlimit.
        self.memory = memory
        self.limiter = Limiter(instance, memory, cpus, limits)
        self.log_rotate_bytes = log_rotate_bytes
        self.venvs = self.cache_dir / "venvs"
        self.versions = self.data_dir / "versions"
        # A runner runs deployed code: as root it could read the manager's environment (the admin
        # password) and database. Isolated, each version runs as a uid of its own that reaches only its stage.
        self.isolate = os.geteuid() == 0 if isolate is None else isolate
        if self.isolate:
            self._prepare_dirs()
        self._procs: dict[str, _Proc] = {}
        self._table = threading.RLock()
        self._keyed_locks: dict[str, threading.Lock] = {}
        self._log_lock = threading.Lock()
        self._closing = threading.Event()
        self._remove_unfinished_venvs()
        self._adopt_all()
        self._monitor = threading.Thread(target=self._watch, name=f"jd-process-monitor-{instance}", daemon=True)
        self._monitor.start()

    # -- isolation -----------------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        """Lay out the data dir so a runner uid reaches its stage and venv and nothing else."""
        if os.geteuid() != 0:
            raise RuntimeError_("isolated runners need a manager running as root (to start them as other users)")
        for directory in (self.data_dir, self.cache_dir):
            directory.mkdir(parents=True, exist_ok=True)
            # Passable, not listable: a runner finds its own paths and can enumerate nothing.
            os.chmod(directory, 0o711)
        for entry in self.data_dir.iterdir():
            if entry.name not in ("versions", "venvs") and not entry.is_symlink():
                # The database, bundles, wheelhouse and the rest: the manager's alone.
                os.chmod(entry, 0o700 if entry.is_dir() else 0o600)
        self.versions.mkdir(exist_ok=True)
        os.chmod(self.versions, 0o711)
        self.venvs.mkdir(exist_ok=True)
        os.chmod(self.venvs, 0o755)
        for path in (self.versions, self.venvs):
            blocked = _blocked_ancestor(path)
            if blocked is not None:
                raise RuntimeError_(
                    f"runners run as unprivileged users and must reach {path}, but {blocked} lets no other user "
                    f"through (mode {stat.S_IMODE(os.stat(blocked).st_mode):o}); use a data dir such as "
                    f"/var/lib/jupyter-deploy, or allow passing with `chmod o+x {blocked}`"
                )

    def _runner_uid(self, spec: VersionSpec) -> int | None:
        """The uid (and gid) this version's runner runs as, recorded in its stage; None when not isolating."""
        if not self.isolate:
            return None
        stage = self.stage_dir(spec)
        with self._table:
            taken = set()
            for other in self.versions.iterdir() if self.versions.is_dir() else ():
                with contextlib.suppress(OSError, ValueError, KeyError):
                    uid = int(json.loads((other / "spec.json").read_text())["uid"])
                    if other == stage:
                        return uid
                    taken.add(uid)
            for uid in range(RUNNER_UID_BASE, RUNNER_UID_BASE + RUNNER_UID_COUNT):
                if uid not in taken:
                    return uid
        raise RuntimeError_(f"all {RUNNER_UID_COUNT} runner uids are in use; delete old versions")

    def _grant(self, stage: Path, uid: int) -> None:
        """The runner's gid may read its stage; only its home is writable, and only by it."""
        os.chown(stage, 0, uid)
        os.chmod(stage, 0o750)
        for root, dirs, files in os.walk(stage):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
        for private in ("service.log", "service.log.1", "state.json", "spec.json"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(stage / private, 0o600)
        home = stage / "home"
        home.mkdir(exist_ok=True)
        os.chown(home, uid, uid)
        os.chmod(home, 0o700)

    # -- paths ---------------------------------------------------------------------------

    def stage_dir(self, spec: VersionSpec) -> Path:
        """Where a version's bundle, runner copy, state and log live."""
        return self.versions / spec.key

    def venv_dir(self, lock: Lock) -> Path:
        """The venv shared by every version with this lock."""
        return self.venvs / lock.hash

    @contextlib.contextmanager
    def _keyed(self, key: str) -> Iterator[None]:
        with self._table:
            lock = self._keyed_locks.setdefault(key, threading.Lock())
        with lock:
            yield

    # -- build ---------------------------------------------------------------------------

    def build(self, spec: VersionSpec, log: LogSink) -> None:
        """Ensure wheels, the lock's venv and the version's stage directory."""
        uid = self._runner_uid(spec)
        interpreter = find_python(spec.lock.python, uid)
        self.wheelhouse.ensure(spec.lock, log)
        self._ensure_venv(spec.lock, interpreter, log, uid)
        self._stage(spec)
        log(f"staged {spec.service} {spec.version} in {self.stage_dir(spec)}")

    def _usable(self, venv: Path, uid: int | None) -> bool:
        if not (venv / ".complete").exists():
            return False
        if uid is None:
            return True
        # A venv made from an interpreter the runner cannot run (under /root) is rebuilt from one it can.
        return _probe(str(venv / "bin" / "python"), "", uid) is not None

    def _remove_unfinished_venvs(self, held: str | None = None) -> list[str]:
        """Remove venv builds that a killed manager left behind; return their names.

        Only of locks nobody is building: a build holds its lock's flock (maybe in another manager sharing
        the cache dir), so one whose flock is taken is left alone. ``held`` names a lock whose flock the
        caller holds already.
        """
        if not self.venvs.is_dir():
            return []
        unfinished: dict[str, list[Path]] = {}
        for entry in self.venvs.iterdir():
            match = _UNFINISHED_VENV.fullmatch(entry.name)
            if match and (held is None or match.group(1) == held):
                unfinished.setdefault(match.group(1), []).append(entry)
        removed = []
        for lock_hash, entries in unfinished.items():
            with contextlib.ExitStack() as stack:
                if lock_hash != held:
                    fh = stack.enter_context(open(self.venvs / f".{lock_hash}.lock", "w"))
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # being built right now
                for entry in entries:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry.name)
        return removed

    def _ensure_venv(self, lock: Lock, interpreter: str, log: LogSink, uid: int | None = None) -> Path:
        venv = self.venv_dir(lock)
        if self._usable(venv, uid):
            log(f"reusing venv {venv}")
            return venv
        self.venvs.mkdir(parents=True, exist_ok=True)
        with self._keyed(f"venv-{lock.hash}"), open(self.venvs / f".{lock.hash}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            if self._usable(venv, uid):
                log(f"reusing venv {venv}")
                return venv
            wheels = self.wheelhouse.wheels(lock)
            if wheels is None:
                raise RuntimeError_(f"wheelhouse lost the wheels of lock {lock.hash}; build again")
            for name in self._remove_unfinished_venvs(held=lock.hash):
                log(f"removed {name}, an unfinished build of this venv")
            started = time.monotonic()
            tmp = self.venvs / f".tmp-{lock.hash}-{uuid.uuid4().hex[:8]}"
            log(f"creating venv for lock {lock.hash} with {interpreter}")
            try:
                # Without pip of its own: the manager's pip installs into it, so the interpreter needs no
                # ensurepip (a distribution's python may lack it) and the venv holds only the lock.
                self._run([interpreter, "-m", "venv", "--without-pip", str(tmp)], log, "creating the venv")
                pip = [sys.executable, "-m", "pip", "--python", str(tmp / "bin" / "python"),
                       *install_command(str(self.wheelhouse.root.resolve()), wheels)]
                self._run(pip, log, "installing the requirements")
                (tmp / ".complete").write_text(json.dumps({"python": lock.python, "wheels": wheels}))
                if venv.exists():
                    # An interrupted build left a directory without the marker, or the runner cannot use it.
                    # Moved aside first: a runner of another manager may still be running from it.
                    aside = self.venvs / f".old-{lock.hash}-{uuid.uuid4().hex[:8]}"
                    os.rename(venv, aside)
                    shutil.rmtree(aside, ignore_errors=True)
                # Scripts in bin/ keep the temp path in their shebang; runners use `python -m`.
                os.rename(tmp, venv)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            log(f"created venv {venv} in {time.monotonic() - started:.1f} s")
        return venv

    def _run(self, cmd: list[str], log: LogSink, what: str) -> None:
        # The host's pip.conf (index URLs, user installs) must not steer an offline venv install.
        env = dict(_clean_env(), PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONUNBUFFERED="1")
        # Venvs are shared read-only by runners of other uids: world-readable whatever the manager's umask.
        code, tail = run_streamed(cmd, log, env, umask=0o022, timeout=self.wheelhouse.pip_timeout,
                                  limit=PIP_TIMEOUT_SETTING)
        if code != 0:
            raise RuntimeError_(f"{what} failed (exit {code}):\n" + "\n".join(tail))

    def _stage(self, spec: VersionSpec) -> Path:
        stage = self.stage_dir(spec)
        bundle = stage / "bundle"
        bundle.mkdir(parents=True, exist_ok=True)
        for member in ("manifest.json", "payload.pkl"):
            source = Path(spec.bundle_dir) / member
            if not source.is_file():
                raise RuntimeError_(f"bundle dir {spec.bundle_dir} lacks {member}")
            shutil.copyfile(source, bundle / member)
        stage_runner(stage)
        with self._table:  # allocated and recorded at once, so two builds never share a uid
            uid = self._runner_uid(spec)
            (stage / "spec.json").write_text(json.dumps({
                "service": spec.service, "version": spec.version, "key": spec.key, "lock": spec.lock.hash,
                "python": spec.lock.python, "uid": uid,
            }))
        if uid is not None:
            self._grant(stage, uid)
        return stage

    # -- state file ----------------------------------------------------------------------

    def _write_state(self, proc: _Proc, status: str) -> None:
        state = {"service": proc.service, "version": proc.version, "key": proc.key, "pid": proc.pid,
                 "port": proc.port, "python": proc.python, "status": status, "instance": self.instance,
                 "uid": proc.uid, "cgroups": list(proc.cgroups), "time": time.time()}
        path = proc.stage / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    def _read_state(self, stage: Path) -> dict[str, Any] | None:
        try:
            return json.loads((stage / "state.json").read_text())
        except (OSError, ValueError):
            return None

    def _alive(self, proc: _Proc) -> bool:
        if proc.pid <= 0:
            return False
        if proc.popen is not None:
            return proc.popen.poll() is None
        # Not our child (adopted after a manager restart): make sure the pid was not reused.
        try:
            os.kill(proc.pid, 0)
        except OSError:
            return False
        return not _is_zombie(proc.pid) and str(proc.stage / "bundle") in _cmdline(proc.pid)

    def _adopt(self, stage: Path) -> _Proc | None:
        """A still-running process recorded in ``stage``'s state file, now watched by this runtime."""
        state = self._read_state(stage)
        if not state or state.get("status") != "running":
            return None
        proc = _Proc(service=state["service"], version=state["version"], key=state["key"], stage=stage,
                     python=state["python"], port=int(state["port"]), pid=int(state["pid"]), started=time.time(),
                     uid=state.get("uid"), cgroups=tuple(state.get("cgroups") or ()))
        proc.oom_kills = self.limiter.oom_kills(proc.cgroups)
        if not self._alive(proc):
            return None
        with self._table:
            self._procs[proc.key] = proc
        return proc

    def _adopt_all(self) -> None:
        if not self.versions.is_dir():
            return
        for stage in sorted(self.versions.iterdir()):
            if stage.is_dir():
                self._adopt(stage)

    # -- run -----------------------------------------------------------------------------

    def _spawn(self, proc: _Proc) -> None:
        if not proc.port or not _port_free(proc.port):
            proc.port = _free_port()
        log_path = proc.stage / "service.log"
        with self._log_lock, contextlib.suppress(OSError):
            if log_path.stat().st_size > self.log_rotate_bytes:
                os.replace(log_path, log_path.with_suffix(".log.1"))
        try:
            placement = self.limiter.place(proc.key)
        except OSError as exc:
            raise RuntimeError_(f"cannot set the memory and CPU limits of {proc.service} {proc.version}: {exc}") from exc
        proc.cgroups = placement.cgroups
        proc.oom_kills = self.limiter.oom_kills(placement.cgroups)
        cmd = [proc.python, "-m", RUNNER_PACKAGE, "--bundle", str(proc.stage / "bundle"),
               "--host", HOST, "--port", str(proc.port)]
        if placement.address_space is not None:
            # Past an address-space limit an allocation fails inside the runner: it exits, as if OOM-killed.
            cmd.append("--exit-on-memory-error")
        env = dict(_clean_env(_ENV_KEEP), PYTHONPATH=str(proc.stage), PYTHONUNBUFFERED="1",
                   PYTHONDONTWRITEBYTECODE="1", JUPYTER_DEPLOY_INSTANCE=self.instance,
                   **self.limiter.memory_env(placement))
        home = proc.stage / "home"
        home.mkdir(exist_ok=True)
        env.update(HOME=str(home), TMPDIR=str(home), USER="jupyter-deploy-runner", LOGNAME="jupyter-deploy-runner")
        # Under the runtime's own variables: the contract refuses deploys naming those anyway.
        env = {**proc.env, **env}
        if proc.uid is not None:
            # The stage is re-granted at each start: a manager upgrade may have staged it before isolation.
            self._grant(proc.stage, proc.uid)
        confine = self.limiter.preexec(placement, proc.uid)
        ids: dict[str, Any] = {} if proc.uid is None else {"user": proc.uid, "group": proc.uid, "extra_groups": []}
        if confine is not None:
            # The child joins its cgroup (as root) and drops to the runner's uid itself, in that order.
            ids = {"preexec_fn": confine}
        with open(log_path, "ab") as fh:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            fh.write(f"--- {stamp} starting {proc.service} {proc.version} on {HOST}:{proc.port} "
                     f"({self.limiter.describe()})\n".encode())
            fh.flush()
            try:
                # A new session: the runner outlives a manager restart and stop() can signal its group.
                proc.popen = subprocess.Popen(cmd, cwd=proc.stage, env=env, stdin=subprocess.DEVNULL, stdout=fh,
                                              stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                              umask=0o077, **ids)
            except subprocess.SubprocessError as exc:
                raise RuntimeError_(f"cannot start {proc.service} {proc.version} in its cgroup "
                                    f"({self.limiter.describe()}): {exc}") from exc
        proc.pid = proc.popen.pid
        proc.started = time.time()
        proc.restart_at = None
        self._write_state(proc, "running")

    def start(self, spec: VersionSpec) -> Endpoint:
        """Start the version's process, or adopt/return the one already running."""
        stage = self.stage_dir(spec)
        # The table lock is held throughout so the monitor cannot restart an old record meanwhile.
        with self._keyed(spec.key), self._table:
            proc = self._procs.get(spec.key) or self._adopt(stage)
            if proc is not None and proc.wanted and self._alive(proc):
                # Adopted after a manager restart: its environment is known again for the next restart.
                proc.env = {**spec.env, **spec.secrets}
                return Endpoint(HOST, proc.port)
            venv = self.venv_dir(spec.lock)
            if not (venv / ".complete").exists():
                raise RuntimeError_(f"no venv for {spec.service} version {spec.version}: build it first")
            if not (stage / "bundle" / "payload.pkl").is_file() or not all(
                    (stage / package).is_dir() for package in (RUNNER_PACKAGE, CONTRACT_PACKAGE)):
                self._stage(spec)
            old = self._read_state(stage) or {}
            fresh = _Proc(service=spec.service, version=spec.version, key=spec.key, stage=stage,
                          python=str(venv / "bin" / "python"), port=int(old.get("port") or 0),
                          uid=self._runner_uid(spec), env={**spec.env, **spec.secrets})
            self._spawn(fresh)
            self._procs[spec.key] = fresh
            return Endpoint(HOST, fresh.port)

    def _terminate(self, proc: _Proc, timeout: float = 10.0) -> None:
        """SIGTERM the runner's process group, SIGKILL it if it lingers, then whatever it left in its cgroup."""
        self._stop_group(proc, timeout)
        # Like a container, the cgroup is the unit: processes the runner moved to sessions of their own go too.
        self.limiter.kill_rest(proc.cgroups)

    def _stop_group(self, proc: _Proc, timeout: float) -> None:
        if not self._alive(proc):
            if proc.popen is not None:
                proc.popen.poll()
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(proc.pid) == proc.pid:
                    os.killpg(proc.pid, sig)
                else:
                    os.kill(proc.pid, sig)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not self._alive(proc):
                    return
                time.sleep(0.05)

    def _take(self, spec: VersionSpec) -> _Proc | None:
        """The version's process record, marked unwanted so the monitor leaves it alone."""
        with self._table:
            proc = self._procs.get(spec.key)
        if proc is None:
            proc = self._adopt(self.stage_dir(spec))
        if proc is not None:
            with self._table:
                proc.wanted = False
                proc.restart_at = None
        return proc

    def stop(self, spec: VersionSpec) -> None:
        """Stop the version's process; its venv and stage stay for ``start``."""
        with self._keyed(spec.key):
            proc = self._take(spec)
            if proc is None:
                return
            self._terminate(proc)
            self._write_state(proc, "stopped")
            self.limiter.release(proc.cgroups)

    def remove(self, spec: VersionSpec, keep_image: bool = False) -> None:
        """Stop the process and delete its state (and, unless ``keep_image``, its stage); venvs are shared."""
        with self._keyed(spec.key):
            proc = self._take(spec)
            if proc is not None:
                self._terminate(proc)
                self.limiter.release(proc.cgroups)
            with self._table:
                self._procs.pop(spec.key, None)
            stage = self.stage_dir(spec)
            if keep_image:
                (stage / "state.json").unlink(missing_ok=True)
            else:
                shutil.rmtree(stage, ignore_errors=True)

    def retire(self, spec: VersionSpec) -> None:
        """Stop one generation's process and delete its stage: the venv is what generations share."""
        self.remove(spec, keep_image=False)

    def state(self, spec: VersionSpec) -> str:
        """running, exited (started before, not running now) or missing (never started / removed)."""
        with self._table:
            proc = self._procs.get(spec.key)
        if proc is not None and self._alive(proc):
            return "running"
        stage = self.stage_dir(spec)
        if self._read_state(stage) is None:
            return "missing"
        if proc is None and self._adopt(stage) is not None:
            return "running"
        return "exited"

    def endpoint(self, spec: VersionSpec) -> Endpoint | None:
        """127.0.0.1 and the runner's port while it runs."""
        with self._table:
            proc = self._procs.get(spec.key)
        if proc is None or not self._alive(proc):
            return None
        return Endpoint(HOST, proc.port)

    def pid(self, spec: VersionSpec) -> int | None:
        """The runner's pid while it runs (for inspection and tests)."""
        with self._table:
            proc = self._procs.get(spec.key)
        return proc.pid if proc is not None and self._alive(proc) else None

    def usage(self, spec: VersionSpec) -> dict[str, float] | None:
        """Resident memory and CPU time of the runner process, from /proc."""
        pid = self.pid(spec)
        if pid is None:
            return None
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        rss_kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        ticks = os.sysconf("SC_CLK_TCK")
        # utime and stime are fields 14 and 15 of stat; the split above starts at field 3.
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        return {"memory_mb": round(rss_kb / 1024, 1), "cpu_seconds": round(cpu, 2)}

    def logs(self, spec: VersionSpec, tail: int = 200) -> str:
        """The last ``tail`` lines of the version's service.log."""
        return _tail(self.stage_dir(spec) / "service.log", tail)

    def follow(self, spec: VersionSpec, stop: threading.Event) -> Iterator[str]:
        """New lines of the version's service.log as they are written."""
        path = self.stage_dir(spec) / "service.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
        fh = open(path, "rb")
        try:
            fh.seek(0, os.SEEK_END)
            pending = b""
            while not stop.is_set():
                chunk = fh.read(65536)
                if not chunk:
                    stop.wait(0.2)
                    try:
                        current = os.stat(path)
                    except OSError:
                        continue
                    if current.st_ino != os.fstat(fh.fileno()).st_ino:
                        # Moved aside at a restart: finish the old file, then follow the new one from its start.
                        chunk = fh.read()
                        fh.close()
                        fh = open(path, "rb")
                    elif current.st_size < fh.tell():
                        # Rotated while running (copied to .1, then emptied in place): what was written after
                        # our position before the copy is in the copy; then the emptied file from its start.
                        chunk = _read_from(path.with_suffix(path.suffix + ".1"), fh.tell())
                        fh.seek(0)
                    if not chunk:
                        continue
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode(errors="replace")
        finally:
            fh.close()

    def managed(self) -> list[tuple[str, str]]:
        """(service, version) of every version started and not removed, running or not."""
        out = []
        if self.versions.is_dir():
            for stage in self.versions.iterdir():
                state = self._read_state(stage)
                if state:
                    out.append((state["service"], state["version"]))
        return sorted(out)

    # -- monitor -------------------------------------------------------------------------

    def _watch(self) -> None:
        rounds = 0
        while not self._closing.wait(0.2):
            events: list[tuple[str, str, str, str]] = []
            with self._table:
                for proc in list(self._procs.values()):
                    if not proc.wanted:
                        continue
                    try:
                        self._check(proc, events)
                    except Exception as exc:  # the monitor must survive anything one process does
                        events.append((proc.service, proc.version, "crashed", f"monitor error: {exc}"))
                logs = [proc.stage / "service.log" for proc in self._procs.values() if proc.wanted]
            rounds += 1
            if rounds % LOG_CHECK_EVERY == 0:
                # Outside the table lock: copying a big log must not hold up starts and stops.
                for path in logs:
                    with contextlib.suppress(OSError):
                        if path.stat().st_size > self.log_rotate_bytes:
                            with self._log_lock:
                                _rotate_in_place(path)
            for event in events:
                if self.on_event is not None:
                    with contextlib.suppress(Exception):
                        self.on_event(*event)

    def _check(self, proc: _Proc, events: list[tuple[str, str, str, str]]) -> None:
        now = time.time()
        if proc.restart_at is not None:
            if now >= proc.restart_at:
                self._spawn(proc)
                events.append((proc.service, proc.version, "restarted", f"pid {proc.pid} on {HOST}:{proc.port}"))
            return
        if self._alive(proc):
            return
        code = proc.popen.returncode if proc.popen is not None else None
        if now - proc.started > QUICK_CRASH_WINDOW:
            proc.crashes.clear()
        proc.crashes.append(now)
        if code == OUT_OF_MEMORY_EXIT or self.limiter.oom_kills(proc.cgroups) > proc.oom_kills:
            # Killed by the kernel in its cgroup, or a MemoryError at its rlimit: the words docker's runtime uses.
            why = f"out of memory (limit {self.memory})"
        else:
            last = _tail(proc.stage / "service.log", 1).strip()
            why = f"runner exited with code {code}" if code is not None else "runner process disappeared"
            if last:
                why += f": {last}"
        if code in PERMANENT_EXITS or len(proc.crashes) >= MAX_QUICK_CRASHES:
            proc.wanted = False
            self._write_state(proc, "failed")
            events.append((proc.service, proc.version, "crashed", why))
            reason = (f"not restarting: {PERMANENT_EXITS[code]}" if code in PERMANENT_EXITS
                      else f"gave up after {len(proc.crashes)} crashes in a row")
            events.append((proc.service, proc.version, "failed", f"{reason}; last: {why}"))
            return
        delay = 0.25 * 2 ** (len(proc.crashes) - 1)
        proc.restart_at = now + delay
        events.append((proc.service, proc.version, "crashed", f"{why}; restarting in {delay:.2f} s"))

    def close(self) -> None:
        """Stop the monitor; runner processes keep running and are adopted by the next runtime."""
        self._closing.set()
        if self._monitor.is_alive() and threading.current_thread() is not self._monitor:
            self._monitor.join(timeout=5)

    def shutdown_all(self) -> None:
        """Kill every runner process of this data dir (tests, uninstall)."""
        with self._table:
            if self.versions.is_dir():
                for stage in self.versions.iterdir():
                    state = self._read_state(stage)
                    if state and state.get("key") not in self._procs:
                        self._adopt(stage)
            procs = list(self._procs.values())
            for proc in procs:
                proc.wanted = False
                proc.restart_at = None
        for proc in procs:
            self._terminate(proc, timeout=5)
            if (proc.stage / "state.json").exists():
                self._write_state(proc, "stopped")
            self.limiter.release(proc.cgroups)
        self.limiter.release_instance()
