"""Failed logins are limited per user and address: an attacker elsewhere never keeps a user out.

Against a real manager that trusts one reverse proxy (127.0.0.3); the other callers come from other
loopback addresses (127.0.0.1, 127.0.0.2, ...), all of which reach a manager on 127.0.0.1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from jupyter_deploy_manager.auth import LOGIN_FREE_FAILURES, LoginLimiter, client_address, trusted_networks

if TYPE_CHECKING:
    from ..harness import ManagerProcess

PROXY = "127.0.0.3"
"""The reverse proxy the manager trusts."""

PASSWORD = "the right password"


class FromAddress(HTTPAdapter):
    """Connections from one local source address."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """Bind every connection to the source address."""
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def client(address: str) -> requests.Session:
    """A session whose requests come from ``address``."""
    session = requests.Session()
    session.mount("http://", FromAddress(address))
    return session


@pytest.fixture(scope="module")
def manager(tmp_path_factory) -> ManagerProcess:
    """One real manager behind a trusted proxy address, with users of its own for each test."""
    from ..harness import ManagerProcess

    manager = ManagerProcess(tmp_path_factory.mktemp("limits"), runtime="process",
                             extra_args=[f"--ManagerApp.trusted_proxies={PROXY}"]).start()
    try:
        admin = manager.client()
        for user in ("ursula", "victor", "wendy"):
            admin.add_user(user, PASSWORD, "viewer")
        yield manager
    finally:
        manager.cleanup()


def login(manager: ManagerProcess, username: str, password: str, source: str = "127.0.0.1",
          forwarded: str | None = None) -> requests.Response:
    """POST /api/login from ``source``, optionally with an X-Forwarded-For header."""
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    with client(source) as http:
        return http.post(f"{manager.url}/api/login", json={"username": username, "password": password},
                         headers=headers, timeout=60)


def lock_out(manager: ManagerProcess, username: str, source: str = "127.0.0.1", forwarded: str | None = None) -> None:
    """Fail to log in as ``username`` until the manager makes further tries wait."""
    for _ in range(LOGIN_FREE_FAILURES):
        resp = login(manager, username, "a wrong password", source, forwarded)
        assert resp.status_code == 401 and resp.json()["reason"] == "bad-credentials"
    resp = login(manager, username, "a wrong password", source, forwarded)
    assert resp.status_code == 429 and resp.json()["reason"] == "rate-limited"
    assert int(resp.headers["Retry-After"]) > 0 and "try again in" in resp.json()["message"]


def test_failures_from_one_address_keep_nobody_out_who_logs_in_from_another(manager: ManagerProcess) -> None:
    lock_out(manager, "admin", source="127.0.0.1")
    # The attacker's address waits, even with the right password...
    assert login(manager, "admin", manager.password, source="127.0.0.1").status_code == 429
    # ...while the admin, elsewhere, logs in, and their own failures are their own.
    resp = login(manager, "admin", manager.password, source="127.0.0.2")
    assert resp.status_code == 200, resp.text
    assert manager.client(resp.json()["token"]).whoami()["username"] == "admin"
    assert login(manager, "admin", "a typo", source="127.0.0.2").status_code == 401
    # Other users of the attacker's address are not held up either.
    assert login(manager, "ursula", PASSWORD, source="127.0.0.1").status_code == 200


def test_a_forwarded_address_counts_only_from_a_trusted_proxy(manager: ManagerProcess) -> None:
    # Not from the proxy: X-Forwarded-For is the caller's own claim, and changing it changes nothing.
    for i in range(LOGIN_FREE_FAILURES):
        resp = login(manager, "victor", "a wrong password", source="127.0.0.4", forwarded=f"10.1.0.{i}")
        assert resp.status_code == 401
    assert login(manager, "victor", PASSWORD, source="127.0.0.4", forwarded="10.9.9.9").status_code == 429
    # From the proxy: each client is counted by the address the proxy forwards.
    lock_out(manager, "wendy", source=PROXY, forwarded="203.0.113.5")
    assert login(manager, "wendy", PASSWORD, source=PROXY, forwarded="203.0.113.5").status_code == 429
    # A client writing its own X-Forwarded-For in front of the proxy's entry is still the proxy's entry.
    assert login(manager, "wendy", PASSWORD, source=PROXY, forwarded="198.51.100.1, 203.0.113.5").status_code == 429
    resp = login(manager, "wendy", PASSWORD, source=PROXY, forwarded="203.0.113.6")
    assert resp.status_code == 200, resp.text


def test_the_limiter_forgets_the_oldest_beyond_its_bound() -> None:
    limiter = LoginLimiter(free=1, max_keys=100)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}", f"user{i}")
    assert len(limiter) <= 100
    # The newest are still remembered and wait; the oldest were forgotten and start afresh.
    assert limiter.wait("10.0.3.231", "user999") > 0
    assert limiter.wait("10.0.0.0", "user0") == 0


def test_waits_double_after_the_free_failures() -> None:
    limiter = LoginLimiter(free=2, backoff=5.0, backoff_max=60.0)
    waits = []
    for _ in range(6):
        limiter.failed("192.0.2.1", "amy")
        waits.append(round(limiter.wait("192.0.2.1", "amy")))
    assert waits == [0, 5, 10, 20, 40, 60]
    limiter.succeeded("192.0.2.1", "amy")
    assert limiter.wait("192.0.2.1", "amy") == 0


def test_client_address_reads_x_forwarded_for_only_from_trusted_proxies() -> None:
    trusted = trusted_networks(["10.0.0.0/8", "127.0.0.3"])
    assert client_address("192.0.2.7", "203.0.113.9", trusted) == "192.0.2.7"
    assert client_address("127.0.0.3", "203.0.113.9", trusted) == "203.0.113.9"
    # Proxies chained in front of each other are skipped; the first untrusted hop from the right counts.
    assert client_address("10.1.2.3", "198.51.100.1, 203.0.113.9, 10.4.4.4", trusted) == "203.0.113.9"
    # An IPv6 client counts by its /64, which it usually holds whole.
    assert client_address("2001:db8::1:2", None, trusted) == client_address("2001:db8::ffff", None, trusted)
    with pytest.raises(ValueError, match="no IP address"):
        trusted_networks(["proxy.example.com"])
