"""A manager killed mid-build (SIGKILL) leaves nothing behind once it is started again, on both runtimes.

The orphans a killed build leaves: on the process runtime the venv being built (``venvs/.tmp-*``), on
the docker runtime the build container (labelled with the role ``deps-build``, ``app-build`` or
``source-build`` and the manager's instance). A restarted manager removes them when its runtime starts.
"""

from __future__ import annotations

import hashlib
import signal
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import requests

from jupyter_deploy import bundle as bundle_format
from jupyter_deploy_manager.runtimes.docker import BUILD_ROLES

from ..conftest import passable
from ..harness import CACHE_DIR
from ..harness import wait_for as harness_wait_for

if TYPE_CHECKING:
    from ..harness import ManagerProcess

DEADLINE = 300.0
LABEL = "io.jupyter-deploy"


def wait_for(condition: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    """The harness's wait, with this module's longer deadline (builds are slow)."""
    return harness_wait_for(condition, what, deadline, interval=0.02)


def slow_bundle() -> tuple[bytes, str]:
    """A bundle whose lock no one has built (a never-true marker makes it unique): its build takes seconds."""
    manifest = {
        "name": "slow", "version": None, "python": "3.11", "cloudpickle": "3.1.2", "sample": None,
        # numpy: a big install, so the build is still under way when the manager is killed.
        "requirements": ["numpy==2.4.6", f"jd-unique-{uuid.uuid4().hex[:12]}==1.0; python_version < '3'"],
        "entrypoints": [{"name": "f", "parameters": [], "doc": "", "signature": "()", "returns": None}],
    }
    data = bundle_format.pack(manifest, b"never loaded").data
    return data, hashlib.sha256(data).hexdigest()


def upload(manager: ManagerProcess, data: bytes, sha: str) -> dict[str, Any]:
    """Upload a bundle; the build runs in the background."""
    resp = requests.post(f"{manager.url}/api/services/slow/versions", data=data, timeout=60,
                         headers={**manager.headers(), "X-Bundle-SHA256": sha})
    assert resp.status_code == 202, resp.text
    return resp.json()


def kill(manager: ManagerProcess) -> None:
    """SIGKILL the manager: no clean-up code of its own runs."""
    assert manager.proc is not None
    manager.proc.send_signal(signal.SIGKILL)
    manager.proc.wait(60)
    manager.proc = None


def processes_using(path: Path) -> list[int]:
    """Pids of processes whose command line names ``path`` (a killed manager's build steps run on)."""
    needle = str(path).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def test_a_venv_left_by_a_killed_manager_is_removed_at_start(manager_factory, tmp_path_factory) -> None:
    # A cache of its own, so the venv is really built; the shared wheelhouse, so nothing is downloaded.
    cache = tmp_path_factory.mktemp("cache")
    passable(cache)
    (cache / "wheelhouse").symlink_to(CACHE_DIR / "wheelhouse")
    manager = manager_factory("process", env={"JUPYTER_DEPLOY_CACHE_DIR": str(cache)})
    venvs = cache / "venvs"
    data, sha = slow_bundle()
    first = upload(manager, data, sha)
    unfinished = wait_for(lambda: [p for p in venvs.glob(".tmp-*")] if venvs.is_dir() else [],
                          "the venv build to start")
    kill(manager)
    # The build's own steps may outlive the manager a moment (pip ends when it next writes to its pipe).
    wait_for(lambda: not any(processes_using(p) for p in unfinished), "the killed manager's build steps to end")
    assert all(p.exists() for p in unfinished), "the orphan to clean up is there before the restart"

    manager.start()
    assert not list(venvs.glob(".tmp-*")), "the restarted manager left the killed build's venv"
    version = manager.client().service("slow")["versions"][0]
    assert version["version"] == first["version"] and version["status"] == "failed"
    assert "interrupted" in version["error"]
    # The same lock builds again, from scratch, and nothing unfinished remains.
    again = upload(manager, data, sha)
    events = requests.get(again["events_url"], headers=manager.headers(), timeout=DEADLINE).text
    assert "built in" in events, events
    assert not list(venvs.glob(".tmp-*"))
    assert [p for p in venvs.iterdir() if not p.name.startswith(".")], "no venv was built"


def test_a_build_container_left_by_a_killed_manager_is_removed_at_start(manager_factory, docker_client) -> None:
    manager = manager_factory("docker")
    instance = (manager.data_dir / "instance").read_text().strip()

    def build_containers() -> list[Any]:
        found = docker_client.containers.list(all=True, filters={"label": f"{LABEL}.instance={instance}"})
        return [c for c in found if c.labels.get(f"{LABEL}.role") in BUILD_ROLES]

    data, sha = slow_bundle()
    upload(manager, data, sha)
    orphans = wait_for(build_containers, "a build container to start")
    kill(manager)
    # It runs on, or exits, without the manager: either way nobody will ever commit or remove it.
    assert [c.name for c in build_containers()] == [c.name for c in orphans]

    manager.start()
    assert not build_containers(), "the restarted manager left the killed build's container"
    version = manager.client().service("slow")["versions"][0]
    assert version["status"] == "failed" and "interrupted" in version["error"]
