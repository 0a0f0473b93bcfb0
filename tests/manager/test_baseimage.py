"""Building the base image with debootstrap, and choosing a base image, on the real engine."""

from __future__ import annotations

import time

import pytest

from jupyter_deploy_manager.baseimage import build_base_image, default_tag, resolve_base_image
from jupyter_deploy_manager.runtimes.base import RuntimeError_

pytestmark = pytest.mark.docker

# Bookworm's python3; this is the tag CI builds anyway, so the test leaves it in place.
PYTHON = "3.11"


@pytest.fixture(scope="module")
def base_tag(docker_client):
    """jupyter-deploy/python:3.11, built from Debian packages when absent."""
    lines: list[str] = []
    tag = build_base_image(PYTHON, client=docker_client, log=lines.append)
    return tag


def test_build_base_image_is_usable_and_idempotent(docker_client, base_tag):
    assert base_tag == default_tag(PYTHON) == "jupyter-deploy/python:3.11"
    image = docker_client.images.get(base_tag)
    assert image.attrs["Size"] < 200 * 2**20  # apt caches and docs were left out
    out = docker_client.containers.run(
        base_tag,
        ["python3", "-c", "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"],
        remove=True, network_disabled=True,
    )
    assert out.decode().strip() == PYTHON
    lines: list[str] = []
    started = time.monotonic()
    assert build_base_image(PYTHON, client=docker_client, log=lines.append) == base_tag
    assert time.monotonic() - started < 1.0
    assert lines == [f"base image {base_tag} already exists"]


def test_unknown_python_is_refused_clearly(docker_client):
    with pytest.raises(RuntimeError_, match=r"Python 3\.10.*JUPYTER_DEPLOY_BASE_IMAGE"):
        build_base_image("3.10", tag="jupyter-deploy-test/python:never", client=docker_client)
    assert not docker_client.images.list(name="jupyter-deploy-test/python")


def test_resolve_prefers_configured_then_local(docker_client, base_tag):
    assert resolve_base_image(PYTHON, base_tag, docker_client) == base_tag
    found = resolve_base_image(PYTHON, None, docker_client)
    slim_present = bool(docker_client.images.list(name=f"python:{PYTHON}-slim"))
    assert found == (f"python:{PYTHON}-slim" if slim_present else base_tag)


def test_resolve_names_the_build_command(docker_client):
    # No registry ships python:1.5-slim, so this fails the same way online and offline.
    with pytest.raises(RuntimeError_, match=r"jupyter-deploy-manager build-base-image --python 1\.5"):
        resolve_base_image("1.5", None, docker_client)
    with pytest.raises(RuntimeError_, match="jupyter-deploy-test/absent:none"):
        resolve_base_image(PYTHON, "jupyter-deploy-test/absent:none", docker_client)
