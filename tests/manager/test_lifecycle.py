"""Lifecycle operations on one service at the same time, on a real manager: routing and the store agree afterwards.

Deploys (as main and beside it), promotes, rollbacks, stops, starts, restarts and deletes of versions and of
the whole service are fired together over HTTP, a few rounds. After each round every version the store says
is running answers at its own path (its runner says which version it is), every other version answers 503,
versions the store no longer has answer 404, and the main route serves the store's main version.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import requests

from jupyter_deploy.capture import capture

from ..harness import ManagerProcess

SERVICE = "storm"
ROUNDS = 6
"""Rounds of concurrent operations; the last one deletes the whole service among the others."""
MIN_VERSIONS = 3
"""Versions the service has before a round starts."""
CALL_TIMEOUT = 300
"""Seconds one API call may take: it may wait for the service's lock behind several health checks."""
SETTLE_TIMEOUT = 60
"""Seconds for the state to stop changing after a round (versions that left main are retired by then)."""
POLL_INTERVAL = 0.2
"""Seconds between two looks at a service that is still changing."""
PROBE_TIMEOUT = 30
"""Seconds one call through the proxy may take."""
ALLOWED_409 = {"not-ready", "is-main", "no-previous"}
"""Documented refusals that concurrent operations may legitimately meet."""
ALLOWED_404 = {"unknown-service", "unknown-version"}
"""What an operation on something another one deleted meanwhile answers."""
TRANSIENT = {"building", "starting", "stopping"}
"""Statuses of a version an operation is still changing."""


def which() -> str:
    """The entrypoint every version has; the runner's health answer names the version."""
    return SERVICE


@dataclass
class Outcome:
    """One API call of a round and what it answered."""

    op: str
    status: int
    reason: str | None
    detail: str


class Api:
    """The management API of one manager, with the admin token."""

    def __init__(self, manager: ManagerProcess):
        self.manager = manager
        self.headers = manager.headers()

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request (each in its own connection: calls come from several threads)."""
        return requests.request(method, self.manager.url + path, headers={**self.headers, **kwargs.pop("headers", {})},
                                timeout=CALL_TIMEOUT, **kwargs)

    def service(self) -> dict[str, Any] | None:
        """The service as the store has it, or None once deleted."""
        resp = self.call("GET", f"/api/services/{SERVICE}")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json()

    def deploy(self, data: bytes, sha256: str, main: bool = True) -> Outcome:
        """Upload a bundle, then follow its deploy to the end."""
        resp = self.call("POST", f"/api/services/{SERVICE}/versions", params={"main": int(main)}, data=data,
                         headers={"X-Bundle-SHA256": sha256})
        op = f"deploy main={int(main)}"
        if resp.status_code != 202:
            return outcome(op, resp)
        version = resp.json()["version"]
        events = self.call("GET", f"/api/services/{SERVICE}/versions/{version}/events", params={"follow": 1})
        if events.status_code != 200:
            return outcome(f"{op} {version} events", events)
        result = [line for line in events.text.splitlines() if '"result"' in line][-1]
        if '"running"' in result:
            return Outcome(f"{op} {version}", 202, None, result)
        # A deploy whose version was deleted meanwhile fails, and says so; anything else is a real failure.
        return Outcome(f"{op} {version}", 202 if "was deleted" in result else 500, "failed", result)


def outcome(op: str, resp: requests.Response) -> Outcome:
    """What a plain API call answered."""
    try:
        reason = resp.json().get("reason")
    except ValueError:
        reason = None
    return Outcome(op, resp.status_code, reason, resp.text[:300])


def unexpected(outcomes: list[Outcome]) -> list[Outcome]:
    """Answers no interleaving of these operations may give."""
    bad = []
    for o in outcomes:
        if o.status in (200, 202) and o.reason is None:
            continue
        if o.status == 202 and o.reason == "failed":
            continue  # deleted while deploying, said so
        if o.status == 409 and o.reason in ALLOWED_409:
            continue
        if o.status == 404 and o.reason in ALLOWED_404:
            continue
        bad.append(o)
    return bad


def state_key(service: dict[str, Any] | None) -> Any:
    """What must not change while the routes are probed."""
    if service is None:
        return None
    return service["main_version"], tuple((v["version"], v["status"]) for v in service["versions"])


def probe(manager: ManagerProcess, path: str) -> tuple[int, str | None, str | None]:
    """Status, X-Service-Version and the runner's own idea of its version for one health route."""
    resp = requests.get(f"{manager.url}/services/{SERVICE}/{path}", headers=manager.headers(), timeout=PROBE_TIMEOUT)
    version = resp.json().get("version") if resp.status_code == 200 else None
    return resp.status_code, resp.headers.get("X-Service-Version"), version


def disagreements(service: dict[str, Any] | None, known: set[str], seen: dict[str, tuple]) -> list[str]:
    """Where the routes answered otherwise than the store says."""
    problems = []
    statuses = {v["version"]: v["status"] for v in service["versions"]} if service else {}
    for version in sorted(known):
        got = seen[version]
        if statuses.get(version) == "running":
            want = (200, version, version)
        elif version in statuses:
            want = (503, None, None)
        else:
            want = (404, None, None)
        if got != want:
            problems.append(f"version {version} ({statuses.get(version, 'not in the store')}): "
                            f"expected {want}, got {got}")
    main = service["main_version"] if service else None
    if service is None:
        want = (404, None, None)
    elif main and statuses.get(main) == "running":
        want = (200, main, main)
    else:
        want = (503, None, None)
    if seen["main"] != want:
        problems.append(f"main route (store main {main}, {statuses.get(main)}): expected {want}, got {seen['main']}")
    return problems


def settled_disagreements(api: Api, known: set[str]) -> list[str]:
    """Probe every route while the store stays the same (a retirement may still be under way)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        before = api.service()
        seen = {v: probe(api.manager, f"versions/{v}/healthz") for v in sorted(known)}
        seen["main"] = probe(api.manager, "healthz")
        after = api.service()
        busy = after is not None and any(v["status"] in TRANSIENT for v in after["versions"])
        if state_key(before) == state_key(after) and not busy:
            return disagreements(after, known, seen)
        if time.monotonic() > deadline:
            return [f"the service kept changing for {SETTLE_TIMEOUT} s: {state_key(after)}"]
        time.sleep(POLL_INTERVAL)


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    """One real manager for the module; runtime as for the other manager tests."""
    started = ManagerProcess(tmp_path_factory.mktemp("lifecycle"), runtime=os.environ.get("JD_TEST_RUNTIME", "process"))
    try:
        yield started.start()
    finally:
        started.cleanup()


@pytest.fixture(scope="module")
def bundle():
    """One bundle, uploaded again for every deploy (the manager numbers the versions)."""
    return capture([which], name=SERVICE)


def run_together(calls: list[Callable[[], Outcome]]) -> list[Outcome]:
    """Run every call in its own thread, released at once."""
    barrier = threading.Barrier(len(calls))
    results: list[Outcome] = []

    def run(call: Callable[[], Outcome]) -> None:
        barrier.wait()
        try:
            results.append(call())
        except Exception as exc:  # noqa: BLE001 - a dropped connection or timeout is a finding too
            results.append(Outcome(getattr(call, "__name__", "call"), 599, type(exc).__name__, str(exc)))

    threads = [threading.Thread(target=run, args=(call,), daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(CALL_TIMEOUT * 2)
    assert not any(t.is_alive() for t in threads), "an operation never returned"
    return results


def test_concurrent_operations_leave_routing_and_store_agreeing(manager, bundle):
    api = Api(manager)
    rng = random.Random(20261201)
    known: set[str] = set()
    for round_no in range(ROUNDS):
        service = api.service()
        while service is None or len(service["versions"]) < MIN_VERSIONS:
            first = api.deploy(bundle.data, bundle.sha256)
            assert first.status == 202 and first.reason is None, first
            service = api.service()
        versions = [v["version"] for v in service["versions"]]
        known.update(versions)
        main = service["main_version"]
        others = [v for v in versions if v != main] or versions

        def act(method: str, path: str, body: dict | None = None) -> Callable[[], Outcome]:
            def call() -> Outcome:
                return outcome(f"{method} {path} {body or ''}", api.call(method, path, json=body))
            call.__name__ = f"{method} {path}"
            return call

        base = f"/api/services/{SERVICE}"
        calls = [
            lambda: api.deploy(bundle.data, bundle.sha256, main=True),
            lambda: api.deploy(bundle.data, bundle.sha256, main=False),
            act("POST", f"{base}/promote", {"version": rng.choice(others)}),
            act("POST", f"{base}/rollback"),
            act("POST", f"{base}/versions/{rng.choice(versions)}/stop"),
            act("POST", f"{base}/versions/{main}/stop"),
            act("POST", f"{base}/versions/{rng.choice(others)}/start"),
            act("POST", f"{base}/versions/{rng.choice(versions)}/restart"),
            act("POST", f"{base}/{rng.choice(['stop', 'start', 'restart'])}"),
            act("DELETE", f"{base}/versions/{rng.choice(others)}"),
            act("DELETE", f"{base}/versions/{rng.choice(versions)}"),
        ]
        if round_no == ROUNDS - 1:
            calls.append(act("DELETE", base))
        rng.shuffle(calls)
        outcomes = run_together(calls)
        after = api.service()
        known.update(v["version"] for v in (after or {}).get("versions", []))
        known.update(o.op.split()[-1] for o in outcomes if o.op.startswith("deploy") and o.status == 202)
        refused = unexpected(outcomes)
        assert refused == [], (round_no, refused)
        problems = settled_disagreements(api, known)
        assert problems == [], (round_no, problems, [o.op for o in outcomes])
