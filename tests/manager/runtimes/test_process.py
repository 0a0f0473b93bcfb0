"""ProcessRuntime with real venvs and real runner processes: start, crash, restart, adopt, clean up."""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

from jupyter_deploy_manager.runtimes.base import RuntimeError_, host_python
from jupyter_deploy_manager.runtimes.process import ProcessRuntime, find_python

from tests.conftest import passable
from .support import make_spec, post, wait_for, wait_healthy


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A ProcessRuntime in a fresh data dir; every runner it started is killed afterwards."""
    root = tmp_path_factory.mktemp("process-runtime")
    passable(root)
    instance = "t" + uuid.uuid4().hex[:8]
    events: list[tuple[str, str, str, str]] = []
    holder: dict[str, ProcessRuntime] = {}
    holder["runtime"] = ProcessRuntime(root / "data", instance, on_event=lambda *e: events.append(e))
    pids: list[int] = []
    yield {"holder": holder, "root": root, "events": events, "instance": instance, "pids": pids}
    runtime = holder["runtime"]
    runtime.shutdown_all()
    runtime.close()
    for pid in pids:
        assert not alive(pid), f"runner {pid} survived shutdown_all"


@pytest.fixture(scope="module")
def running(env):
    """The first version built and started."""
    runtime = env["holder"]["runtime"]
    spec = make_spec(env["root"], "sq", "1")
    lines: list[str] = []
    started = time.monotonic()
    runtime.build(spec, lines.append)
    build_s = time.monotonic() - started
    started = time.monotonic()
    endpoint = runtime.start(spec)
    wait_healthy(endpoint.url)
    print(f"\ncold build {build_s:.1f} s, start to healthy {time.monotonic() - started:.2f} s")
    env["pids"].append(runtime.pid(spec))
    return {"spec": spec, "lines": lines, "endpoint": endpoint}


def test_build_start_and_invoke(env, running):
    runtime: ProcessRuntime = env["holder"]["runtime"]
    spec, endpoint = running["spec"], running["endpoint"]
    assert endpoint.host == "127.0.0.1"
    assert runtime.state(spec) == "running"
    assert runtime.endpoint(spec) == endpoint
    assert post(endpoint.url + "/predict", {"x": [1, 2, 3]}) == 14.0
    assert runtime.managed() == [("sq", "1")]
    assert any("Successfully installed" in line for line in running["lines"])
    assert "serving sq" in wait_for(lambda: runtime.logs(spec), what="log lines")
    stage = runtime.stage_dir(spec)
    assert (stage / "jupyter_deploy_runner" / "__main__.py").is_file()
    assert (stage / "bundle" / "payload.pkl").is_file()


def test_runner_env_is_isolated(env, running):
    runtime: ProcessRuntime = env["holder"]["runtime"]
    spec = running["spec"]
    pid = runtime.pid(spec)
    environ = dict(
        item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in item
    )
    assert environ["PYTHONPATH"] == str(runtime.stage_dir(spec))
    assert "VIRTUAL_ENV" not in environ
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[0].decode() == str(runtime.venv_dir(spec.lock) / "bin" / "python")
    assert os.getpgid(pid) == pid  # its own session, so it survives a manager restart
    # The venv sees only the lock's packages, not the manager's.
    probe = os.popen(f"{cmdline[0].decode()} -c 'import importlib.util as u; print(u.find_spec(\"docker\"))'").read()
    assert probe.strip() == "None"


def test_second_build_reuses_venv(env, running):
    runtime: ProcessRuntime = env["holder"]["runtime"]
    spec = make_spec(env["root"], "sq", "2")
    venv = runtime.venv_dir(spec.lock)
    inode = venv.stat().st_ino
    lines: list[str] = []
    started = time.monotonic()
    runtime.build(spec, lines.append)
    assert time.monotonic() - started < 2.0
    assert any(line.startswith("reusing venv") for line in lines), lines
    assert not any("Successfully installed" in line or "Processing" in line for line in lines), lines
    assert venv.stat().st_ino == inode
    assert [p.name for p in runtime.venvs.iterdir() if not p.name.startswith(".")] == [spec.lock.hash]


def test_killed_process_is_restarted(env, running):
    runtime: ProcessRuntime = env["holder"]["runtime"]
    spec = running["spec"]
    old = runtime.pid(spec)
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: (p := runtime.pid(spec)) and p != old and p, what="a new pid")
    env["pids"].append(new)
    endpoint = runtime.endpoint(spec)
    assert endpoint == running["endpoint"]  # same port when it is still free
    wait_healthy(endpoint.url)
    assert post(endpoint.url + "/predict", {"x": [3]}) == 9.0
    kinds = [e[2] for e in env["events"] if e[:2] == ("sq", "1")]
    assert kinds[-2:] == ["crashed", "restarted"]
    assert "code -9" in next(e[3] for e in env["events"] if e[2] == "crashed")


def test_stop_start_remove(env, running):
    runtime: ProcessRuntime = env["holder"]["runtime"]
    spec = make_spec(env["root"], "life", "1")
    runtime.build(spec, lambda line: None)
    assert runtime.state(spec) == "missing"
    endpoint = runtime.start(spec)
    wait_healthy(endpoint.url)
    pid = runtime.pid(spec)
    env["pids"].append(pid)
    assert runtime.start(spec) == endpoint and runtime.pid(spec) == pid  # idempotent

    runtime.stop(spec)
    assert not alive(pid)
    assert runtime.state(spec) == "exited"
    assert runtime.endpoint(spec) is None
    time.sleep(0.5)  # give the monitor a chance to (wrongly) restart it
    assert runtime.state(spec) == "exited"
    assert not any(e[:2] == ("life", "1") for e in env["events"])
    assert ("life", "1") in runtime.managed()

    endpoint = runtime.start(spec)
    wait_healthy(endpoint.url)
    env["pids"].append(runtime.pid(spec))
    assert "starting life 1" in runtime.logs(spec, 50)

    runtime.remove(spec)
    assert runtime.state(spec) == "missing"
    assert ("life", "1") not in runtime.managed()
    assert not runtime.stage_dir(spec).exists()
    runtime.remove(spec)  # idempotent


def test_restarted_manager_adopts_running_process(env, running):
    old_runtime: ProcessRuntime = env["holder"]["runtime"]
    spec = running["spec"]
    pid = old_runtime.pid(spec)
    old_runtime.close()
    assert alive(pid)  # close leaves runners running
    runtime = ProcessRuntime(env["root"] / "data", env["instance"], on_event=lambda *e: env["events"].append(e))
    env["holder"]["runtime"] = runtime
    assert runtime.state(spec) == "running"
    assert runtime.pid(spec) == pid
    assert runtime.start(spec) == running["endpoint"]
    # The adopted process is watched too: killing it gets it restarted.
    os.kill(pid, signal.SIGKILL)
    new = wait_for(lambda: (p := runtime.pid(spec)) and p != pid and p, what="a restarted adopted runner")
    env["pids"].append(new)
    wait_healthy(running["endpoint"].url)


def test_gives_up_after_repeated_crashes(env, running):
    runtime: ProcessRuntime = env["holder"]["runtime"]
    spec = make_spec(env["root"], "crashy", "1")
    runtime.build(spec, lambda line: None)
    runtime.start(spec)
    for _ in range(5):
        pid = wait_for(lambda: runtime.pid(spec), what="a runner to kill")
        env["pids"].append(pid)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not alive(pid), what="the kill")
    wait_for(lambda: ("crashy", "1", "failed") in [e[:3] for e in env["events"]], what="a failed event")
    kinds = [e[2] for e in env["events"] if e[:2] == ("crashy", "1")]
    assert kinds.count("crashed") == 5 and kinds.count("restarted") == 4
    time.sleep(0.5)
    assert runtime.state(spec) == "exited"
    runtime.remove(spec)


def test_refused_bundle_is_not_restarted(env, running):
    runtime: ProcessRuntime = env["holder"]["runtime"]
    spec = make_spec(env["root"], "refused", "1", cloudpickle_version="0.0.1")
    runtime.build(spec, lambda line: None)
    runtime.start(spec)
    event = wait_for(lambda: next((e for e in env["events"] if e[:3] == ("refused", "1", "failed")), None),
                     what="a failed event")
    assert "cannot run here" in event[3]
    assert "0.0.1" in runtime.logs(spec)
    assert runtime.state(spec) == "exited"
    assert not any(e[:3] == ("refused", "1", "restarted") for e in env["events"])
    runtime.remove(spec)


def test_missing_interpreter_is_named():
    with pytest.raises(RuntimeError_, match=r"python1\.5"):
        find_python("1.5")
    assert find_python(host_python()) == sys.executable
