"""The Python base image: found locally, pulled, or built from Debian packages with debootstrap."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from .runtimes.base import LABEL, RuntimeError_, host_python, run_streamed

DEBIAN_RELEASES = {"3.9": "bullseye", "3.11": "bookworm", "3.13": "trixie"}
"""Debian release whose ``python3`` is that X.Y (the only Pythons debootstrap can provide)."""

DEFAULT_MIRROR = "http://deb.debian.org/debian"
"""Debian mirror for debootstrap; ``JUPYTER_DEPLOY_DEBIAN_MIRROR`` overrides it."""

PULL_TIMEOUT = 30
"""Seconds to wait for a registry before giving up on ``python:X.Y-slim``."""

# Shipped by packages but useless in a service image; removing them saves ~40 MB.
# File-level globs: the directories themselves stay, as apt and dpkg expect them.
_PRUNE = (
    "var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*", "usr/share/doc/*",
    "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*", "usr/share/lintian/*", "var/log/*.log",
    "var/log/apt/*", "var/cache/debconf/*-old",
)


def default_tag(python: str) -> str:
    """Tag ``build_base_image`` gives an image for Python X.Y."""
    return f"jupyter-deploy/python:{python}"


def build_command(python: str) -> str:
    """The CLI command that builds the base image for Python X.Y (shown in errors)."""
    return f"jupyter-deploy-manager build-base-image --python {python}"


def _client(client: Any) -> Any:
    if client is not None:
        return client
    import docker

    return docker.from_env(timeout=600)


def _image_exists(client: Any, ref: str) -> bool:
    import docker

    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _stream(cmd: list[str], log: Callable[[str], None], what: str) -> None:
    code, tail = run_streamed(cmd, log, keep=10)
    if code != 0:
        raise RuntimeError_(f"{what} failed (exit {code}):\n" + "\n".join(tail))


def _prune(rootfs: Path) -> None:
    for pattern in _PRUNE:
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def build_base_image(python: str | None = None, tag: str | None = None, log: Callable[[str], None] = print,
                     client: Any = None) -> str:
    """Build a minimal Debian image with python3 + venv for Python X.Y and tag it; return the tag."""
    python = python or host_python()
    tag = tag or default_tag(python)
    client = _client(client)
    if _image_exists(client, tag):
        log(f"base image {tag} already exists")
        return tag
    release = DEBIAN_RELEASES.get(python)
    if release is None:
        known = ", ".join(f"{v} ({r})" for v, r in DEBIAN_RELEASES.items())
        raise RuntimeError_(
            f"cannot build a base image for Python {python}: no Debian release ships it (known: {known}); "
            f"set JUPYTER_DEPLOY_BASE_IMAGE to an image that has python{python} with the venv module"
        )
    if shutil.which("debootstrap") is None:
        raise RuntimeError_("building a base image needs debootstrap (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise RuntimeError_("building a base image with debootstrap needs root")
    scratch = Path(os.environ.get("JUPYTER_DEPLOY_SCRATCH", "/var/tmp"))
    lock_name = re.sub(r"[^A-Za-z0-9_.-]", "_", tag)
    with _flock(scratch / f"jupyter-deploy-base-{lock_name}.lock"):
        # Another process may have built it while we waited for the lock.
        if _image_exists(client, tag):
            log(f"base image {tag} already exists")
            return tag
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix="jd-rootfs-", dir=scratch))
        try:
            rootfs = work / "rootfs"
            mirror = os.environ.get("JUPYTER_DEPLOY_DEBIAN_MIRROR", DEFAULT_MIRROR)
            log(f"debootstrap {release} (python {python}) from {mirror}")
            _stream(["debootstrap", "--variant=minbase", "--include=python3,python3-venv", release, str(rootfs),
                     mirror], log, "debootstrap")
            _prune(rootfs)
            tarball = work / "rootfs.tar"
            _stream(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."], log, "tar")
            # The rootfs is big; drop it before the import copies the tarball into the engine.
            shutil.rmtree(rootfs, ignore_errors=True)
            repo, _, version_tag = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "latest")
            changes = [
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV LANG=C.UTF-8",
                f"LABEL {LABEL}.base=python{python} {LABEL}.debian={release}",
                'CMD ["python3"]',
            ]
            log(f"importing {tarball.stat().st_size // 2**20} MB rootfs as {tag}")
            client.api.import_image_from_file(str(tarball), repository=repo, tag=version_tag, changes=changes)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _check_python(client, tag, python)
        log(f"built base image {tag} in {time.monotonic() - started:.0f} s")
    return tag


def _check_python(client: Any, image: str, python: str) -> None:
    """Run the image once to make sure ``python3`` is X.Y and has venv; remove it otherwise."""
    probe = "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"
    out = client.containers.run(image, ["python3", "-c", probe], remove=True, network_disabled=True)
    got = out.decode().strip()
    if got != python:
        with contextlib.suppress(Exception):
            client.images.remove(image, force=True)
        raise RuntimeError_(f"image {image} has Python {got}, not {python}")


def resolve_base_image(python: str, configured: str | None, client: Any) -> str:
    """The base image to build Python X.Y services on: configured, local, pulled, or an error."""
    if configured:
        if _image_exists(client, configured) or _pull(client, configured):
            return configured
        raise RuntimeError_(
            f"the configured base image {configured} is not on this Docker engine and cannot be pulled; "
            f"load it, or unset JUPYTER_DEPLOY_BASE_IMAGE and run `{build_command(python)}`"
        )
    slim = f"python:{python}-slim"
    for candidate in (slim, default_tag(python)):
        if _image_exists(client, candidate):
            return candidate
    if _pull(client, slim):
        return slim
    raise RuntimeError_(
        f"no base image for Python {python}: neither {slim} nor {default_tag(python)} is on this Docker engine "
        f"and {slim} cannot be pulled; run `{build_command(python)}` to build one from Debian packages"
    )


def _pull(client: Any, ref: str) -> bool:
    """Try to pull ``ref`` within PULL_TIMEOUT seconds; True if it is now local."""
    repo, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
    outcome: list[bool] = []

    def pull() -> None:
        try:
            client.api.pull(repo, tag=tag)
            outcome.append(True)
        except Exception:  # registry unreachable, unknown image: both mean "not available"
            outcome.append(False)

    # A registry that never answers would hold the build for the client's whole timeout.
    worker = threading.Thread(target=pull, name=f"jd-pull-{ref}", daemon=True)
    worker.start()
    worker.join(PULL_TIMEOUT)
    return bool(outcome and outcome[0]) and _image_exists(client, ref)


def main(argv: list[str] | None = None) -> int:
    """``python -m jupyter_deploy_manager.baseimage --python X.Y [--tag T]``."""
    parser = argparse.ArgumentParser(description=build_base_image.__doc__)
    parser.add_argument("--python", default=host_python(), help="Python X.Y (default: the manager's)")
    parser.add_argument("--tag", default=None, help="image tag (default: jupyter-deploy/python:X.Y)")
    args = parser.parse_args(argv)
    try:
        print(build_base_image(args.python, args.tag))
    except RuntimeError_ as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
