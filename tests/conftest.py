"""Shared fixtures: real Docker engine, free ports, temp data dirs."""

from __future__ import annotations

import os
import socket

import pytest

REQUIRE_DOCKER = os.environ.get("JUPYTER_DEPLOY_REQUIRE_DOCKER") == "1"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def docker_engine():
    """A docker-py client when an engine answers, else None."""
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception:
        return None


def passable(path) -> None:
    """Let other users pass through (not list) a test dir: isolated runners run as uids of their own."""
    if os.geteuid() == 0:
        os.chmod(path, 0o711)


@pytest.fixture(scope="session", autouse=True)
def _passable_temp_root(tmp_path_factory):
    """pytest makes its temp root private (0700); runners started as other uids must reach their stages."""
    base = tmp_path_factory.getbasetemp()
    passable(base.parent)
    passable(base)


@pytest.fixture(scope="session")
def docker_client():
    """The real Docker engine; fails (not skips) when JUPYTER_DEPLOY_REQUIRE_DOCKER=1."""
    client = docker_engine()
    if client is None:
        if REQUIRE_DOCKER:
            pytest.fail("JUPYTER_DEPLOY_REQUIRE_DOCKER=1 but no Docker engine answers")
        pytest.skip("no Docker engine on this machine")
    yield client
    client.close()


@pytest.fixture
def manager_factory(tmp_path_factory):
    """Start real managers (``factory(runtime="process")``); all are stopped and cleaned up afterwards."""
    from .harness import ManagerProcess

    started: list[ManagerProcess] = []

    def factory(runtime: str = "process", **kwargs) -> ManagerProcess:
        manager = ManagerProcess(tmp_path_factory.mktemp("manager"), runtime=runtime, **kwargs)
        started.append(manager)
        return manager.start()

    yield factory
    for manager in started:
        manager.cleanup()


@pytest.fixture
def manager(manager_factory):
    """One real manager on the process runtime."""
    return manager_factory(os.environ.get("JD_TEST_RUNTIME", "process"))


@pytest.fixture
def jupyter_factory(tmp_path_factory):
    """Start real ``jupyter lab``/``jupyter server`` processes; all are stopped afterwards."""
    from .harness import JupyterProcess

    started: list[JupyterProcess] = []

    def factory(app: str = "lab", **kwargs) -> JupyterProcess:
        server = JupyterProcess(tmp_path_factory.mktemp(f"jupyter-{app}"), app=app, **kwargs)
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.stop()


CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium: Playwright cannot download its own browsers here, and these keep it off the network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium driven by Playwright; fails (not skips) when JUPYTER_DEPLOY_REQUIRE_DOCKER=1."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[test]')"
    if missing is None and not os.access(CHROMIUM, os.X_OK):
        missing = f"{CHROMIUM} is missing (bash .ci/setup-browser.sh)"
    if missing:
        if REQUIRE_DOCKER:
            pytest.fail(f"JUPYTER_DEPLOY_REQUIRE_DOCKER=1 but {missing}")
        pytest.skip(missing)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
