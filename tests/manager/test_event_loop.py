"""Uploads and logins never hold up the event loop that carries every other request; login tokens expire.

A big upload is written to disk and hashed as it arrives and checked and unpacked in threads, so the
manager neither grows by the bundle's size nor stops answering meanwhile; passwords are hashed in
threads of their own. Against a real manager on the process runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from jupyter_deploy import bundle as bundle_format

if TYPE_CHECKING:
    from ..harness import ManagerProcess

BIG = 256 * 2**20
"""Payload bytes of the big upload: held in memory, it would grow the manager by as much."""

RSS_GROWTH = 64 * 2**20
"""Most the manager's resident memory may grow while it receives and checks the big upload."""

STALL = 1.0
"""Longest a health check may wait while an upload or logins are handled: "it did not wait behind them"."""

LOGINS = 30
"""Logins sent at once; each costs scrypt's tens of milliseconds."""

DEADLINE = 120.0


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def big_bundle(path: Path) -> str:
    """Write a well-formed bundle with a BIG random payload to ``path``; return its sha256."""
    manifest = {
        "name": "big", "version": None, "python": "3.11", "cloudpickle": "3.1.2", "requirements": [],
        "entrypoints": [{"name": "f", "parameters": [], "doc": "", "signature": "()", "returns": None}],
        "sample": None,
    }
    path.write_bytes(bundle_format.pack(manifest, os.urandom(BIG)).data)
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def spool_emptied(manager: ManagerProcess) -> None:
    """Wait until the manager's upload spool holds nothing (uploads are removed just after their answer)."""
    spool = manager.data_dir / "uploads"
    deadline = time.monotonic() + DEADLINE
    while spool.exists() and any(spool.iterdir()):
        assert time.monotonic() < deadline, f"uploads left in {spool}: {sorted(p.name for p in spool.iterdir())}"
        time.sleep(0.05)


class Watch:
    """Health checks in a loop on a thread, each one timed, and the manager's memory sampled meanwhile."""

    def __init__(self, manager: ManagerProcess) -> None:
        self.manager = manager
        self.latencies: list[float] = []
        self.rss: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        assert self.manager.proc is not None
        with requests.Session() as http:
            while not self._stop.is_set():
                self.rss.append(rss(self.manager.proc.pid))
                started = time.monotonic()
                assert http.get(f"{self.manager.url}/api/health", timeout=DEADLINE).status_code == 200
                self.latencies.append(time.monotonic() - started)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(DEADLINE)


@pytest.fixture(scope="module")
def manager(tmp_path_factory) -> ManagerProcess:
    """One real manager for the module."""
    from ..harness import ManagerProcess

    manager = ManagerProcess(tmp_path_factory.mktemp("loop"), runtime="process",
                             extra_args=[f"--ManagerApp.max_bundle_size={BIG + 2**20}"]).start()
    try:
        yield manager
    finally:
        manager.cleanup()


def test_a_big_upload_neither_grows_the_manager_nor_holds_up_other_requests(manager: ManagerProcess,
                                                                             tmp_path: Path) -> None:
    path = tmp_path / "big.tar"
    sha = big_bundle(path)
    assert manager.proc is not None
    before = rss(manager.proc.pid)
    with Watch(manager) as watch, open(path, "rb") as body:
        resp = requests.post(f"{manager.url}/api/services/big/versions", params={"main": 0}, data=body,
                             headers={**manager.headers(), "X-Bundle-SHA256": sha}, timeout=DEADLINE)
    assert resp.status_code == 202, resp.text
    assert len(watch.latencies) > 10
    grown = max(watch.rss) - before
    assert grown < RSS_GROWTH, f"the manager grew by {grown / 2**20:.0f} MiB receiving a {BIG // 2**20} MiB bundle"
    assert max(watch.latencies) < STALL, (
        f"a health check waited {max(watch.latencies):.2f} s while the upload was handled")
    # What was received became the version's bundle; nothing is left in the upload spool.
    bundle = manager.data_dir / "bundles" / "big" / resp.json()["version"] / "payload.pkl"
    assert bundle.stat().st_size == BIG
    spool_emptied(manager)


def test_a_wrong_checksum_is_still_400_and_leaves_nothing_behind(manager: ManagerProcess) -> None:
    good = bundle_format.pack({"name": "small", "version": None, "python": "3.11", "cloudpickle": "3.1.2",
                               "requirements": [], "sample": None,
                               "entrypoints": [{"name": "f", "parameters": [], "doc": "", "signature": "()",
                                                "returns": None}]}, b"payload")
    resp = requests.post(f"{manager.url}/api/services/small/versions", data=good.data,
                         headers={**manager.headers(), "X-Bundle-SHA256": "0" * 64}, timeout=DEADLINE)
    assert resp.status_code == 400 and resp.json()["reason"] == "checksum-mismatch"
    resp = requests.post(f"{manager.url}/api/services/small/versions", data=good.data, headers=manager.headers(),
                         timeout=DEADLINE)
    assert resp.status_code == 400 and resp.json()["reason"] == "missing-checksum"
    # No token: refused, yet answered (the body is read and dropped, not cut off).
    resp = requests.post(f"{manager.url}/api/services/small/versions", data=b"x" * 2**20,
                         headers={"X-Bundle-SHA256": "0" * 64}, timeout=DEADLINE)
    assert resp.status_code == 401
    spool_emptied(manager)


def _request(path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: manager\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data


def test_logins_do_not_hold_up_other_requests(manager: ManagerProcess) -> None:
    host, port = "127.0.0.1", manager.port
    login = _request("/api/login", {"username": "admin", "password": manager.password})
    logins = [socket.create_connection((host, port), timeout=DEADLINE) for _ in range(LOGINS)]
    try:
        for sock in logins:
            sock.sendall(login)
        with socket.create_connection((host, port), timeout=DEADLINE) as health:
            started = time.monotonic()
            health.sendall(b"GET /api/health HTTP/1.1\r\nHost: manager\r\nConnection: close\r\n\r\n")
            assert health.recv(4096).startswith(b"HTTP/1.1 200")
            waited = time.monotonic() - started
        # Logins already answered when the health check was: had they run on the event loop, nearly all.
        answered = len(select.select(logins, [], [], 0)[0])
        assert answered < LOGINS // 2, f"{answered} of {LOGINS} logins were answered before a health check"
        assert waited < STALL, f"a health check waited {waited:.2f} s behind {LOGINS} logins"
        for sock in logins:
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    finally:
        for sock in logins:
            sock.close()


def test_login_tokens_expire_and_expired_tokens_are_removed(manager_factory) -> None:
    manager = manager_factory("process", extra_args=["--ManagerApp.login_token_lifetime=3",
                                                     "--ManagerApp.token_cleanup_interval=1"])
    resp = requests.post(f"{manager.url}/api/login", json={"username": "admin", "password": manager.password},
                         timeout=DEADLINE)
    assert resp.status_code == 200 and resp.json()["expires_at"] is not None
    short, short_id = resp.json()["token"], resp.json()["token_id"]
    lasting = requests.post(f"{manager.url}/api/tokens", json={"scope": "admin"}, headers=manager.headers(short),
                            timeout=DEADLINE).json()["token"]
    assert requests.get(f"{manager.url}/api/whoami", headers=manager.headers(short), timeout=DEADLINE).ok

    def listed() -> set[str]:
        resp = requests.get(f"{manager.url}/api/tokens", headers=manager.headers(lasting), timeout=DEADLINE)
        return {t["id"] for t in resp.json()["tokens"]}

    assert short_id in listed()
    deadline = time.monotonic() + DEADLINE
    while requests.get(f"{manager.url}/api/whoami", headers=manager.headers(short), timeout=DEADLINE).ok:
        assert time.monotonic() < deadline, "the login token never expired"
        time.sleep(0.1)
    while short_id in listed():
        assert time.monotonic() < deadline, "the expired login token was never removed"
        time.sleep(0.1)
