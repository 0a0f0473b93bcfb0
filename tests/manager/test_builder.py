"""The host-side wheelhouse with the real pip, and staging of the runner package."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cloudpickle
import numpy
import pytest
import tornado

from jupyter_deploy_manager.builder import Wheelhouse, WheelhouseError, install_command, stage_runner
from jupyter_deploy_manager.runtimes.base import Lock, RuntimeError_, host_python

PINS = (f"cloudpickle=={cloudpickle.__version__}", f"tornado=={tornado.version}")


def test_ensure_fetches_every_pin_then_costs_nothing(tmp_path):
    house = Wheelhouse(tmp_path / "wheels")
    lock = Lock(host_python(), PINS + (f"numpy=={numpy.__version__}",))
    lines: list[str] = []
    assert house.ensure(lock, lines.append) == tmp_path / "wheels"
    wheels = house.wheels(lock)
    assert wheels is not None and len(wheels) == 3
    names = sorted(w.split("-")[0] for w in wheels)
    assert names == ["cloudpickle", "numpy", "tornado"]
    assert all((tmp_path / "wheels" / w).is_file() for w in wheels)
    assert any(line.startswith("Saved") for line in lines), lines  # pip's output was streamed

    lines.clear()
    started = time.monotonic()
    house.ensure(lock, lines.append)
    assert time.monotonic() - started < 0.05
    assert lines == []


def test_present_wheels_skip_pip(tmp_path):
    house = Wheelhouse(tmp_path / "wheels")
    house.ensure(Lock(host_python(), PINS), lambda line: None)
    # A new lock whose pins are all on disk already does not call pip at all.
    lines: list[str] = []
    house.ensure(Lock(host_python(), PINS[:1]), lines.append)
    assert lines == ["wheelhouse: all 1 wheels already present"]


def test_markers_are_evaluated_for_the_lock_python(tmp_path):
    house = Wheelhouse(tmp_path / "wheels")
    lock = Lock(host_python(), PINS + ('jd-never-installed==1.0; python_version < "3.0"',))
    house.ensure(lock, lambda line: None)
    assert len(house.wheels(lock) or []) == 2


def test_missing_requirement_is_named(tmp_path):
    house = Wheelhouse(tmp_path / "wheels")
    lock = Lock(host_python(), PINS + ("jd-no-such-package-zz9==0.0.1",))
    with pytest.raises(WheelhouseError, match=r"jd-no-such-package-zz9==0\.0\.1") as info:
        house.ensure(lock, lambda line: None)
    assert isinstance(info.value, RuntimeError_)
    assert house.wheels(lock) is None


def test_not_pep508_is_a_clear_error(tmp_path):
    with pytest.raises(WheelhouseError, match="PEP 508"):
        Wheelhouse(tmp_path).ensure(Lock(host_python(), ("not a requirement!!",)), lambda line: None)


def test_concurrent_ensure_runs_pip_once(tmp_path):
    house = Wheelhouse(tmp_path / "wheels")
    lock = Lock(host_python(), PINS)
    lines: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            Wheelhouse(tmp_path / "wheels").ensure(lock, lines.append)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(line.startswith("wheelhouse: fetching") for line in lines) == 1
    assert len(house.wheels(lock) or []) == 2


def test_other_python_downloads_binary_wheels(tmp_path):
    other = "3.12" if host_python() != "3.12" else "3.11"
    house = Wheelhouse(tmp_path / "wheels")
    lock = Lock(other, (f"numpy=={numpy.__version__}", f"cloudpickle=={cloudpickle.__version__}"))
    house.ensure(lock, lambda line: None)
    wheels = house.wheels(lock) or []
    tag = "cp" + other.replace(".", "")
    assert any(w.startswith("numpy-") and f"-{tag}-" in w and "manylinux" in w for w in wheels), wheels


def test_install_command_is_offline_and_exact():
    cmd = install_command("/wheels/", ["a-1-py3-none-any.whl"])
    assert cmd[:2] == ["install", "--no-index"] and "--no-deps" in cmd
    assert cmd[-1] == "/wheels/a-1-py3-none-any.whl"


def test_stage_runner_copies_the_package(tmp_path):
    target = stage_runner(tmp_path)
    assert target == tmp_path / "jupyter_deploy_runner"
    assert (target / "__main__.py").is_file() and (target / "__init__.py").is_file()
    assert not list(target.rglob("__pycache__"))
    (target / "stale.py").write_text("")
    stage_runner(tmp_path)  # staging again replaces, it does not merge
    assert not (target / "stale.py").exists()
    source = Path(__import__("jupyter_deploy_runner").__file__).parent
    assert sorted(p.name for p in target.glob("*.py")) == sorted(p.name for p in source.glob("*.py"))


def evil_sdist(root: Path) -> tuple[Path, Path]:
    """An sdist whose build code leaves a marker file wherever it runs; returns (archive, marker path)."""
    import tarfile

    marker = root / "build-code-ran"
    project = root / "evil-1.0"
    project.mkdir(parents=True)
    (project / "setup.py").write_text(
        "import os, pathlib\n"
        "try:\n"
        f"    pathlib.Path({str(marker)!r}).write_text('uid %d' % os.getuid())\n"
        "except OSError:\n"
        "    pass  # not on the host that made this archive\n"
        "from setuptools import setup\n"
        "setup(name='evil', version='1.0', py_modules=['evil'])\n"
    )
    (project / "evil.py").write_text("VALUE = 42\n")
    archive = root / "evil-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(project, arcname="evil-1.0")
    return archive, marker


def test_a_source_build_never_runs_on_the_host(tmp_path):
    # pip runs an sdist's setup.py even to prepare its metadata: the host must never be asked to.
    archive, marker = evil_sdist(tmp_path / "src")
    house = Wheelhouse(tmp_path / "wheels")
    lock = Lock(host_python(), PINS + (f"evil @ {archive.as_uri()}",))
    with pytest.raises(WheelhouseError, match=r"evil @ file://.*no wheel for Python .*would run the package's build "
                                              r"code on the manager's host.*docker runtime"):
        house.ensure(lock, lambda line: None)
    assert not marker.exists(), marker.read_text()
    # An index package published only as source is refused the same way, before anything is built.
    with pytest.raises(WheelhouseError, match=r"wget==3\.2: no wheel"):
        house.ensure(Lock(host_python(), ("wget==3.2",)), lambda line: None)


def test_an_isolated_builder_gets_what_has_no_wheel(tmp_path):
    archive, marker = evil_sdist(tmp_path / "src")
    house = Wheelhouse(tmp_path / "wheels")
    lock = Lock(host_python(), PINS + (f"evil @ {archive.as_uri()}",))
    asked: list[list[str]] = []

    def builder(lock: Lock, reqs: list, out: Path, log) -> None:
        asked.append([str(r) for r in reqs])
        (out / "evil-1.0-py3-none-any.whl").write_bytes(b"a wheel built elsewhere")
        (out / "stray.txt").write_text("not a wheel: stays behind")

    house.ensure(lock, lambda line: None, builder)
    assert asked == [[f"evil@ {archive.as_uri()}"]] or asked == [[f"evil @ {archive.as_uri()}"]]
    assert "evil-1.0-py3-none-any.whl" in house.wheels(lock)
    assert not (tmp_path / "wheels" / "stray.txt").exists()
    assert not marker.exists()
