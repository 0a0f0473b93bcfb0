"""Malformed, oversize, slow and long requests against a real manager: each gets a clear answer, or a close.

Broken bundles are a 400 naming what is wrong; bodies over a limit a 413 and headers over one a 431, each
naming the limit and the traitlet that sets it; a service that does not answer in time a 504 naming
``ManagerApp.call_timeout``, and the SDK names its own timeout as its own; clients that never finish their
headers or body are disconnected; every JSON answer says ``nosniff``.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import requests

import jupyter_deploy
from jupyter_deploy import bundle as bundle_format
from jupyter_deploy.errors import GatewayTimeout, TimedOut
from jupyter_deploy.progress import Progress

if TYPE_CHECKING:
    from ..harness import ManagerProcess

BUNDLE_LIMIT = 200_000
CALL_LIMIT = 50_000
API_LIMIT = 20_000
HEADER_LIMIT = 16_384
CALL_TIMEOUT = 5
# The SDK's own timeout in its test: well under CALL_TIMEOUT, so the client gives up first.
SDK_TIMEOUT = 1
# A socket read that would only end this long after the manager stopped caring: a safety net, never reached.
SAFETY = 60


def wait(seconds: float) -> float:
    """Sleep, then say how long: a call that outlasts every timeout of these tests."""
    time.sleep(seconds)
    return seconds


def echo(value: Any) -> Any:
    """The value, back."""
    return value


def strict_json(text: str) -> Any:
    """JSON proper: Python's NaN and Infinity extensions fail."""
    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


@dataclass
class Limited:
    """A manager with small limits and a short call timeout, serving ``slow`` (wait, echo)."""

    manager: ManagerProcess
    token: str


@pytest.fixture(scope="module")
def limited(tmp_path_factory) -> Limited:
    """One manager for the module's limit tests, with the service deployed once."""
    from ..harness import ManagerProcess

    manager = ManagerProcess(tmp_path_factory.mktemp("limited"), runtime="process", extra_args=[
        f"--ManagerApp.max_bundle_size={BUNDLE_LIMIT}", f"--ManagerApp.max_call_body_size={CALL_LIMIT}",
        f"--ManagerApp.max_api_body_size={API_LIMIT}", f"--ManagerApp.max_header_size={HEADER_LIMIT}",
        f"--ManagerApp.call_timeout={CALL_TIMEOUT}",
    ]).start()
    try:
        dep = jupyter_deploy.deploy("slow", [wait, echo], url=manager.url, token=manager.token,
                                    progress=Progress("slow", rich=False, stream=io.StringIO()))
        assert dep.status == "running", dep.status
        yield Limited(manager, dep.token)
    finally:
        manager.cleanup()


@pytest.fixture(scope="module")
def impatient(tmp_path_factory) -> ManagerProcess:
    """A manager that gives clients one second for their headers and one for their body."""
    from ..harness import ManagerProcess

    manager = ManagerProcess(tmp_path_factory.mktemp("impatient"), runtime="process", extra_args=[
        "--ManagerApp.idle_connection_timeout=1", "--ManagerApp.body_timeout=1",
    ]).start()
    try:
        yield manager
    finally:
        manager.cleanup()


def post_bundle(manager: ManagerProcess, data: bytes, chunked: bool = False,
                session: requests.Session | None = None) -> requests.Response:
    """Upload raw bundle bytes with their checksum, in one piece or in chunks without a length."""
    headers = dict(manager.headers(), **{"X-Bundle-SHA256": hashlib.sha256(data).hexdigest()})
    body: Any = iter([data[i:i + 65536] for i in range(0, len(data), 65536)]) if chunked else data
    return (session or requests).post(f"{manager.url}/api/services/demo/versions", data=body, headers=headers,
                                      timeout=60)


def manifest(name: str = "demo") -> dict[str, Any]:
    """A well-formed manifest of one entrypoint."""
    return {"name": name, "version": None, "python": "3.11", "cloudpickle": "3.1.2", "requirements": [],
            "entrypoints": [{"name": "f", "parameters": [], "doc": "", "signature": "()", "returns": None}],
            "sample": None}


def tar_of(members: list[tuple[str, bytes]]) -> bytes:
    """An uncompressed tar holding these members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in members:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def refused(resp: requests.Response, status: int, reason: str, *words: str) -> str:
    """Assert a JSON refusal with that status and reason whose message holds ``words``; return the message."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"].startswith("application/json")
    body = strict_json(resp.text)
    assert body["reason"] == reason, body
    for word in words:
        assert word in body["message"], body["message"]
    return body["message"]


def raw_exchange(manager: ManagerProcess, data: bytes) -> bytes:
    """Send raw bytes on a fresh connection and read until the manager closes it."""
    with socket.create_connection(("127.0.0.1", manager.port), timeout=SAFETY) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


# ---------------------------------------------------------------- malformed bundles (400)


def test_a_bundle_cut_short_is_400_saying_so(impatient: ManagerProcess) -> None:
    data = bundle_format.pack(manifest(), b"p" * 5000).data
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        payload = tar.getmember("payload.pkl")
    cuts = {
        "inside the payload": data[: payload.offset_data + 1000],
        "after the first header": data[:512],
        "inside the manifest": data[:700],
    }
    for where, cut in cuts.items():
        message = refused(post_bundle(impatient, cut), 400, "bad-bundle")
        assert message.startswith("bundle is cut short"), (where, message)
    assert requests.get(f"{impatient.url}/api/services", headers=impatient.headers(), timeout=30).json() == {
        "services": []}


@pytest.mark.parametrize("opening, closing", [(b'{"a": ', b"}"), (b"[", b"]")])
def test_a_manifest_nested_100000_levels_deep_is_400(impatient: ManagerProcess, opening: bytes,
                                                       closing: bytes) -> None:
    deep = opening * 100_000 + b"1" + closing * 100_000
    data = tar_of([("manifest.json", deep), ("payload.pkl", b"p")])
    refused(post_bundle(impatient, data), 400, "bad-bundle", "nested more than 64 levels deep")


def test_a_manifest_with_nan_or_a_number_past_the_float_range_is_400(impatient: ManagerProcess) -> None:
    good = json.dumps(dict(manifest(), format=1, payload={"file": "payload.pkl",
                                                          "sha256": hashlib.sha256(b"p").hexdigest()}))
    for bad, words in ((good.replace('"sample": null', '"sample": {"x": NaN}'), "NaN is not a JSON value"),
                       (good.replace('"sample": null', '"sample": {"x": 1e400}'), "too large for a float")):
        data = tar_of([("manifest.json", bad.encode()), ("payload.pkl", b"p")])
        refused(post_bundle(impatient, data), 400, "bad-bundle", words)


# ---------------------------------------------------------------- oversize requests (413, 431)


def test_an_upload_over_the_limit_is_413_naming_it_and_its_traitlet(limited: Limited) -> None:
    manager = limited.manager
    big = bundle_format.pack(manifest(), b"x" * (2 * BUNDLE_LIMIT)).data
    refused(post_bundle(manager, big), 413, "too-large", f"{len(big)} bytes", str(BUNDLE_LIMIT),
            "ManagerApp.max_bundle_size")
    # Sent in chunks, with no length announced: counted as it comes, refused the same way.
    refused(post_bundle(manager, big, chunked=True), 413, "too-large", str(BUNDLE_LIMIT),
            "ManagerApp.max_bundle_size")
    # A refused upload leaves the client able to go on, whether it sent a length or chunks.
    with requests.Session() as session:
        for chunked in (False, True):
            assert post_bundle(manager, big, chunked=chunked, session=session).status_code == 413
            assert session.get(f"{manager.url}/api/health", timeout=30).status_code == 200


def test_an_upload_over_the_limit_expecting_100_continue_gets_413_instead(limited: Limited) -> None:
    manager = limited.manager
    head = (f"POST /api/services/demo/versions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {manager.token}\r\n"
            f"Content-Length: {BUNDLE_LIMIT + 1}\r\nExpect: 100-continue\r\n\r\n").encode()
    answer = raw_exchange(manager, head)
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 413 Request Entity Too Large", answer[:200]
    assert b"100 (Continue)" not in answer
    assert b"ManagerApp.max_bundle_size" in rest.partition(b"\r\n\r\n")[2]


def test_a_call_body_over_the_limit_is_413_naming_it_and_its_traitlet(limited: Limited) -> None:
    manager = limited.manager
    body = json.dumps({"value": "v" * CALL_LIMIT})
    resp = requests.post(f"{manager.url}/services/slow/echo", data=body, timeout=60,
                         headers={**manager.headers(limited.token), "Content-Type": "application/json"})
    refused(resp, 413, "too-large", "call body", str(CALL_LIMIT), "ManagerApp.max_call_body_size")
    # Within the limit the same call is served.
    small = {"value": "v" * (CALL_LIMIT // 2)}
    assert requests.post(f"{manager.url}/services/slow/echo", json=small, headers=manager.headers(limited.token),
                         timeout=60).json() == small["value"]


def test_any_other_api_body_over_its_limit_is_413(limited: Limited) -> None:
    resp = requests.post(f"{limited.manager.url}/api/login", timeout=60,
                         json={"username": "admin", "password": "p" * API_LIMIT})
    refused(resp, 413, "too-large", "request body", str(API_LIMIT), "ManagerApp.max_api_body_size")


def test_headers_over_the_limit_are_431_naming_it_and_its_traitlet(limited: Limited) -> None:
    manager = limited.manager
    resp = requests.get(f"{manager.url}/api/health", headers={"X-Padding": "p" * HEADER_LIMIT}, timeout=60)
    refused(resp, 431, "headers-too-large", str(HEADER_LIMIT), "ManagerApp.max_header_size")
    resp = requests.post(f"{manager.url}/services/slow/echo", json={"value": 1}, timeout=60,
                         headers={**manager.headers(limited.token), "Cookie": "c" * (2 * HEADER_LIMIT)})
    refused(resp, 431, "headers-too-large", "ManagerApp.max_header_size")


# ---------------------------------------------------------------- timeouts (504, the SDK's own)


def test_a_call_longer_than_the_call_timeout_is_504_naming_it(limited: Limited) -> None:
    manager = limited.manager
    resp = requests.post(f"{manager.url}/services/slow/wait", json={"seconds": 600},
                         headers=manager.headers(limited.token), timeout=SAFETY)
    refused(resp, 504, "timeout", f"within {CALL_TIMEOUT} s", "ManagerApp.call_timeout", "may still be running")
    # The service still answers other calls meanwhile.
    assert requests.post(f"{manager.url}/services/slow/echo", json={"value": [1]},
                         headers=manager.headers(limited.token), timeout=60).json() == [1]
    with pytest.raises(GatewayTimeout, match="ManagerApp.call_timeout"):
        jupyter_deploy.connect("slow", url=manager.url, token=limited.token).wait(600)


def test_the_sdk_names_its_own_timeout_as_its_own(limited: Limited, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = limited.manager
    svc = jupyter_deploy.connect("slow", url=manager.url, token=limited.token, timeout=SDK_TIMEOUT)
    with pytest.raises(TimedOut) as info:
        svc.wait(600)
    message = info.value.message
    assert f"within {SDK_TIMEOUT} s (the client's timeout" in message and "connect()" in message, message
    assert "JUPYTER_DEPLOY_TIMEOUT" in message and "may still be running" in message, message
    assert "did not answer" not in message
    # The environment sets the default for every client.
    monkeypatch.setenv("JUPYTER_DEPLOY_TIMEOUT", "1.5")
    with pytest.raises(TimedOut, match=r"within 1\.5 s \(the client's timeout"):
        jupyter_deploy.connect("slow", url=manager.url, token=limited.token).wait(600)


# ---------------------------------------------------------------- slow clients (closed)


def test_a_client_that_never_finishes_its_headers_is_disconnected(impatient: ManagerProcess) -> None:
    assert raw_exchange(impatient, b"GET /api/health HTTP/1.1\r\nHost: x\r\n") == b""


def test_a_client_that_never_finishes_its_body_is_disconnected(impatient: ManagerProcess) -> None:
    head = b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    assert raw_exchange(impatient, head + b'{"username"') == b""


def test_a_kept_alive_connection_that_stays_idle_is_closed(impatient: ManagerProcess) -> None:
    answer = raw_exchange(impatient, b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"}")


# ---------------------------------------------------------------- every JSON answer


def test_every_json_answer_says_nosniff(limited: Limited) -> None:
    manager = limited.manager
    answers = [
        requests.get(f"{manager.url}/api/health", timeout=30),
        requests.get(f"{manager.url}/api/services", headers=manager.headers(), timeout=30),
        requests.get(f"{manager.url}/api/services", timeout=30),
        requests.get(f"{manager.url}/no/such/route", timeout=30),
        requests.post(f"{manager.url}/services/slow/echo", json={"value": 1}, headers=manager.headers(), timeout=30),
        requests.post(f"{manager.url}/services/slow/echo", json={"other": 1}, headers=manager.headers(), timeout=30),
        requests.get(f"{manager.url}/services/slow/openapi.json", headers=manager.headers(), timeout=30),
        requests.get(f"{manager.url}/api/openapi.json", timeout=30),
        requests.post(f"{manager.url}/api/login", json={"username": "admin", "password": "x" * API_LIMIT}, timeout=30),
    ]
    for resp in answers:
        assert resp.headers["Content-Type"].startswith("application/json"), (resp.url, resp.headers)
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", (resp.url, resp.status_code, resp.headers)
        strict_json(resp.text)
