"""Versions and traffic on a real manager: promote, rollback, zero downtime, lifecycle, log follow."""

from __future__ import annotations

import io
import threading
import time

import pytest
import requests

import jupyter_deploy
from jupyter_deploy.progress import Progress

TAG = "one"


def which(delay: float = 0.0) -> str:
    """Which model answers (after an optional delay)."""
    time.sleep(delay)
    return TAG


def deploy(manager, tag: str):
    """Deploy ``which`` answering ``tag``."""
    global TAG
    TAG = tag
    return jupyter_deploy.deploy("flip", [which], url=manager.url, token=manager.token,
                                 progress=Progress("flip", rich=False, stream=io.StringIO()))


def call(manager, path: str = "/services/flip/which", body: dict | None = None) -> requests.Response:
    """POST through the manager with the admin token."""
    return requests.post(manager.url + path, json=body or {}, headers=manager.headers(), timeout=30)


def api(manager, method: str, path: str, **kwargs) -> requests.Response:
    """Call the management API."""
    return requests.request(method, manager.url + path, headers=manager.headers(), timeout=120, **kwargs)


class Loop:
    """Calls the service without pause in a thread; counts answers and failures."""

    def __init__(self, manager):
        self.manager = manager
        self.answers: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                resp = session.post(f"{self.manager.url}/services/flip/which", json={"delay": 0.01},
                                    headers=self.manager.headers(), timeout=30)
                if resp.status_code == 200:
                    self.answers.append(resp.json())
                else:
                    self.failures.append(f"{resp.status_code} {resp.text}")
            except requests.RequestException as exc:
                self.failures.append(repr(exc))

    def __enter__(self) -> "Loop":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def wait_for(self, tag: str, timeout: float = 30) -> None:
        """Until ``tag`` has answered five times in a row after this call."""
        start = len(self.answers)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recent = self.answers[start:][-5:]
            if len(recent) == 5 and set(recent) == {tag}:
                return
            time.sleep(0.02)
        raise AssertionError((tag, self.answers[start:][-5:], self.failures[-3:]))


def test_promote_and_rollback_lose_no_request(manager):
    first = deploy(manager, "one")
    second = deploy(manager, "two")
    assert (first.version, second.version) == ("0.1.0", "0.1.1")
    info = api(manager, "GET", "/api/services/flip").json()
    assert info["main_version"] == "0.1.1" and info["previous_main"] == "0.1.0"
    with Loop(manager) as loop:
        loop.wait_for("two")
        resp = api(manager, "POST", "/api/services/flip/rollback")
        assert resp.status_code == 200 and resp.json()["main_version"] == "0.1.0"
        loop.wait_for("one")
        resp = api(manager, "POST", "/api/services/flip/promote", json={"version": "0.1.1"})
        assert resp.status_code == 200 and resp.json()["main_version"] == "0.1.1"
        loop.wait_for("two")
        resp = api(manager, "POST", "/api/services/flip/rollback")
        loop.wait_for("one")
    assert loop.failures == []
    assert len(loop.answers) >= 20
    kinds = [e["kind"] for e in api(manager, "GET", "/api/events", params={"service": "flip"}).json()["events"]]
    assert kinds.count("promoted") >= 3 and "deployed" in kinds


def test_promote_refuses_what_cannot_run_and_keeps_main(manager):
    deploy(manager, "one")
    resp = api(manager, "POST", "/api/services/flip/promote", json={"version": "9.9.9"})
    assert resp.status_code == 404
    resp = api(manager, "POST", "/api/services/flip/rollback")
    assert resp.status_code == 409 and "no previous" in resp.json()["message"]
    resp = api(manager, "POST", "/api/services/flip/promote", json={})
    assert resp.status_code == 422
    assert call(manager).json() == "one"


def test_lifecycle_of_versions_and_services(manager):
    deploy(manager, "one")
    deploy(manager, "two")
    # Main and the previous main run; an older version is stopped once it is neither.
    assert call(manager, "/services/flip/versions/0.1.0/which").json() == "one"
    deploy(manager, "three")
    assert call(manager, "/services/flip/versions/0.1.1/which").json() == "two"
    deadline = time.monotonic() + 30
    while True:
        resp = call(manager, "/services/flip/versions/0.1.0/which")
        if "stopped" in resp.text or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert resp.status_code == 503 and "stopped" in resp.json()["message"]
    assert api(manager, "POST", "/api/services/flip/versions/0.1.0/start").status_code == 200
    assert call(manager, "/services/flip/versions/0.1.0/which").json() == "one"
    assert call(manager).json() == "three"

    assert api(manager, "POST", "/api/services/flip/stop").status_code == 200
    resp = call(manager)
    assert resp.status_code == 503
    assert api(manager, "POST", "/api/services/flip/start").status_code == 200
    assert call(manager).json() == "three"
    assert api(manager, "POST", "/api/services/flip/restart").status_code == 200
    assert call(manager).json() == "three"

    resp = api(manager, "DELETE", "/api/services/flip/versions/0.1.2")
    assert resp.status_code == 409 and "promote another" in resp.json()["message"]
    resp = api(manager, "DELETE", "/api/services/flip/versions/0.1.0")
    assert resp.status_code == 200 and [v["version"] for v in resp.json()["versions"]] == ["0.1.1", "0.1.2"]
    assert api(manager, "DELETE", "/api/services/flip/versions/0.1.1").status_code == 200
    assert call(manager, "/services/flip/versions/0.1.0/which").status_code == 404
    kinds = {e["kind"] for e in api(manager, "GET", "/api/events", params={"service": "flip"}).json()["events"]}
    assert {"stopped", "started", "restarted", "deleted"} <= kinds
    # The last version takes the service with it.
    resp = api(manager, "DELETE", "/api/services/flip/versions/0.1.2")
    assert resp.status_code == 200
    assert api(manager, "GET", "/api/services/flip").status_code == 404


def test_logs_follow_streams_new_lines(manager):
    deploy(manager, "one")
    lines: list[str] = []
    with requests.get(f"{manager.url}/api/services/flip/logs", params={"follow": 1, "tail": 5},
                      headers=manager.headers(), stream=True, timeout=60) as resp:
        assert resp.status_code == 200
        stream = resp.iter_lines(decode_unicode=True)
        marker = None
        deadline = time.monotonic() + 30
        # Calls made after the stream opened show up in it.
        while time.monotonic() < deadline:
            call(manager, body={"delay": 0})
            line = next(stream)
            lines.append(line)
            if "/which" in line and lines.index(line) >= 1:
                marker = line
                break
        assert marker is not None, lines


@pytest.mark.parametrize("action", ["stop", "start", "restart"])
def test_actions_need_a_deploy_token(manager, action):
    invoke = deploy(manager, "one").token
    resp = requests.post(f"{manager.url}/api/services/flip/{action}",
                         headers={"Authorization": f"Bearer {invoke}"}, timeout=30)
    assert resp.status_code == 403


def test_canary_weights_and_shadow_mirroring(manager):
    deploy(manager, "one")
    deploy(manager, "two")
    deploy(manager, "three")
    # main is 0.1.2 ("three"); 0.1.0 takes half the calls, 0.1.1 sees a copy of every call.
    resp = api(manager, "PUT", "/api/services/flip/traffic",
               json={"canary": {"version": "0.1.0", "weight": 50}, "shadows": ["0.1.1"]})
    assert resp.status_code == 200, resp.text
    served = [call(manager) for _ in range(120)]
    assert all(r.status_code == 200 for r in served)
    by_version = {}
    for r in served:
        by_version.setdefault(r.headers["X-Service-Version"], set()).add(r.json())
    assert by_version == {"0.1.2": {"three"}, "0.1.0": {"one"}}
    canary_share = sum(r.headers["X-Service-Version"] == "0.1.0" for r in served) / len(served)
    assert 0.3 < canary_share < 0.7
    # Every call was mirrored to the shadow, whose answer differs from main's (and the canary's).
    deadline = time.monotonic() + 30
    while True:
        stats = api(manager, "GET", "/api/services/flip/traffic").json()["shadow_stats"]["0.1.1"]
        if stats["compared"] + stats["errors"] >= 120 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert stats == {"compared": 120, "differ": 120, "errors": 0}
    info = api(manager, "GET", "/api/services/flip").json()
    assert info["traffic"]["canary"] == {"version": "0.1.0", "weight": 50}

    # Bad settings are refused and change nothing.
    assert api(manager, "PUT", "/api/services/flip/traffic", json={"canary": {"version": "0.1.2"}}).status_code == 422
    resp = api(manager, "PUT", "/api/services/flip/traffic", json={"canary": {"version": "0.1.0", "weight": 150}})
    assert resp.status_code == 422
    # Promoting the canary makes it main and takes it out of the canary slot.
    resp = api(manager, "POST", "/api/services/flip/promote", json={"version": "0.1.0"})
    assert resp.json()["traffic"]["canary"] is None and resp.json()["traffic"]["shadows"] == ["0.1.1"]
    assert {call(manager).json() for _ in range(10)} == {"one"}
    resp = api(manager, "PUT", "/api/services/flip/traffic", json={"canary": None, "shadows": []})
    assert resp.json() == {"canary": None, "shadows": [], "shadow_stats": {}}


def test_a_version_deployed_beside_main_waits_for_a_promote(manager):
    from jupyter_deploy.capture import capture

    deploy(manager, "one")
    global TAG
    TAG = "two"
    bundle = capture([which], name="flip")
    client = manager.client()
    resp = requests.post(f"{manager.url}/api/services/flip/versions", params={"main": 0}, data=bundle.data,
                         headers={**manager.headers(), "X-Bundle-SHA256": bundle.sha256}, timeout=60)
    assert resp.status_code == 202
    final = [e for e in client.events("flip", "0.1.1") if e["kind"] == "result"][-1]
    assert final["status"] == "running" and final["main"] is False
    assert call(manager).json() == "one"
    assert call(manager, "/services/flip/versions/0.1.1/which").json() == "two"
    assert api(manager, "POST", "/api/services/flip/promote", json={"version": "0.1.1"}).status_code == 200
    assert call(manager).json() == "two"


def test_stopping_a_service_stops_every_version(manager):
    deploy(manager, "one")
    deploy(manager, "two")
    assert call(manager, "/services/flip/versions/0.1.0/which").json() == "one"
    assert api(manager, "POST", "/api/services/flip/stop").status_code == 200
    assert call(manager).status_code == 503
    assert call(manager, "/services/flip/versions/0.1.0/which").status_code == 503
    statuses = {v["version"]: v["status"] for v in api(manager, "GET", "/api/services/flip").json()["versions"]}
    assert statuses == {"0.1.0": "stopped", "0.1.1": "stopped"}
    assert api(manager, "POST", "/api/services/flip/start").status_code == 200
    assert call(manager).json() == "two"
