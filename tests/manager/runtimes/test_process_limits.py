"""Memory and CPU limits of process-runtime runners, with real runners allocating past them.

A cgroup of its own per runner where the kernel lets the manager make one (the test itself checks
whether it can, so a machine that should use cgroups fails rather than passing on the fallback),
else the address-space rlimit; both report "out of memory (limit ...)" like the docker runtime.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from jupyter_deploy_manager.runtimes.limits import CGROUP_DIR, CPU_PERIOD_US, parse_memory
from jupyter_deploy_manager.runtimes.process import ProcessRuntime

from tests.conftest import passable
from tests.harness import CACHE_DIR
from .support import make_spec, post, wait_for, wait_healthy

MEMORY = "128m"
"""The cgroup test's limit: small, so the hog passes it quickly."""

RLIMIT_MEMORY = "512m"
"""The rlimit test's limit: an address-space limit counts reserved space too (numpy's BLAS buffers, thread
stacks), so a numpy runner needs more of it than of resident memory to start at all."""

CPUS = 0.5


def can_make_cgroups() -> bool:
    """Whether this process may create a memory cgroup (v2 with the memory controller, or the v1 hierarchy)."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, point, kind, options = line.split()[:4]
        if kind == "cgroup2" and "memory" in (Path(point) / "cgroup.controllers").read_text().split():
            return os.access(point, os.W_OK)
        if kind == "cgroup" and "memory" in options.split(","):
            return os.access(point, os.W_OK)
    return False


@pytest.fixture
def runtime_factory(tmp_path):
    """ProcessRuntimes with limits, each in a data dir of its own (venvs shared); every runner is killed after."""
    passable(tmp_path)
    made: list[tuple[ProcessRuntime, list]] = []

    def factory(**limits) -> tuple[ProcessRuntime, list]:
        events: list[tuple[str, str, str, str]] = []
        runtime = ProcessRuntime(tmp_path / f"data-{len(made)}", "t" + uuid.uuid4().hex[:8],
                                 on_event=lambda *e: events.append(e), cache_dir=CACHE_DIR, **limits)
        made.append((runtime, events))
        return runtime, events

    yield factory
    for runtime, _ in made:
        runtime.shutdown_all()
        runtime.close()


def hog_running(runtime: ProcessRuntime, root: Path):
    """The hog version built, started and healthy; its spec and endpoint."""
    spec = make_spec(root, "hog", "1", hog=True)
    runtime.build(spec, lambda line: None)
    endpoint = runtime.start(spec)
    wait_healthy(endpoint.url)
    return spec, endpoint


def oom_crash(runtime: ProcessRuntime, events: list, spec, endpoint, megabytes: int) -> str:
    """Allocate past the limit; return the crash event's message once the runner is back and healthy."""
    assert post(endpoint.url + "/hog", {"mb": 8}) == 8
    with pytest.raises(OSError):  # the runner is gone before it answers
        post(endpoint.url + "/hog", {"mb": megabytes})
    crash = wait_for(lambda: [e for e in events if e[2] == "crashed"], what="the crash event")[0]
    wait_for(lambda: [e for e in events if e[2] == "restarted"], what="the restart")
    wait_healthy(wait_for(lambda: runtime.endpoint(spec), what="the endpoint after the restart").url)
    assert post(endpoint.url + "/hog", {"mb": 8}) == 8
    assert crash[:2] == ("hog", "1")
    return crash[3]


@pytest.mark.skipif(not can_make_cgroups(), reason="this machine lets no process here make a memory cgroup")
def test_a_runner_gets_a_cgroup_of_its_own_and_its_oom_kill_is_named(runtime_factory, tmp_path):
    runtime, events = runtime_factory(memory=MEMORY, cpus=CPUS)
    assert runtime.limiter.mechanism.startswith("cgroup"), runtime.limiter.fallback_reason
    spec, endpoint = hog_running(runtime, tmp_path)
    pid = runtime.pid(spec)
    # The kernel's own view: the runner sits in a cgroup of its own with the configured limits.
    joined = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        joined.update({name: path for name in (controllers.split(",") if controllers else ["v2"])})
    leaves = [Path(c) for c in runtime._procs[spec.key].cgroups]
    assert leaves and all(leaf.name == spec.key and leaf.parent.name == runtime.instance for leaf in leaves)
    assert all(leaf.parent.parent.name == CGROUP_DIR for leaf in leaves)
    if runtime.limiter.mechanism == "cgroup v2":
        [leaf] = leaves
        assert joined["v2"].endswith(f"/{CGROUP_DIR}/{runtime.instance}/{spec.key}")
        assert int((leaf / "memory.max").read_text()) == parse_memory(MEMORY)
        assert (leaf / "cpu.max").read_text().split() == [str(int(CPUS * CPU_PERIOD_US)), str(CPU_PERIOD_US)]
    else:
        memory = next(leaf for leaf in leaves if (leaf / "memory.limit_in_bytes").exists())
        cpu = next(leaf for leaf in leaves if (leaf / "cpu.cfs_quota_us").exists())
        assert joined["memory"].endswith(f"/{CGROUP_DIR}/{runtime.instance}/{spec.key}")
        assert joined["cpu"].endswith(f"/{CGROUP_DIR}/{runtime.instance}/{spec.key}")
        assert int((memory / "memory.limit_in_bytes").read_text()) == parse_memory(MEMORY)
        assert int((cpu / "cpu.cfs_quota_us").read_text()) == int(CPUS * CPU_PERIOD_US)
        assert int((cpu / "cpu.cfs_period_us").read_text()) == CPU_PERIOD_US
    assert f"memory {MEMORY}, {CPUS:g} CPU ({runtime.limiter.mechanism})" in runtime.logs(spec)

    message = oom_crash(runtime, events, spec, endpoint, 400)
    assert message.startswith(f"out of memory (limit {MEMORY}); restarting in"), message

    runtime.remove(spec)
    assert not any(leaf.exists() for leaf in leaves), "the runner's cgroups outlived it"


def test_the_rlimit_fallback_reports_a_memory_error_the_same_way(runtime_factory, tmp_path):
    runtime, events = runtime_factory(memory=RLIMIT_MEMORY, cpus=CPUS, limits="rlimit")
    assert runtime.limiter.mechanism == "rlimit"
    spec, endpoint = hog_running(runtime, tmp_path)
    limits = Path(f"/proc/{runtime.pid(spec)}/limits").read_text()
    address_space = next(line for line in limits.splitlines() if line.startswith("Max address space"))
    assert address_space.split()[3:5] == [str(parse_memory(RLIMIT_MEMORY))] * 2, address_space
    assert "no CPU limit without a cgroup" in runtime.logs(spec)

    message = oom_crash(runtime, events, spec, endpoint, 1024)
    assert message.startswith(f"out of memory (limit {RLIMIT_MEMORY}); restarting in"), message
    # Where it ran out is in the service log, with the runner's own line.
    assert "jupyter-deploy runner: out of memory in entrypoint hog" in runtime.logs(spec, 400)


def test_without_limits_the_hog_gets_what_it_asks(runtime_factory, tmp_path):
    """What the limits change: with none, the same allocation simply succeeds."""
    runtime, events = runtime_factory(limits="none", memory=MEMORY)
    spec, endpoint = hog_running(runtime, tmp_path)
    assert post(endpoint.url + "/hog", {"mb": 400}) == 400
    assert not [e for e in events if e[2] == "crashed"]
