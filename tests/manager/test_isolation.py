"""Deployed code on the process runtime is not the manager: its own uid, a bare environment, only its files."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
import requests

import jupyter_deploy
from jupyter_deploy.progress import Progress

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runners are isolated only when the manager runs as root")


def probe(paths: list) -> dict:
    """What this runner can do to each path (read, write), plus who it runs as and what it was given."""
    import os

    out: dict = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "env": sorted(os.environ)}
    for path in paths:
        can = []
        try:
            if os.path.isdir(path):
                os.listdir(path)
            else:
                with open(path, "rb") as fh:
                    fh.read(1)
            can.append("read")
        except OSError:
            pass
        try:
            if os.path.isdir(path):
                with open(os.path.join(path, ".probe"), "w"):
                    pass
                os.remove(os.path.join(path, ".probe"))
            else:
                with open(path, "ab"):
                    pass
            can.append("write")
        except OSError:
            pass
        out[path] = can
    return out


def deploy(manager, name: str) -> Any:
    """Deploy ``probe`` as ``name``."""
    return jupyter_deploy.deploy(name, [probe], url=manager.url, token=manager.token,
                                 progress=Progress(name, rich=False, stream=io.StringIO()))


def ask(manager, name: str, paths: list[str]) -> dict[str, Any]:
    """Run the probe in service ``name``."""
    resp = requests.post(f"{manager.url}/services/{name}/probe", json={"paths": paths}, headers=manager.headers(),
                         timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    """One process-runtime manager with two services deployed."""
    from tests.harness import ManagerProcess

    started = ManagerProcess(tmp_path_factory.mktemp("isolation"), runtime="process").start()
    try:
        deploy(started, "left")
        deploy(started, "right")
        yield started
    finally:
        started.cleanup()


def test_a_runner_cannot_read_the_managers_secrets_or_database(manager):
    data = manager.data_dir
    stages = data / "versions"
    secrets = [f"/proc/{manager.proc.pid}/environ", str(data / "manager.sqlite"), str(data / "instance"),
               str(data / "bundles"), str(data / "bundles" / "left"), str(data)]
    answer = ask(manager, "left", secrets)
    assert answer["uid"] != 0 and answer["gid"] != 0 and 0 not in answer["groups"]
    for path in secrets:
        assert answer[path] == [], f"the runner can {answer[path]} {path}"
    # The environment holds what a service needs, not the manager's (the admin password among it).
    assert "JUPYTER_DEPLOY_ADMIN_PASSWORD" in os.environ or manager.env["JUPYTER_DEPLOY_ADMIN_PASSWORD"]
    assert not [name for name in answer["env"] if name.startswith("JUPYTER_DEPLOY_") and name != "JUPYTER_DEPLOY_INSTANCE"]
    assert stages.is_dir()


def test_each_version_reaches_its_own_files_only(manager):
    stages = manager.data_dir / "versions"
    left = next(p for p in stages.iterdir() if p.name.startswith("left--"))
    right = next(p for p in stages.iterdir() if p.name.startswith("right--"))
    own = [str(left / "bundle" / "payload.pkl"), str(left / "bundle"), str(left / "home")]
    other = [str(right), str(right / "bundle" / "payload.pkl"), str(right / "home")]
    answer = ask(manager, "left", own + other)
    assert answer[own[0]] == ["read"], "its own payload: readable, never writable"
    assert answer[own[1]] == ["read"]
    assert answer[own[2]] == ["read", "write"], "its home is its scratch space"
    for path in other:
        assert answer[path] == [], f"the left runner can {answer[path]} {path}"
    assert ask(manager, "right", [])["uid"] != answer["uid"], "each version runs as a uid of its own"


def test_the_manager_data_dir_is_private_on_disk(manager):
    data: Path = manager.data_dir
    mode = lambda path: os.stat(path).st_mode & 0o777  # noqa: E731
    assert mode(data) == 0o711, "passable to reach the stages, never listable"
    assert mode(data / "manager.sqlite") & 0o077 == 0
    assert mode(data / "bundles") & 0o077 == 0
