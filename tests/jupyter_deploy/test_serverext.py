"""The jupyter-server extension on a real ``jupyter server`` talking to a real manager."""

from __future__ import annotations

import io
import json
import re
import stat
import subprocess
import sys

import requests

import jupyter_deploy
from jupyter_deploy.progress import Progress


def greet(name: str = "world") -> str:
    """Say hello."""
    print(f"greeting {name}", flush=True)
    return f"hello {name}"


def plain(text: str) -> str:
    """Text without terminal colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def login(server, manager) -> requests.Response:
    """Log the server in to the manager through the extension."""
    return server.api("POST", "login", json={"url": manager.url, "username": "admin", "password": manager.password})


def test_enabled_on_install():
    """``pip install`` enables the server extension and the lab extension: no manual step."""
    servers = subprocess.run([sys.executable, "-m", "jupyter_server", "extension", "list"],
                             capture_output=True, text=True, timeout=120)
    text = plain(servers.stdout + servers.stderr)
    assert "jupyter_deploy enabled" in text, text
    labs = subprocess.run([sys.executable, "-m", "jupyterlab.labextensions", "list"],
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in plain(labs.stdout + labs.stderr).splitlines() if "jupyter-deploy" in line]
    assert lines and "enabled" in lines[0] and "OK" in lines[0], labs.stdout + labs.stderr


def test_login_keeps_the_token_on_the_server(jupyter_factory, manager):
    """Login stores the token server-side (0600), shared with kernels; the browser never sees it."""
    server = jupyter_factory("server")
    before = server.api("GET", "status").json()
    assert before["logged_in"] is False and before["reason"] == "not-logged-in"
    refused = server.api("GET", "services")
    assert refused.status_code == 401 and refused.json()["reason"] == "not-logged-in"
    assert "log in" in refused.json()["message"]

    wrong = server.api("POST", "login", json={"url": manager.url, "username": "admin", "password": "nope"})
    assert wrong.status_code == 401 and wrong.json()["reason"] == "bad-credentials"
    missing = server.api("POST", "login", json={"url": manager.url})
    assert missing.status_code == 422 and "username" in missing.json()["message"]
    not_url = server.api("POST", "login", json={"url": "localhost", "username": "a", "password": "b"})
    assert not_url.status_code == 422 and "http://" in not_url.json()["message"]

    ok = login(server, manager)
    assert ok.status_code == 200, ok.text
    assert ok.json()["logged_in"] and ok.json()["username"] == "admin" and ok.json()["role"] == "admin"
    stored = json.loads((server.deploy_config / "credentials.json").read_text())
    assert stored["url"] == manager.url
    assert stat.S_IMODE((server.deploy_config / "credentials.json").stat().st_mode) == 0o600
    # The token stays on the server: no answer carries it.
    for path in ("status", "services"):
        assert stored["token"] not in server.api("GET", path).text
    assert stored["token"] not in ok.text
    # The same login works for the CLI and kernels of this user.
    ls = subprocess.run([sys.executable, "-m", "jupyter_deploy.cli", "ls"], capture_output=True, text=True,
                        env=server.env, timeout=60)
    assert ls.returncode == 0, ls.stderr

    out = server.api("POST", "logout").json()
    assert out["logged_in"] is False and not (server.deploy_config / "credentials.json").exists()


def test_jupyter_auth_guards_the_api(jupyter_factory):
    """The extension's routes need the Jupyter server's own authentication."""
    server = jupyter_factory("server")
    anonymous = requests.get(f"{server.url}/jupyter-deploy/api/status", timeout=30)
    assert anonymous.status_code == 403
    posted = requests.post(f"{server.url}/jupyter-deploy/api/login", json={}, timeout=30)
    assert posted.status_code == 403


def test_services_actions_logs_and_docs(jupyter_factory, manager):
    """List, read logs, open docs with an invoke-only token, stop, start, delete: each takes effect on the manager."""
    server = jupyter_factory("server")
    assert login(server, manager).ok
    deployment = jupyter_deploy.deploy("greeter", [greet], url=manager.url, token=manager.token,
                                       progress=Progress("greeter", rich=False, stream=io.StringIO()))
    assert requests.post(deployment.endpoint(), json={"name": "lab"}, headers=manager.headers(deployment.token),
                         timeout=30).json() == "hello lab"

    services = server.api("GET", "services").json()["services"]
    [service] = services
    assert service["name"] == "greeter" and service["status"] == "running"
    assert [v["version"] for v in service["versions"]] == [deployment.version]
    assert server.api("GET", "services/greeter").json()["main_version"] == deployment.version

    logs = server.api("GET", "services/greeter/logs", params={"tail": 50})
    assert logs.ok and "greeting lab" in logs.json()["text"]
    bad_tail = server.api("GET", "services/greeter/logs", params={"tail": "many"})
    assert bad_tail.status_code == 422 and "tail" in bad_tail.json()["message"]

    link = server.api("GET", "services/greeter/docs-link").json()["url"]
    assert link.startswith(f"{manager.url}/services/greeter/docs#token=")
    docs_token = link.split("#token=")[1]
    assert server.api("GET", "services/greeter/docs-link").json()["url"] == link, "the docs token is reused"
    headers = {"Authorization": f"Bearer {docs_token}"}
    assert requests.get(f"{manager.url}/services/greeter/openapi.json", headers=headers, timeout=30).ok
    # Invoke scope only: it cannot manage anything.
    assert requests.get(f"{manager.url}/api/services", headers=headers, timeout=30).status_code == 403

    stopped = server.api("POST", "services/greeter/stop")
    assert stopped.ok, stopped.text
    assert manager.client().service("greeter")["status"] == "stopped"
    assert server.api("POST", f"services/greeter/versions/{deployment.version}/start").ok
    assert manager.client().service("greeter")["status"] == "running"

    # A docs token revoked elsewhere is replaced, not handed out again.
    record = next(t for t in manager.client().tokens() if t["note"] == "JupyterLab docs tab")
    manager.client().revoke(record["id"])
    fresh = server.api("GET", "services/greeter/docs-link").json()["url"]
    assert fresh != link
    assert requests.get(f"{manager.url}/services/greeter/openapi.json", timeout=30,
                        headers={"Authorization": f"Bearer {fresh.split('#token=')[1]}"}).ok

    unknown = server.api("POST", "services/nothing-here/stop")
    assert unknown.status_code == 404 and unknown.json()["reason"] == "unknown-service"
    deleted = server.api("DELETE", "services/greeter")
    assert deleted.ok and deleted.json() == {"deleted": "greeter"}
    assert server.api("GET", "services").json() == {"services": []}
    assert requests.get(f"{manager.url}/api/services/greeter", headers=manager.headers(), timeout=30).status_code == 404


def test_unreachable_and_revoked_logins_are_told_apart(jupyter_factory, manager):
    """A stopped manager is "manager unreachable"; a revoked token is "not logged in", both as JSON messages."""
    server = jupyter_factory("server")
    assert login(server, manager).ok
    stored = json.loads((server.deploy_config / "credentials.json").read_text())
    whoami = requests.get(f"{manager.url}/api/tokens", headers=manager.headers(stored["token"]), timeout=30).json()
    mine = [t for t in whoami["tokens"] if t["note"] != "JupyterLab docs tab"]
    for record in mine:
        requests.delete(f"{manager.url}/api/tokens/{record['id']}", headers=manager.headers(), timeout=30)
    status = server.api("GET", "status").json()
    assert status["logged_in"] is False and status["reachable"] is True
    assert status["reason"] == "not-logged-in" and "log in again" in status["message"]
    refused = server.api("GET", "services")
    assert refused.status_code == 401 and refused.json()["reason"] == "not-logged-in"

    assert login(server, manager).ok
    manager.stop()
    status = server.api("GET", "status").json()
    assert status["reachable"] is False and status["reason"] == "manager-unreachable"
    assert manager.url in status["message"]
    down = server.api("GET", "services")
    assert down.status_code == 502 and down.json()["reason"] == "manager-unreachable"
    assert "cannot reach the manager" in down.json()["message"]


def test_manager_url_from_configuration(jupyter_factory, manager):
    """``JupyterDeploy.manager_url`` (traitlets) points the extension at a manager before any login."""
    server = jupyter_factory("server", extra_args=[f"--JupyterDeploy.manager_url={manager.url}",
                                                   "--JupyterDeploy.public_url=http://deploy.example:9"])
    status = server.api("GET", "status").json()
    assert status["manager_url"] == manager.url and status["reachable"] is True and status["logged_in"] is False
    assert status["public_url"] == "http://deploy.example:9"


READ_ONLY_AUTHORIZER = '''
"""A shared Jupyter server's read-only collaborator: may read anything, change and run nothing."""

import json

from jupyter_server.auth import Authorizer


class ReadOnly(Authorizer):
    """Says yes to "read" only, and writes down what it was asked."""

    def is_authorized(self, handler, user, action, resource):
        with open(ASKED, "a") as fh:
            fh.write(json.dumps([resource, action]) + "\\n")
        return action == "read"
'''


def test_a_read_only_collaborator_can_look_but_not_change(jupyter_factory, manager, tmp_path):
    """Every route asks the Jupyter server's Authorizer (resource ``jupyter_deploy``): read yes, write and run no."""
    from jupyter_deploy.config import save

    deployment = jupyter_deploy.deploy("greeter", [greet], url=manager.url, token=manager.token,
                                       progress=Progress("greeter", rich=False, stream=io.StringIO()))
    authz = tmp_path / "authz"
    authz.mkdir()
    asked = tmp_path / "asked.jsonl"
    (authz / "readonly_authz.py").write_text(f"ASKED = {str(asked)!r}\n" + READ_ONLY_AUTHORIZER)
    server = jupyter_factory("server", extra_args=["--ServerApp.authorizer_class=readonly_authz.ReadOnly"],
                             env={"PYTHONPATH": str(authz)})
    # The owner of the server logged in; the collaborator uses that login through the extension.
    credentials = save(manager.url, manager.token, "admin", server.deploy_config)

    assert server.api("GET", "status").json()["logged_in"] is True
    [listed] = server.api("GET", "services").json()["services"]
    assert listed["name"] == "greeter"
    assert server.api("GET", "services/greeter").ok
    assert server.api("GET", "services/greeter/logs", params={"tail": 5}).ok

    refused = [
        ("DELETE", "services/greeter", {}),
        ("DELETE", f"services/greeter/versions/{deployment.version}", {}),
        ("POST", "services/greeter/stop", {}),
        ("POST", f"services/greeter/versions/{deployment.version}/restart", {}),
        ("POST", "services/greeter/promote", {"json": {"version": deployment.version}}),
        ("POST", "logout", {}),
        ("POST", "login", {"json": {"url": manager.url, "username": "admin", "password": manager.password}}),
        # A docs link hands out a token that calls the service: that is running code, not reading.
        ("GET", "services/greeter/docs-link", {}),
    ]
    for method, path, kwargs in refused:
        resp = server.api(method, path, **kwargs)
        assert resp.status_code == 403, (method, path, resp.status_code, resp.text)
        assert resp.json()["reason"] == "forbidden" and "jupyter_deploy" in resp.json()["message"], resp.text

    # Nothing happened on the manager, and the owner's login is still there.
    service = manager.client().service("greeter")
    assert service["status"] == "running" and [v["version"] for v in service["versions"]] == [deployment.version]
    assert json.loads(credentials.read_text())["token"] == manager.token
    questions = {tuple(json.loads(line)) for line in asked.read_text().splitlines()}
    assert {("jupyter_deploy", "read"), ("jupyter_deploy", "write"), ("jupyter_deploy", "execute")} <= questions
