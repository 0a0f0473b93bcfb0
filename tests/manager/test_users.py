"""Users and roles over real HTTP: admins manage users, deployers deploy, viewers read and invoke."""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from typing import Any

import pytest
import requests

import jupyter_deploy
from jupyter_deploy import bundle as bundle_format
from jupyter_deploy.client import ManagerClient
from jupyter_deploy.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from jupyter_deploy.progress import Progress
from jupyter_deploy_manager.api_spec import manager_document
from jupyter_deploy_manager.auth import Auth
from jupyter_deploy_manager.errors import ApiError
from jupyter_deploy_manager.store import Store

SERVICE = "tiny"
PASSWORD = "correct horse battery"


def double(x: int) -> int:
    """Twice x."""
    return 2 * x


@dataclass
class World:
    """A manager with one running service, and a logged-in admin, deployer and viewer."""

    manager: Any
    version: str
    tokens: dict[str, str]
    token_ids: dict[str, str]

    def headers(self, role: str) -> dict[str, str]:
        """Authorization headers of that role's login token."""
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def call(self, role: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request as that role."""
        kwargs.setdefault("timeout", 60)
        return requests.request(method, f"{self.manager.url}{path}", headers=self.headers(role), **kwargs)


def login(manager: Any, username: str, password: str) -> requests.Response:
    """POST /api/login."""
    return requests.post(f"{manager.url}/api/login", json={"username": username, "password": password}, timeout=30)


def junk_bundle(name: str) -> bundle_format.Bundle:
    """A well-formed bundle whose payload never loads: the build fails, the upload is accepted."""
    manifest = {
        "name": name, "version": None, "python": "3.11", "cloudpickle": "3.1.2", "requirements": [],
        "entrypoints": [{"name": "f", "parameters": [], "doc": "", "signature": "()", "returns": None}],
        "sample": None,
    }
    return bundle_format.pack(manifest, b"not a pickle")


def upload(world: World, role: str, name: str, bundle: bundle_format.Bundle) -> requests.Response:
    """Upload a bundle as that role."""
    headers = dict(world.headers(role), **{"X-Bundle-SHA256": hashlib.sha256(bundle.data).hexdigest()})
    return requests.post(f"{world.manager.url}/api/services/{name}/versions", data=bundle.data, headers=headers,
                         timeout=60)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    """One manager for the module: a tiny service deployed by the admin, a deployer and a viewer logged in."""
    from ..harness import ManagerProcess

    manager = ManagerProcess(tmp_path_factory.mktemp("users"), runtime="process").start()
    try:
        dep = jupyter_deploy.deploy(SERVICE, [double], url=manager.url, token=manager.token,
                                    progress=Progress(SERVICE, rich=False, stream=io.StringIO()))
        admin = manager.client()
        for username, role in (("dora", "deployer"), ("vera", "viewer")):
            created = admin.add_user(username, PASSWORD, role)
            assert created["username"] == username and created["role"] == role
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created["created"])
        tokens, token_ids = {}, {}
        for role, username, password in (("admin", "admin", manager.password), ("deployer", "dora", PASSWORD),
                                         ("viewer", "vera", PASSWORD)):
            resp = login(manager, username, password)
            assert resp.status_code == 200, resp.text
            tokens[role], token_ids[role] = resp.json()["token"], resp.json()["token_id"]
        yield World(manager, dep.version, tokens, token_ids)
    finally:
        manager.cleanup()


def test_login_gives_each_role_its_scope_and_whoami_shows_the_role(world: World) -> None:
    expected = {"admin": ("admin", "admin"), "deployer": ("dora", "deploy"), "viewer": ("vera", "deploy")}
    for role, (username, scope) in expected.items():
        who = world.call(role, "GET", "/api/whoami").json()
        assert who == {"username": username, "scope": scope, "service": None, "role": role}


def test_admin_lists_users_without_password_hashes(world: World) -> None:
    users = world.manager.client(world.tokens["admin"]).users()
    roles = {u["username"]: u["role"] for u in users}
    assert roles["admin"] == "admin" and roles["dora"] == "deployer" and roles["vera"] == "viewer"
    assert all(set(u) == {"username", "role", "created"} for u in users)


def _concrete(world: World, template: str) -> str:
    values = {"name": SERVICE, "version": world.version, "entrypoint": "double", "username": "admin",
              "token_id": world.token_ids["admin"], "secret": "NO_SUCH_SECRET"}
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)


def _operations() -> list[tuple[str, str, str]]:
    """(method, path template, operationId) of every documented operation."""
    doc = manager_document("http://unused")
    return [(method, path, op["operationId"]) for path, item in doc["paths"].items() for method, op in item.items()]


VIEWER_MAY = {"invoke", "invokeVersion"}


@pytest.mark.parametrize("role", ["admin", "deployer", "viewer"])
def test_every_read_route_answers_every_role_but_users_are_for_admins(world: World, role: str) -> None:
    for method, template, op_id in _operations():
        if method != "get":
            continue
        resp = world.call(role, "GET", _concrete(world, template), params={"follow": "0"})
        expected = 403 if op_id == "listUsers" and role != "admin" else 200
        assert resp.status_code == expected, (role, op_id, resp.status_code, resp.text[:300])
        if expected == 403:
            assert f"role {role!r}" in resp.json()["message"]


def test_a_viewer_is_refused_every_change_with_a_message_naming_the_role(world: World) -> None:
    # Taken from the document, so a route added later is covered as soon as it is documented.
    for method, template, op_id in _operations():
        if method == "get" or op_id in ("revokeToken", "login"):
            continue
        body = {"x": 4} if op_id in VIEWER_MAY else {}
        resp = world.call("viewer", method.upper(), _concrete(world, template), json=body)
        if op_id in VIEWER_MAY:
            assert resp.status_code == 200 and resp.json() == 8, (op_id, resp.text)
            continue
        assert resp.status_code == 403, (op_id, resp.status_code, resp.text[:300])
        assert "viewer" in resp.json()["message"] or "'deploy'" in resp.json()["message"], (op_id, resp.text)
    # The service is untouched.
    assert world.call("admin", "GET", f"/api/services/{SERVICE}").json()["status"] == "running"


def test_viewer_specifics_upload_delete_tokens_logs_invoke(world: World) -> None:
    resp = upload(world, "viewer", "by-viewer", junk_bundle("by-viewer"))
    assert resp.status_code == 403 and "role 'viewer'" in resp.json()["message"]
    resp = world.call("viewer", "DELETE", f"/api/services/{SERVICE}")
    assert resp.status_code == 403 and "cannot delete services" in resp.json()["message"]
    for body in ({"scope": "invoke", "service": SERVICE}, {"scope": "deploy"}, {"scope": "admin"}):
        resp = world.call("viewer", "POST", "/api/tokens", json=body)
        assert resp.status_code == 403 and "role 'viewer', which cannot create tokens" in resp.json()["message"]
    viewer = world.manager.client(world.tokens["viewer"])
    with pytest.raises(Forbidden, match="viewer"):
        viewer.create_token(service=SERVICE)
    assert [s["name"] for s in viewer.services()] == [SERVICE]
    assert isinstance(viewer.logs(SERVICE, 50), str)
    assert viewer.invoke_raw(SERVICE, "double", '{"x": 21}') == 42
    assert all(t["username"] == "vera" for t in viewer.tokens())
    assert "endpoint" in viewer.service(SERVICE)


def test_deployer_deploys_deletes_and_makes_invoke_and_deploy_tokens_but_not_admin_ones(world: World) -> None:
    resp = upload(world, "deployer", "by-dora", junk_bundle("by-dora"))
    assert resp.status_code == 202, resp.text
    deployer = world.manager.client(world.tokens["deployer"])
    list(deployer.events("by-dora", resp.json()["version"]))  # until the (failing) build is over
    assert deployer.service("by-dora")["created_by"] == "dora"
    deployer.delete("by-dora")
    assert world.call("deployer", "GET", "/api/services/by-dora").status_code == 404

    invoke = deployer.create_token(service=SERVICE)
    assert invoke["scope"] == "invoke" and invoke["username"] == "dora"
    resp = requests.post(f"{world.manager.url}/services/{SERVICE}/double", json={"x": 5},
                         headers={"Authorization": f"Bearer {invoke['token']}"}, timeout=30)
    assert resp.status_code == 200 and resp.json() == 10
    deploy = deployer.create_token(scope="deploy")
    assert world.manager.client(deploy["token"]).whoami()["role"] == "deployer"
    with pytest.raises(Forbidden, match="admin"):
        deployer.create_token(scope="admin")

    # Own tokens only: listing, revoking; someone else's token is not even seen.
    assert {t["username"] for t in deployer.tokens()} == {"dora"}
    deployer.revoke(deploy["id"])
    assert world.call("deployer", "DELETE", f"/api/tokens/{world.token_ids['admin']}").status_code == 404

    for method, path in (("GET", "/api/users"), ("POST", "/api/users"), ("DELETE", "/api/users/vera"),
                         ("POST", "/api/users/vera/password")):
        resp = world.call("deployer", method, path, json={"username": "x1", "password": "p" * 9, "password2": 1})
        assert resp.status_code == 403 and "role 'deployer'" in resp.json()["message"], (method, path, resp.text)


def test_direct_url_requirements_are_for_admins_only(world: World) -> None:
    # A URL requirement is fetched from anywhere and built from source: a deployer may not bring one.
    bundle = junk_bundle("by-url")
    manifest = dict(bundle.manifest, requirements=["evil @ https://example.org/evil-1.0.tar.gz"])
    bundle = bundle_format.pack(manifest, b"not a pickle")
    resp = upload(world, "deployer", "by-url", bundle)
    assert resp.status_code == 403, resp.text
    assert resp.json()["reason"] == "forbidden"
    assert "evil @ https://example.org/evil-1.0.tar.gz" in resp.json()["message"]
    assert "only admins" in resp.json()["message"]
    assert world.call("admin", "GET", "/api/services/by-url").status_code == 404, "nothing was recorded"
    resp = upload(world, "admin", "by-url", bundle)
    assert resp.status_code == 202, resp.text
    list(world.manager.client(world.tokens["admin"]).events("by-url", resp.json()["version"]))
    world.manager.client(world.tokens["admin"]).delete("by-url")


def test_admin_tokens_of_deploy_scope_cannot_manage_users(world: World) -> None:
    admin = world.manager.client(world.tokens["admin"])
    deploy_token = admin.create_token(scope="deploy")["token"]
    with pytest.raises(Forbidden, match="admin-scope"):
        world.manager.client(deploy_token).users()


def test_every_user_changes_their_own_password_only(world: World) -> None:
    manager = world.manager
    manager.client(world.tokens["viewer"]).set_password("vera", "a new secret 1")
    assert login(manager, "vera", "a new secret 1").status_code == 200
    assert login(manager, "vera", PASSWORD).status_code == 401
    # Tokens issued before the change keep working.
    assert world.call("viewer", "GET", "/api/whoami").status_code == 200
    with pytest.raises(Forbidden, match="another user's password"):
        manager.client(world.tokens["viewer"]).set_password("dora", "hijacked!!")
    # An admin may set anyone's; an invoke token may not even set its own user's.
    manager.client(world.tokens["admin"]).set_password("vera", PASSWORD)
    assert login(manager, "vera", PASSWORD).status_code == 200
    invoke = manager.client(world.tokens["deployer"]).create_token(service=SERVICE)["token"]
    with pytest.raises(Forbidden, match="'invoke'"):
        manager.client(invoke).set_password("dora", "whatever123")
    with pytest.raises(InvalidInput, match="8 to"):
        manager.client(world.tokens["deployer"]).set_password("dora", "short")
    with pytest.raises(NotFound):
        manager.client(world.tokens["admin"]).set_password("nobody", "long enough")


def test_bad_user_requests_are_422_409_404_400(world: World) -> None:
    admin = world.manager.client(world.tokens["admin"])
    for username in ("Bob", "1bob", "b" * 33, "bo b", "bob\n", "bób", "", None, 7):
        with pytest.raises(InvalidInput, match="username"):
            admin.add_user(username, PASSWORD)  # type: ignore[arg-type]
    for password in ("seven77", "", None, 12345678, "x" * 1025):
        with pytest.raises(InvalidInput, match="password"):
            admin.add_user("bob", password)  # type: ignore[arg-type]
    for role in ("root", "Admin", None, ""):
        with pytest.raises(InvalidInput, match="role"):
            admin.add_user("bob", PASSWORD, role)  # type: ignore[arg-type]
    assert "bob" not in {u["username"] for u in admin.users()}
    with pytest.raises(Conflict, match="dora"):
        admin.add_user("dora", PASSWORD, "viewer")
    assert login(world.manager, "dora", PASSWORD).status_code == 200  # not overwritten
    with pytest.raises(NotFound):
        admin.remove_user("nobody")
    resp = world.call("admin", "POST", "/api/users", data="{oops")
    assert resp.status_code == 400 and resp.json()["reason"] == "bad-json"
    # The longest valid name and the role default.
    longest = "a" + "b_.-9" * 6 + "z"
    created = world.call("admin", "POST", "/api/users", json={"username": longest, "password": PASSWORD})
    assert created.status_code == 201 and created.json()["role"] == "deployer"
    admin.remove_user(longest)


def test_deleting_a_user_revokes_all_their_tokens_at_once(world: World) -> None:
    manager = world.manager
    admin = manager.client(world.tokens["admin"])
    admin.add_user("temp", PASSWORD, "deployer")
    token = login(manager, "temp", PASSWORD).json()["token"]
    temp = manager.client(token)
    invoke = temp.create_token(service=SERVICE)["token"]
    # Both verified once, so they sit in the manager's verified-token cache.
    assert temp.whoami()["username"] == "temp"

    def invoke_call(token: str) -> requests.Response:
        return requests.post(f"{manager.url}/services/{SERVICE}/double", json={"x": 1},
                             headers={"Authorization": f"Bearer {token}"}, timeout=30)

    assert invoke_call(invoke).status_code == 200
    admin.remove_user("temp")
    with pytest.raises(Unauthorized):
        temp.whoami()
    assert invoke_call(invoke).status_code == 401
    assert "temp" not in {u["username"] for u in admin.users()}
    assert all(not t["active"] for t in admin.tokens() if t["username"] == "temp")
    # A new user of the same name does not bring the old tokens back.
    admin.add_user("temp", PASSWORD, "viewer")
    assert invoke_call(invoke).status_code == 401
    with pytest.raises(Unauthorized):
        temp.whoami()
    admin.remove_user("temp")


def test_no_admin_deletes_themself_and_the_last_admin_stays(world: World) -> None:
    manager = world.manager
    admin = manager.client(world.tokens["admin"])
    resp = world.call("admin", "DELETE", "/api/users/admin")
    assert resp.status_code == 409 and resp.json()["reason"] == "cannot-delete-self"
    admin.add_user("boss", PASSWORD, "admin")
    boss = manager.client(login(manager, "boss", PASSWORD).json()["token"])
    assert boss.whoami()["scope"] == "admin"
    with pytest.raises(Conflict, match="yourself"):
        boss.remove_user("boss")
    admin.remove_user("boss")
    with pytest.raises(Unauthorized):
        boss.users()


def test_the_store_never_deletes_the_last_admin(tmp_path) -> None:
    # Over HTTP the caller is an admin too, so this guard is reached only by races; check it directly.
    store = Store(tmp_path / "db.sqlite")
    auth = Auth(store)
    auth.ensure_admin("first admin pw")
    auth.add_user("solo", PASSWORD, "viewer")
    token, _ = auth.issue("admin", "admin", None, None)
    assert store.delete_user("admin") is False
    assert store.get_user("admin") is not None and auth.verify(token) is not None
    with pytest.raises(ApiError) as info:
        auth.delete_user("admin", caller="someone-else")
    assert info.value.status == 409 and info.value.reason == "last-admin"
    auth.delete_user("solo", caller="admin")
    assert store.get_user("solo") is None
    store.close()


def test_login_rate_limit_applies_to_new_users(manager) -> None:
    admin = manager.client()
    admin.add_user("rita", PASSWORD, "viewer")
    for _ in range(10):
        resp = login(manager, "rita", "wrong password")
        assert resp.status_code == 401 and resp.json()["reason"] == "bad-credentials"
    resp = login(manager, "rita", PASSWORD)
    assert resp.status_code == 429 and resp.json()["reason"] == "rate-limited"


def test_client_user_methods(manager) -> None:
    admin = manager.client()
    assert admin.add_user("carl", PASSWORD, "viewer")["role"] == "viewer"
    assert admin.add_user("carla", PASSWORD)["role"] == "deployer"
    assert {"carl", "carla"} <= {u["username"] for u in admin.users()}
    admin.set_password("carl", "another password")
    carl = ManagerClient(manager.url, login(manager, "carl", "another password").json()["token"])
    with pytest.raises(Forbidden, match="viewer"):
        carl.users()
    carl.set_password("carl", "yet another one")
    admin.remove_user("carl")
    admin.remove_user("carla")
    assert {"carl", "carla"}.isdisjoint(u["username"] for u in admin.users())
