"""A slow call never holds up the health check or quick calls, even of an entrypoint that was quick so far."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import cloudpickle
import pytest
import requests

from tests.runner.test_runner import Runner, make_manifest, param, wait_for, write_bundle

THREADS = 4
"""The runner's worker threads (its default)."""

PROMPT = 10.0
"""Seconds within which an answer shows it did not wait behind a call blocked for up to a minute."""

BLOCKED = 60.0
"""Seconds a blocking call waits for its release file at most."""


def nap(marker: str = "", release: str = "") -> str:
    """Answer at once; given files, say it started and wait until released (a call as slow as the test wants)."""
    if marker:
        Path(marker).write_text("started")
        deadline = time.monotonic() + BLOCKED
        while not Path(release).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    return "woke"


def echo(x: int) -> int:
    """A quick entrypoint."""
    return x


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory):
    """One runner with a sometimes-slow and a quick entrypoint, shared by the module's tests."""
    manifest = make_manifest("naps", {"nap": [param("marker", "str", ""), param("release", "str", "")],
                                      "echo": [param("x", "int")]})
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        bundle = write_bundle(tmp_path_factory.mktemp("naps-bundle"), manifest, {"nap": nap, "echo": echo})
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    runner = Runner(bundle, tmp_path_factory.mktemp("naps-logs"), args=("--threads", str(THREADS)))
    try:
        runner.wait_healthy()
        yield runner
    finally:
        runner.stop()


def _blocked_call(runner: Runner, entrypoint: str, directory: Path) -> tuple[threading.Thread, Path, Path, list]:
    """Start a call that blocks until ``directory/release`` exists: its thread, marker, release file, answers."""
    directory.mkdir(parents=True, exist_ok=True)
    marker, release = directory / "started", directory / "release"
    answers: list[requests.Response] = []
    caller = threading.Thread(target=lambda: answers.append(requests.post(
        f"{runner.url}/{entrypoint}", json={"marker": str(marker), "release": str(release)}, timeout=BLOCKED + 30)))
    caller.start()
    return caller, marker, release, answers


def test_a_quick_entrypoint_turning_slow_holds_up_nothing(runner: Runner, tmp_path: Path) -> None:
    # Quick many times over: the runner learns that nap is quick.
    for _ in range(60):
        assert runner.post("nap", {}).json() == "woke"
    caller, marker, release, answers = _blocked_call(runner, "nap", tmp_path)
    try:
        wait_for(marker.exists, "the blocking call to start")
        health = requests.get(runner.url + "/healthz", timeout=PROMPT)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert requests.post(runner.url + "/echo", json={"x": 7}, timeout=PROMPT).json() == 7
        # The same entrypoint, quick again, does not wait behind its own slow call either.
        assert requests.post(runner.url + "/nap", json={}, timeout=PROMPT).json() == "woke"
        assert caller.is_alive(), "the blocking call answered before it was released"
    finally:
        release.write_text("go")
        caller.join(BLOCKED + 30)
    assert answers and answers[0].status_code == 200 and answers[0].json() == "woke"


def test_quick_calls_answer_while_every_worker_thread_is_busy(runner: Runner, tmp_path: Path) -> None:
    # One more blocking call than there are worker threads: at least THREADS of them run at once.
    blocked = [_blocked_call(runner, "nap", tmp_path / f"call-{i}") for i in range(THREADS + 1)]
    try:
        wait_for(lambda: sum(marker.exists() for _, marker, _, _ in blocked) >= THREADS,
                 f"{THREADS} blocking calls to start")
        for x in range(20):
            assert requests.post(runner.url + "/echo", json={"x": x}, timeout=PROMPT).json() == x
        assert requests.get(runner.url + "/healthz", timeout=PROMPT).status_code == 200
        assert all(caller.is_alive() for caller, _, _, _ in blocked)
    finally:
        for _, _, release, _ in blocked:
            release.write_text("go")
        for caller, _, _, _ in blocked:
            caller.join(BLOCKED + 30)
    assert all(answers and answers[0].json() == "woke" for _, _, _, answers in blocked)
