"""The manager's REST API over real HTTP: auth, scopes, tokens, upload checks, persistence."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile

import pytest
import requests

from jupyter_deploy import bundle as bundle_format


def _post_bundle(manager, name: str, data: bytes, sha: str | None = None, token: str | None = None):
    headers = manager.headers(token)
    headers["X-Bundle-SHA256"] = sha if sha is not None else hashlib.sha256(data).hexdigest()
    return requests.post(f"{manager.url}/api/services/{name}/versions", data=data, headers=headers, timeout=30)


def _minimal_bundle(name: str = "demo") -> bundle_format.Bundle:
    manifest = {
        "name": name, "version": None, "python": "3.11", "cloudpickle": "3.1.2", "requirements": [],
        "entrypoints": [{"name": "f", "parameters": [], "doc": "", "signature": "()", "returns": None}],
        "sample": None,
    }
    return bundle_format.pack(manifest, b"not a pickle at all")


def test_health_needs_no_token(manager):
    resp = requests.get(f"{manager.url}/api/health", timeout=5)
    assert resp.status_code == 200
    assert resp.json()["runtime"] == manager.runtime


def test_login_with_the_admin_password_gives_an_admin_token(manager):
    resp = requests.post(f"{manager.url}/api/login", json={"username": "admin", "password": manager.password})
    assert resp.status_code == 200
    body = resp.json()
    assert body["scope"] == "admin" and body["token"].startswith("jdt_")
    who = requests.get(f"{manager.url}/api/whoami", headers=manager.headers(body["token"])).json()
    assert who == {"username": "admin", "scope": "admin", "service": None, "role": "admin"}


def test_wrong_password_is_401_json_and_repeated_failures_are_rate_limited(manager):
    for _ in range(10):
        resp = requests.post(f"{manager.url}/api/login", json={"username": "admin", "password": "nope"})
        assert resp.status_code == 401
        assert resp.json()["reason"] == "bad-credentials"
    resp = requests.post(f"{manager.url}/api/login", json={"username": "admin", "password": manager.password})
    assert resp.status_code == 429
    assert "too many" in resp.json()["message"]


def test_missing_and_unknown_tokens_are_401(manager):
    resp = requests.get(f"{manager.url}/api/services")
    assert resp.status_code == 401
    assert "Authorization: Bearer" in resp.json()["message"]
    resp = requests.get(f"{manager.url}/api/services", headers={"Authorization": "Bearer jdt_forged"})
    assert resp.status_code == 401
    resp = requests.post(f"{manager.url}/services/iris/predict", json={}, headers={"Authorization": "Bearer x"})
    assert resp.status_code == 401


def test_unknown_route_and_service_are_json_404(manager):
    resp = requests.get(f"{manager.url}/nothing/here")
    assert resp.status_code == 404 and resp.json()["reason"] == "not-found"
    resp = requests.post(f"{manager.url}/services/ghost/predict", json={}, headers=manager.headers())
    assert resp.status_code == 404 and "ghost" in resp.json()["message"]
    resp = requests.get(f"{manager.url}/api/services/ghost", headers=manager.headers())
    assert resp.status_code == 404


def test_upload_checks_checksum_structure_name_and_size(manager_factory):
    manager = manager_factory("process", extra_args=["--ManagerApp.max_bundle_size=20000"])
    good = _minimal_bundle()
    resp = _post_bundle(manager, "demo", good.data, sha="0" * 64)
    assert resp.status_code == 400 and resp.json()["reason"] == "checksum-mismatch"

    resp = _post_bundle(manager, "demo", b"garbage, not a tar")
    assert resp.status_code == 400 and resp.json()["reason"] == "bad-bundle"

    # A tar with a path-traversal member is refused before anything is written.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    resp = _post_bundle(manager, "demo", buf.getvalue())
    assert resp.status_code == 400 and "unexpected member" in resp.json()["message"]
    assert not (manager.data_dir.parent / "evil.txt").exists()

    # A payload that does not match the manifest's sha256.
    tampered = good.data.replace(b"not a pickle at all", b"NOT A PICKLE AT ALL")
    resp = _post_bundle(manager, "demo", tampered)
    assert resp.status_code == 400 and "payload checksum" in resp.json()["message"]

    resp = _post_bundle(manager, "Bad_Name", good.data)
    assert resp.status_code == 422 and resp.json()["reason"] == "invalid-name"

    big = bundle_format.pack(json.loads(json.dumps(good.manifest)), b"x" * 30000)
    resp = _post_bundle(manager, "demo", big.data)
    assert resp.status_code == 413


def test_tokens_scopes_and_revocation(manager):
    admin = manager.client()
    deploy_token = admin.create_token(scope="deploy")["token"]
    resp = requests.get(f"{manager.url}/api/services", headers=manager.headers(deploy_token))
    assert resp.status_code == 200

    # An invoke token needs an existing service.
    resp = requests.post(f"{manager.url}/api/tokens", json={"scope": "invoke", "service": "ghost"}, headers=manager.headers())
    assert resp.status_code == 404

    # Deploy a bundle whose payload is junk: the version fails, but the service and its invoke token exist.
    good = _minimal_bundle("scoped")
    resp = _post_bundle(manager, "scoped", good.data)
    assert resp.status_code == 202, resp.text
    invoke = resp.json()["token"]
    # An invoke token cannot use the management API ...
    resp = requests.get(f"{manager.url}/api/services", headers=manager.headers(invoke))
    assert resp.status_code == 403
    resp = _post_bundle(manager, "scoped", good.data, token=invoke)
    assert resp.status_code == 403
    # ... nor another service.
    resp = requests.post(f"{manager.url}/services/other/predict", json={}, headers=manager.headers(invoke))
    assert resp.status_code == 403
    # Revoked tokens stop working at once.
    resp_id = requests.post(
        f"{manager.url}/api/tokens", json={"scope": "deploy", "expires_in": 3600}, headers=manager.headers()
    ).json()
    assert resp_id["expires_at"] is not None
    listed = [t["id"] for t in admin.tokens()]
    assert resp_id["id"] in listed and all("token" not in t for t in admin.tokens())
    admin.revoke(resp_id["id"])
    resp = requests.get(f"{manager.url}/api/services", headers=manager.headers(resp_id["token"]))
    assert resp.status_code == 401


def test_generated_admin_password_is_printed_once_and_stored_only_as_a_hash(manager_factory, tmp_path):
    from .. import harness

    from ..conftest import passable

    passable(tmp_path)
    manager = harness.ManagerProcess(tmp_path / "gen", runtime="process")
    manager.env.pop("JUPYTER_DEPLOY_ADMIN_PASSWORD")
    manager.start()
    try:
        first_log = manager.log()
        line = next(l for l in first_log.splitlines() if "password:" in l)
        password = line.rsplit(":", 1)[1].strip()
        resp = requests.post(f"{manager.url}/api/login", json={"username": "admin", "password": password})
        assert resp.status_code == 200
        db = (manager.data_dir / "manager.sqlite").read_bytes()
        assert password.encode() not in db
        # Nobody else may list or read it; as root, isolated runners may pass through to their stages.
        assert stat.S_IMODE(os.stat(manager.data_dir).st_mode) == (0o711 if os.geteuid() == 0 else 0o700)
        assert stat.S_IMODE(os.stat(manager.data_dir / "manager.sqlite").st_mode) == 0o600
        manager.stop()
        manager.start()
        assert manager.log().count("password:") == 1
        # Users and tokens survive the restart.
        resp = requests.get(f"{manager.url}/api/whoami", headers=manager.headers(resp.json()["token"]))
        assert resp.status_code == 200
    finally:
        manager.cleanup()


def test_bad_json_body_is_400(manager):
    resp = requests.post(f"{manager.url}/api/tokens", data="{not json", headers=manager.headers())
    assert resp.status_code == 400 and resp.json()["reason"] == "bad-json"
    resp = requests.post(f"{manager.url}/api/login", data="[1, 2]")
    assert resp.status_code == 400


def test_a_manifest_of_the_wrong_shape_is_refused_and_listings_keep_working(manager):
    bad = _minimal_bundle("shapes")
    manifest = dict(bad.manifest, entrypoints=["not an object"])
    resp = _post_bundle(manager, "shapes", bundle_format.pack(manifest, b"x").data)
    assert resp.status_code == 400 and "entrypoint #0" in resp.json()["message"]
    manifest = dict(bad.manifest, requirements="numpy")
    resp = _post_bundle(manager, "shapes", bundle_format.pack(manifest, b"x").data)
    assert resp.status_code == 400 and "requirements" in resp.json()["message"]
    assert requests.get(f"{manager.url}/api/services", headers=manager.headers()).status_code == 200


def test_names_and_versions_ending_in_a_newline_are_refused_everywhere(manager):
    # The patterns once ended in `$`, which also matches before a final newline: a second service
    # "iris\n" could appear, and a version "1.0.0\n" ran but answered 500 to every call.
    good = _minimal_bundle()
    resp = _post_bundle(manager, "demo%0A", good.data)
    assert resp.status_code == 422 and resp.json()["reason"] == "invalid-name", resp.text
    manifest = dict(good.manifest, version="1.0.0\n")
    bad = bundle_format.pack(manifest, b"not a pickle at all")
    resp = _post_bundle(manager, "demo", bad.data)
    assert resp.status_code == 422 and resp.json()["reason"] == "invalid-version", resp.text
    assert requests.get(f"{manager.url}/api/services/demo%0A", headers=manager.headers()).status_code == 404
    names = [s["name"] for s in requests.get(f"{manager.url}/api/services", headers=manager.headers()).json()["services"]]
    assert not [n for n in names if n != n.strip()]
    # The notebook side refuses them before capturing anything.
    from jupyter_deploy.capture import capture
    from jupyter_deploy.errors import CaptureError

    with pytest.raises(CaptureError, match="invalid"):
        capture([len], name="demo\n")
    with pytest.raises(CaptureError, match="invalid"):
        capture([len], name="demo", version="1.0.0\n")
