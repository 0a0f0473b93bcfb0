"""DockerRuntime against the real engine: build layers, run locked-down containers, clean up."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from jupyter_deploy_manager.baseimage import build_base_image, resolve_base_image
from jupyter_deploy_manager.runtimes.base import LABEL, RuntimeError_, host_python
from jupyter_deploy_manager.runtimes.docker import DockerRuntime

from .support import make_spec, post, wait_for, wait_healthy


pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def env(docker_client, tmp_path_factory):
    """A DockerRuntime with a unique instance id; removes everything this module created."""
    instance = "t" + uuid.uuid4().hex[:8]
    root = tmp_path_factory.mktemp("docker-runtime")
    try:
        resolve_base_image(host_python(), None, docker_client)
    except RuntimeError_:
        build_base_image(host_python(), client=docker_client, log=lambda line: None)
    events: list[tuple[str, str, str, str]] = []
    runtime = DockerRuntime(root / "data", instance, on_event=lambda *e: events.append(e), client=docker_client)
    spec = make_spec(root, "sq", "1")
    deps_tag = DockerRuntime.deps_tag(spec.lock)
    deps_existed = bool(docker_client.images.list(name=deps_tag))
    yield {"runtime": runtime, "root": root, "events": events, "client": docker_client, "instance": instance,
           "spec": spec}
    runtime.close()
    runtime.purge()
    if not deps_existed:
        # Only the deps image this module built; a shared one may be in use by other managers.
        for image in docker_client.images.list(name=deps_tag):
            try:
                docker_client.images.remove(image.id, force=True)
            except Exception:
                pass
    assert not docker_client.containers.list(all=True, filters={"label": f"{LABEL}.instance={instance}"})
    assert not docker_client.networks.list(names=[f"jd-{instance}"])


@pytest.fixture(scope="module")
def running(env):
    """The module's first version built and started; the build log and timings recorded."""
    runtime: DockerRuntime = env["runtime"]
    spec = env["spec"]
    lines: list[str] = []
    started = time.monotonic()
    runtime.build(spec, lines.append)
    build_s = time.monotonic() - started
    started = time.monotonic()
    endpoint = runtime.start(spec)
    wait_healthy(endpoint.url)
    healthy_s = time.monotonic() - started
    print(f"\ncold build {build_s:.1f} s, start to healthy {healthy_s:.2f} s")
    return {"lines": lines, "endpoint": endpoint, "build_s": build_s, "healthy_s": healthy_s}


def test_build_start_and_invoke(env, running):
    runtime: DockerRuntime = env["runtime"]
    spec = env["spec"]
    endpoint = running["endpoint"]
    assert runtime.state(spec) == "running"
    assert runtime.endpoint(spec) == endpoint
    assert endpoint.port == 8080
    health = wait_healthy(endpoint.url)
    assert health["name"] == "sq" and health["entrypoints"] == ["predict"]
    assert post(endpoint.url + "/predict", {"x": [1, 2, 3]}) == 14.0
    assert ("sq", "1") in runtime.managed()
    assert "serving sq" in runtime.logs(spec)
    assert runtime.client.images.get(runtime.image_tag(spec))


def test_container_is_locked_down(env, running):
    runtime: DockerRuntime = env["runtime"]
    container = runtime.container_for(env["spec"])
    container.reload()
    attrs = container.attrs
    host = attrs["HostConfig"]
    assert container.name == f"jd-{env['instance']}-sq-1"
    assert attrs["Config"]["User"] == "10001"
    assert host["Memory"] == 512 * 2**20
    assert host["NanoCpus"] == 10**9
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    # Docker restarts nothing: the manager's event watcher does, with backoff and no lifetime cap.
    assert host["RestartPolicy"]["Name"] in ("no", "")
    assert not host.get("Privileged")
    assert not any("docker.sock" in m.get("Source", "") for m in attrs["Mounts"])
    labels = attrs["Config"]["Labels"]
    assert labels[f"{LABEL}.instance"] == env["instance"]
    assert (labels[f"{LABEL}.service"], labels[f"{LABEL}.version"]) == ("sq", "1")
    # Every process in the container runs as the unprivileged uid.
    assert {row[0] for row in container.top(ps_args="-o uid,pid")["Processes"]} == {"10001"}


def test_network_is_internal_and_isolated(env, running):
    runtime: DockerRuntime = env["runtime"]
    client = env["client"]
    net = client.networks.get(runtime.network_name)
    assert net.attrs["Internal"] is True
    assert net.attrs["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    # Another container on the same network can reach neither the runner nor the outside.
    probe = (
        "import urllib.request\n"
        "for url in ('%s/healthz', 'http://1.1.1.1/'):\n"
        "    try:\n"
        "        urllib.request.urlopen(url, timeout=2); print('open')\n"
        "    except Exception:\n"
        "        print('blocked')\n" % running["endpoint"].url
    )
    out = client.containers.run(
        DockerRuntime.deps_tag(env["spec"].lock), ["python3", "-c", probe], network=runtime.network_name,
        remove=True, labels={f"{LABEL}.instance": env["instance"], f"{LABEL}.role": "test-probe"},
    )
    assert out.decode().split() == ["blocked", "blocked"]


def test_warm_build_reuses_deps_image(env, running):
    runtime: DockerRuntime = env["runtime"]
    client = env["client"]
    assert any(line.startswith("building dependency image") or line.startswith("reusing dependency image")
               for line in running["lines"])
    deps_id = client.images.get(DockerRuntime.deps_tag(env["spec"].lock)).id
    spec2 = make_spec(env["root"], "sq", "2")
    lines: list[str] = []
    started = time.monotonic()
    runtime.build(spec2, lines.append)
    warm_s = time.monotonic() - started
    print(f"\nwarm build {warm_s:.2f} s")
    assert any(line.startswith("reusing dependency image") for line in lines), lines
    assert not any("Successfully installed" in line or "Processing" in line for line in lines), lines
    assert client.images.get(DockerRuntime.deps_tag(spec2.lock)).id == deps_id
    assert warm_s < 2.0
    app = client.images.get(runtime.image_tag(spec2))
    # The app layer holds only the runner and the bundle.
    assert app.attrs["Size"] - client.images.get(deps_id).attrs["Size"] < 2 * 2**20
    assert app.attrs["Config"]["User"] == "10001"
    endpoint = runtime.start(spec2)
    wait_healthy(endpoint.url)
    assert post(endpoint.url + "/predict", {"x": [2]}) == 4.0
    assert set(runtime.managed()) >= {("sq", "1"), ("sq", "2")}
    runtime.remove(spec2)
    assert runtime.state(spec2) == "missing"
    assert not client.images.list(name=runtime.image_tag(spec2))


def test_stop_start_remove(env, running):
    runtime: DockerRuntime = env["runtime"]
    client = env["client"]
    spec = make_spec(env["root"], "life", "1")
    runtime.build(spec, lambda line: None)
    assert runtime.state(spec) == "missing"
    endpoint = runtime.start(spec)
    wait_healthy(endpoint.url)
    container_id = runtime.container_for(spec).id
    assert runtime.start(spec) == endpoint  # idempotent while running

    runtime.stop(spec)
    assert runtime.state(spec) == "exited"
    assert runtime.endpoint(spec) is None
    runtime.stop(spec)  # idempotent

    endpoint = runtime.start(spec)
    assert runtime.container_for(spec).id == container_id  # reused, not recreated
    wait_healthy(endpoint.url)

    runtime.remove(spec, keep_image=True)
    assert runtime.state(spec) == "missing"
    assert client.images.get(runtime.image_tag(spec))
    endpoint = runtime.start(spec)  # a missing container is created again
    wait_healthy(endpoint.url)
    assert runtime.container_for(spec).id != container_id

    runtime.remove(spec)
    assert runtime.state(spec) == "missing"
    assert ("life", "1") not in runtime.managed()
    assert not client.images.list(name=runtime.image_tag(spec))
    runtime.remove(spec)  # idempotent


RESTARTED = "the manager restarted the runner"


def _events_of(env, service: str, kind: str) -> list[tuple[str, str, str, str]]:
    return [e for e in list(env["events"]) if e[0] == service and e[2] == kind]


def test_crash_is_restarted_and_reported(env, running):
    runtime: DockerRuntime = env["runtime"]
    spec = env["spec"]
    before = len(_events_of(env, "sq", "restarted"))
    container = runtime.container_for(spec)
    os.kill(container.attrs["State"]["Pid"], signal.SIGKILL)  # the container's PID 1 (tini), seen from the host
    wait_for(lambda: len(_events_of(env, "sq", "restarted")) > before, what="restart event")
    assert _events_of(env, "sq", "restarted")[-1][3] == RESTARTED
    assert any("runner exited with code" in e[3] for e in _events_of(env, "sq", "crashed"))
    endpoint = wait_for(lambda: runtime.endpoint(spec), what="endpoint after restart")
    wait_healthy(endpoint.url)
    assert post(endpoint.url + "/predict", {"x": [3]}) == 9.0


def test_docker_kill_and_a_seventh_crash_are_restarted_too(env, running):
    # Docker's on-failure:5 never resets its count and never restarts `docker kill`: a runner
    # that crashed six times over its life, or was killed once, stayed down while the API said running.
    runtime: DockerRuntime = env["runtime"]
    spec = env["spec"]
    for round_ in range(7):
        before = len(_events_of(env, "sq", "restarted"))
        runtime.container_for(spec).kill()
        wait_for(lambda: len(_events_of(env, "sq", "restarted")) > before, timeout=60,
                 what=f"restart after kill #{round_ + 1}")
        endpoint = wait_for(lambda: runtime.endpoint(spec), what="endpoint after restart")
        wait_healthy(endpoint.url)
    assert runtime.state(spec) == "running"
    assert post(endpoint.url + "/predict", {"x": [4]}) == 16.0
    # Quick crashes back off: the waits announced grow.
    delays = [float(e[3].rsplit("restarting in ", 1)[1].split()[0]) for e in _events_of(env, "sq", "crashed")[-7:]]
    assert delays == sorted(delays) and delays[-1] > delays[0]


def test_a_stopped_version_is_not_restarted(env, running):
    runtime: DockerRuntime = env["runtime"]
    spec = make_spec(env["root"], "calm", "1")
    runtime.build(spec, lambda line: None)
    wait_healthy(runtime.start(spec).url)
    runtime.stop(spec)
    time.sleep(1.5)  # longer than the first restart delays: nothing may bring it back
    assert runtime.state(spec) == "exited"
    assert not _events_of(env, "calm", "crashed")
    runtime.remove(spec)


def test_out_of_memory_is_named_with_the_limit(env, running):
    events: list[tuple[str, str, str, str]] = []
    runtime = DockerRuntime(env["root"] / "data", env["instance"], memory="128m", client=env["client"],
                            on_event=lambda *e: events.append(e))
    spec = make_spec(env["root"], "hog", "1", hog=True)
    try:
        runtime.build(spec, lambda line: None)
        endpoint = runtime.start(spec)
        wait_healthy(endpoint.url)
        assert post(endpoint.url + "/hog", {"mb": 8}) == 8
        with pytest.raises(Exception):
            post(endpoint.url + "/hog", {"mb": 400})
        crash = wait_for(lambda: [e for e in events if e[2] == "crashed"], what="the OOM crash event")[0]
        assert crash[:2] == ("hog", "1")
        assert crash[3].startswith("out of memory (limit 128m)"), crash
        wait_for(lambda: [e for e in events if e[2] == "restarted"], what="restart after the OOM kill")
        wait_healthy(wait_for(lambda: runtime.endpoint(spec), what="endpoint after restart").url)
    finally:
        runtime.remove(spec)
        runtime.close()


def test_missing_base_image_names_the_command(env):
    runtime = DockerRuntime(env["root"] / "data", env["instance"], base_image="jupyter-deploy-test/absent:none",
                            client=env["client"])
    spec = make_spec(env["root"], "nobase", "1")
    with pytest.raises(RuntimeError_, match="jupyter-deploy-manager build-base-image --python"):
        runtime.build(spec, lambda line: None)
    # Without a configured image and for a Python nobody ships, the error names the command too.
    spec = make_spec(env["root"], "nobase", "2", python="1.5")
    runtime = DockerRuntime(env["root"] / "data", env["instance"], client=env["client"])
    with pytest.raises(RuntimeError_, match=r"jupyter-deploy-manager build-base-image --python 1\.5"):
        runtime.build(spec, lambda line: None)


def test_start_before_build_is_a_clear_error(env):
    runtime: DockerRuntime = env["runtime"]
    spec = make_spec(env["root"], "unbuilt", "1")
    with pytest.raises(RuntimeError_, match="build"):
        runtime.start(spec)
    assert runtime.state(spec) == "missing"


def test_a_source_requirement_is_built_in_an_isolated_container(env, tmp_path):
    from tests.manager.test_builder import evil_sdist

    runtime: DockerRuntime = env["runtime"]
    client = env["client"]
    archive, marker = evil_sdist(tmp_path / "src")
    spec = make_spec(env["root"], "fromsource", "1", extra_requirements=(f"evil @ {archive.as_uri()}",))
    lines: list[str] = []
    deps = DockerRuntime.deps_tag(spec.lock)
    try:
        runtime.build(spec, lines.append)
        assert any("from source in an isolated container" in line for line in lines), lines
        # Its build code ran, but not on this host: in a container with no mount of it.
        assert not marker.exists(), marker.read_text()
        out = client.containers.run(deps, ["python3", "-c", "import evil; print(evil.VALUE)"], remove=True,
                                    network_disabled=True,
                                    labels={f"{LABEL}.instance": env["instance"], f"{LABEL}.role": "test-probe"})
        assert out.decode().strip() == "42"
        assert not client.containers.list(all=True, filters={"label": [f"{LABEL}.instance={env['instance']}",
                                                                        f"{LABEL}.role=source-build"]})
    finally:
        runtime.remove(spec)
        for image in client.images.list(name=deps):
            client.images.remove(image.id, force=True)
