"""What a long-running manager keeps is bounded, and what it cuts is said: on a real manager and real runners.

Runner memory (the process runtime's limit, reported as docker's is), build logs, monitored calls,
service logs, log followers, pip runs, calls in flight to a retiring version, a canary that does not
answer. One manager (bounds set small) is shared by the module's tests; pip's timeout and the
compaction of finished deploys each get a manager of their own.
"""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

import jupyter_deploy
from jupyter_deploy.capture import capture
from jupyter_deploy.progress import Progress

from tests.conftest import passable
from tests.harness import wait_for as harness_wait_for

MEMORY_LIMIT = "256m"
MONITOR_KEEP = 20
MONITOR_BODY_LIMIT = 100
BUILD_LOG_LINES = 1
SERVICE_LOG_BYTES = 64 * 1024
DRAIN_GRACE = 300
WAIT = 60.0
"""Seconds any wait for a condition may take before the test fails."""


def wait_for(predicate: Any, what: str, timeout: float = WAIT) -> Any:
    """The harness's wait, with this module's longer deadline."""
    return harness_wait_for(predicate, what, timeout)


# -- what the services run -------------------------------------------------------------------

def hog(mb: int) -> int:
    """Hold ``mb`` MiB of touched memory."""
    block = b"x" * (mb * 2**20)
    return len(block) // 2**20


def ping() -> str:
    """Answer at once."""
    return "pong"


def score(text: str) -> int:
    """How long the text is (monitored)."""
    return len(text)


def shout(n: int, word: str = "line") -> int:
    """Print ``n`` lines of about 100 characters to the service log."""
    for i in range(n):
        print(f"{word} {i:06d} " + "x" * 88)
    return n


def hold(path: str) -> str:
    """Wait until the test writes to the FIFO at ``path``; answer what it wrote."""
    print("holding", flush=True)
    with open(path) as fh:
        return fh.read()


ANSWER = "one"


def which() -> str:
    """Which version answers."""
    return ANSWER


def die() -> None:
    """End the runner as a bundle that cannot run would: exit status 4, never restarted."""
    os._exit(4)


# -- helpers ---------------------------------------------------------------------------------

def deploy(manager, name: str, functions, **kwargs):
    """Deploy through the SDK and wait until it answers."""
    return jupyter_deploy.deploy(name, functions, url=manager.url, token=manager.token,
                                 progress=Progress(name, rich=False, stream=io.StringIO()), **kwargs)


def upload_beside(manager, name: str, functions, **kwargs) -> str:
    """Deploy a version that runs beside main (``?main=0``); return its number once it runs."""
    bundle = capture(functions, name=name, **kwargs)
    resp = requests.post(f"{manager.url}/api/services/{name}/versions", params={"main": 0}, data=bundle.data,
                         headers={**manager.headers(), "X-Bundle-SHA256": bundle.sha256}, timeout=120)
    assert resp.status_code == 202, resp.text
    version = resp.json()["version"]
    final = [e for e in manager.client().events(name, version) if e["kind"] == "result"][-1]
    assert final["status"] == "running", final
    return version


def api(manager, method: str, path: str, **kwargs) -> requests.Response:
    """The management API with the admin token."""
    return requests.request(method, manager.url + path, headers=manager.headers(), timeout=120, **kwargs)


def call(manager, path: str, body: dict | None = None, **kwargs) -> requests.Response:
    """POST to a service through the manager's proxy."""
    kwargs.setdefault("timeout", 120)
    return requests.post(manager.url + path, json=body or {}, headers=manager.headers(), **kwargs)


def version_of(manager, name: str, version: str) -> dict:
    """One version as the API shows it."""
    return api(manager, "GET", f"/api/services/{name}/versions/{version}").json()


def events(manager, name: str, kind: str) -> list[dict]:
    """Recorded events of a service of one kind, oldest first."""
    listed = api(manager, "GET", "/api/events", params={"service": name}).json()["events"]
    return [e for e in reversed(listed) if e["kind"] == kind]


def stage(manager, name: str, version: str) -> Path:
    """The process runtime's stage of a version."""
    return manager.data_dir / "versions" / f"{name}--{version}"


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    """One process-runtime manager with every bound set small."""
    from tests.harness import ManagerProcess

    started = ManagerProcess(tmp_path_factory.mktemp("bounds"), runtime="process", extra_args=[
        f"--ManagerApp.memory_limit={MEMORY_LIMIT}",
        f"--ManagerApp.monitor_keep={MONITOR_KEEP}",
        f"--ManagerApp.monitor_body_limit={MONITOR_BODY_LIMIT}",
        f"--ManagerApp.build_log_lines={BUILD_LOG_LINES}",
        f"--ManagerApp.service_log_bytes={SERVICE_LOG_BYTES}",
        f"--ManagerApp.drain_grace={DRAIN_GRACE}",
    ]).start()
    try:
        yield started
    finally:
        started.cleanup()


@pytest.fixture(scope="module")
def chatty(manager):
    """A service that writes as many log lines as it is asked."""
    deploy(manager, "chatty", [shout])
    return "chatty"


# -- runner memory ---------------------------------------------------------------------------

def test_a_runner_past_its_memory_limit_is_reported_out_of_memory(manager):
    """The process runtime applies ManagerApp.memory_limit; each OOM is named, and the stored error says it."""
    deploy(manager, "hog", [hog, ping])
    assert call(manager, "/services/hog/hog", {"mb": 16}).json() == 16
    log = api(manager, "GET", "/api/services/hog/logs", params={"tail": 5}).text
    assert f"memory {MEMORY_LIMIT}" in log, log
    # Five crashes in a row and the runtime gives up: the version's stored status and error keep the cause.
    for crashes in range(1, 6):
        if crashes > 1:
            wait_for(lambda: len(events(manager, "hog", "restarted")) >= crashes - 1, "the restart")
            wait_for(lambda: call(manager, "/services/hog/ping").status_code == 200, "the restarted runner")
        assert call(manager, "/services/hog/hog", {"mb": 1024}).status_code == 502
        wait_for(lambda: len(events(manager, "hog", "crashed")) >= crashes, "the crash event")
    crashed = [e["message"] for e in events(manager, "hog", "crashed")]
    assert all(m.startswith(f"out of memory (limit {MEMORY_LIMIT})") for m in crashed), crashed
    record = wait_for(lambda: (v := version_of(manager, "hog", "0.1.0"))["status"] == "failed" and v, "failed")
    assert f"out of memory (limit {MEMORY_LIMIT})" in record["error"], record


# -- build log -------------------------------------------------------------------------------

def test_a_deploy_keeps_the_last_build_log_lines_and_says_how_many_it_dropped(manager):
    deploy(manager, "logged", [ping])
    resp = api(manager, "GET", "/api/services/logged/versions/0.1.0/events", params={"follow": 0})
    stream = [json.loads(line) for line in resp.text.splitlines()]
    seqs = [e["seq"] for e in stream]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    logs = [e for e in stream if e["kind"] == "log"]
    [marker] = [e for e in logs if "dropped" in e]
    kept = [e for e in logs if "dropped" not in e]
    assert len(kept) == BUILD_LOG_LINES, logs
    assert marker["dropped"] >= 1 and f"{marker['dropped']} earlier build log line(s) dropped" in marker["message"]
    assert marker["seq"] < kept[0]["seq"]
    # Numbers stay those of the whole stream: a reader resuming after the marker gets what follows it.
    resumed = api(manager, "GET", "/api/services/logged/versions/0.1.0/events",
                  params={"follow": 0, "since": marker["seq"] + 1}).text.splitlines()
    assert [json.loads(line) for line in resumed] == [e for e in stream if e["seq"] > marker["seq"]]
    assert stream[-1]["kind"] == "result" and stream[-1]["status"] == "running"


def test_a_finished_deploy_keeps_only_its_result_after_a_while(manager_factory):
    """``deploy_task_keep=0``: the stream is compacted at once; its result (number, words, status) stays."""
    quick = manager_factory("process", extra_args=["--ManagerApp.deploy_task_keep=0"])
    live = [e for e in quick.client().events("compact", deploy(quick, "compact", [ping]).version)]

    def stored() -> list[dict]:
        resp = api(quick, "GET", "/api/services/compact/versions/0.1.0/events", params={"follow": 0})
        return [json.loads(line) for line in resp.text.splitlines()]

    assert wait_for(lambda: len(s := stored()) == 1 and s, "the compacted stream") == [live[-1]]


# -- monitored calls -------------------------------------------------------------------------

def test_monitored_calls_are_trimmed_per_service_and_bodies_are_cut(manager):
    deploy(manager, "loud", [score], monitor=True)
    deploy(manager, "quiet", [score], monitor=True)
    # Alternating, each service gets every other row id: trimming by a global id would skip one of them.
    for i in range(120):
        for name in ("loud", "quiet"):
            assert call(manager, f"/services/{name}/score", {"text": "abc"}).json() == 3
    step = max(1, min(100, MONITOR_KEEP // 10))
    for name in ("loud", "quiet"):
        records = api(manager, "GET", f"/api/services/{name}/monitor", params={"limit": 100000}).json()["records"]
        assert MONITOR_KEEP <= len(records) <= MONITOR_KEEP + step, (name, len(records))

    text = "y" * 1000
    assert call(manager, "/services/loud/score", {"text": text}).json() == 1000
    last = api(manager, "GET", "/api/services/loud/monitor", params={"limit": 1}).json()["records"][-1]
    body = json.dumps({"text": text})
    assert last["request"].startswith(body[:MONITOR_BODY_LIMIT])
    assert len(last["request"].encode()) < MONITOR_BODY_LIMIT + 100, last["request"]
    assert (f"{len(body) - MONITOR_BODY_LIMIT} more bytes not stored: ManagerApp.monitor_body_limit is "
            f"{MONITOR_BODY_LIMIT}") in last["request"]
    assert last["response"] == "1000"


# -- service log -----------------------------------------------------------------------------

def test_the_service_log_is_rotated_while_the_runner_runs(manager, chatty):
    path = stage(manager, chatty, "0.1.0") / "service.log"
    pid = json.loads((path.parent / "state.json").read_text())["pid"]
    assert call(manager, f"/services/{chatty}/shout", {"n": 1500, "word": "before"}).json() == 1500
    wait_for(lambda: path.with_suffix(".log.1").exists() and path.stat().st_size < SERVICE_LOG_BYTES, "the rotation")
    assert "before 001499" in path.with_suffix(".log.1").read_text()
    assert stat.S_IMODE(path.with_suffix(".log.1").stat().st_mode) == 0o600
    assert call(manager, f"/services/{chatty}/shout", {"n": 1, "word": "after"}).json() == 1
    # The same runner writes on into the emptied log, and the API reads it there.
    assert json.loads((path.parent / "state.json").read_text())["pid"] == pid
    assert "after 000000" in api(manager, "GET", f"/api/services/{chatty}/logs", params={"tail": 5}).text


def test_a_slow_log_follower_loses_lines_with_a_marker_not_the_managers_memory(manager, chatty):
    sock = socket.socket()
    # A follower that reads nothing yet, behind a small window: the manager cannot push much at it.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", manager.port))
    sock.sendall((f"GET /api/services/{chatty}/logs?follow=1&tail=1 HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {manager.token}\r\n\r\n").encode())
    try:
        # Far more than the socket buffers and the follower's queue hold.
        assert call(manager, f"/services/{chatty}/shout", {"n": 30000, "word": "flood"}).json() == 30000
        wait_for(lambda: "reads more slowly than the log grows: dropping lines" in manager.log(), "the first drop")
        # Reading now: once the lines queued before the drop are out, the marker says what is missing.
        received = b""
        while b"dropped here" not in received or not received.endswith(b"\r\n"):
            chunk = sock.recv(1 << 16)
            assert chunk, "the follow stream ended"
            received += chunk
    finally:
        sock.close()
    text = received.decode(errors="replace")
    marker = text[text.index("[jupyter-deploy: "):].split("]", 1)[0] + "]"
    dropped = int(marker.split()[1])
    assert marker.endswith("log line(s) dropped here: this follower read more slowly than the service wrote]")
    # What arrived plus what was dropped is the flood: nothing was queued without bound, nothing lost unsaid.
    assert 0 < dropped < 30000 and text.count("flood ") < 30000


# -- pip -------------------------------------------------------------------------------------

class SilentIndex:
    """A package index that accepts connections and never answers (a hung mirror)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/simple/"
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        """Stop listening and drop the held connections."""
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_pip_gets_a_time_limit_and_the_deploy_names_it(manager_factory):
    index = SilentIndex()
    try:
        hung = manager_factory("process", extra_args=["--ManagerApp.pip_timeout=5"],
                               env={"PIP_INDEX_URL": index.url, "PIP_EXTRA_INDEX_URL": "", "PIP_NO_INDEX": "",
                                    "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
        bundle = capture([ping], name="hung", requirements=["jd-never-published-anywhere==1.0"])
        client = hung.client()
        answer = client.upload("hung", bundle)
        final = [e for e in client.events("hung", answer["version"]) if e["kind"] == "result"][-1]
    finally:
        index.close()
    assert final["status"] == "failed", final
    assert "ran over its time limit of 5 s and was stopped (set by ManagerApp.pip_timeout)" in final["message"], final
    assert index.held, "pip never asked the index"


# -- promote: calls in flight ----------------------------------------------------------------

def test_a_retiring_version_finishes_its_calls_before_it_stops(manager, tmp_path):
    global ANSWER
    for answer in ("one", "two"):
        ANSWER = answer
        deploy(manager, "drain", [which, hold])
    ANSWER = "three"
    third = upload_beside(manager, "drain", [which, hold])
    info = api(manager, "GET", "/api/services/drain").json()
    assert (info["main_version"], info["previous_main"]) == ("0.1.1", "0.1.0")

    passable(tmp_path)
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    os.chmod(fifo, 0o666)
    result: dict[str, requests.Response] = {}
    held = threading.Thread(target=lambda: result.setdefault(
        "resp", call(manager, "/services/drain/versions/0.1.0/hold", {"path": str(fifo)}, timeout=DRAIN_GRACE)))
    held.start()
    try:
        wait_for(lambda: "holding" in api(manager, "GET", "/api/services/drain/logs",
                                          params={"version": "0.1.0", "tail": 5}).text, "the held call")
        # 0.1.0 leaves main and previous main: it takes no new call, and waits for the one it runs.
        assert api(manager, "POST", "/api/services/drain/promote", json={"version": third}).status_code == 200
        wait_for(lambda: events(manager, "drain", "draining"), "the drain")
        assert version_of(manager, "drain", "0.1.0")["status"] == "stopping"
        assert call(manager, "/services/drain/versions/0.1.0/which").status_code == 503
        assert call(manager, "/services/drain/which").json() == "three"
    finally:
        try:
            # Non-blocking: if the call never reached the runner, nobody reads, and the test must not hang.
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            writer = None
        if writer is not None:
            os.write(writer, b"finished")
            os.close(writer)
        held.join(WAIT)
    resp = result["resp"]
    assert resp.status_code == 200 and resp.json() == "finished", resp.text
    assert resp.headers["X-Service-Version"] == "0.1.0"
    wait_for(lambda: version_of(manager, "drain", "0.1.0")["status"] == "stopped", "the stop after the drain")


# -- canary ----------------------------------------------------------------------------------

def test_a_canary_that_does_not_answer_leaves_the_call_to_main_and_says_so(manager):
    global ANSWER
    ANSWER = "one"
    deploy(manager, "flip", [which, die], monitor=["which"])
    ANSWER = "two"
    canary = upload_beside(manager, "flip", [which, die], monitor=["which"])
    resp = api(manager, "PUT", "/api/services/flip/traffic", json={"canary": {"version": canary, "weight": 100}})
    assert resp.status_code == 200, resp.text
    answered = call(manager, "/services/flip/which")
    assert (answered.json(), answered.headers["X-Service-Version"]) == ("two", canary)

    # The canary's runner ends for good (exit 4 is not restarted); its route is still in the table.
    call(manager, f"/services/flip/versions/{canary}/die")
    wait_for(lambda: version_of(manager, "flip", canary)["status"] == "failed", "the canary to fail")
    answered = call(manager, "/services/flip/which")
    assert answered.status_code == 200, answered.text
    assert (answered.json(), answered.headers["X-Service-Version"]) == ("one", "0.1.0")
    record = api(manager, "GET", "/api/services/flip/monitor", params={"limit": 1}).json()["records"][-1]
    assert (record["version"], record["response"]) == ("0.1.0", '"one"')
