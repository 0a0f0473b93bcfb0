"""The ``jupyter-deploy`` command against a real manager."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys

import requests

import jupyter_deploy
from jupyter_deploy.progress import Progress


def double(x: float) -> float:
    """Twice x."""
    return 2 * x


def cli(args, env, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run the real command in a subprocess (stdout is a pipe, not a terminal)."""
    return subprocess.run([sys.executable, "-m", "jupyter_deploy.cli", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_login_ls_logs_token_rm_logout(manager, tmp_path):
    env = dict(os.environ, JUPYTER_DEPLOY_CONFIG_DIR=str(tmp_path / "cfg"))
    env.pop("JUPYTER_DEPLOY_URL", None)
    env.pop("JUPYTER_DEPLOY_TOKEN", None)

    result = cli(["ls"], env)
    assert result.returncode == 1 and "jupyter-deploy login" in result.stderr

    result = cli(["login", manager.url, "--password-stdin"], env, stdin="wrong\n")
    assert result.returncode == 1 and "wrong username or password" in result.stderr

    result = cli(["login", manager.url, "--username", "admin", "--password-stdin"], env, stdin=manager.password + "\n")
    assert result.returncode == 0, result.stderr
    creds = tmp_path / "cfg" / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert json.loads(creds.read_text())["url"] == manager.url

    result = cli(["ls"], env)
    assert result.returncode == 0 and "No services" in result.stdout

    jupyter_deploy.deploy("doubler", [double], url=manager.url, token=manager.token,
                          progress=Progress("doubler", rich=False, stream=io.StringIO()))
    result = cli(["ls"], env)
    assert "doubler" in result.stdout and "running" in result.stdout and "double" in result.stdout

    requests.post(f"{manager.url}/services/doubler/double", json={"x": 21},
                  headers=manager.headers()).raise_for_status()
    result = cli(["logs", "doubler", "-n", "50"], env)
    assert result.returncode == 0 and "serving doubler" in result.stdout

    result = cli(["token", "doubler", "--expires", "1"], env)
    token = result.stdout.strip()
    assert result.returncode == 0 and token.startswith("jdt_") and "\n" not in token
    resp = requests.post(f"{manager.url}/services/doubler/double", json={"x": 21},
                         headers={"Authorization": f"Bearer {token}"})
    assert resp.json() == 42
    # An invoke token cannot manage services.
    result = cli(["ls", "--token", token], env)
    assert result.returncode == 1 and "cannot use the management API" in result.stderr

    result = cli(["rm", "doubler", "--yes"], env)
    assert result.returncode == 0
    assert "doubler" not in cli(["ls"], env).stdout
    result = cli(["logs", "doubler"], env)
    assert result.returncode == 1 and "no service named 'doubler'" in result.stderr

    assert cli(["logout"], env).returncode == 0
    assert not creds.exists()
    assert cli(["--version"], env).stdout.startswith("jupyter-deploy ")


def test_logs_follow_prints_new_lines_as_they_come(manager, tmp_path):
    env = dict(os.environ, JUPYTER_DEPLOY_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_DEPLOY_URL=manager.url,
               JUPYTER_DEPLOY_TOKEN=manager.token, PYTHONUNBUFFERED="1")
    dep = jupyter_deploy.deploy("follower", [double], url=manager.url, token=manager.token,
                                progress=Progress("follower", rich=False, stream=io.StringIO()))
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_deploy.cli", "logs", "follower", "-f", "-n", "1"],
                            env=env, stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()  # the tail: the stream is open once it has arrived
        assert first
        requests.post(f"{manager.url}/services/follower/double", json={"x": 5},
                      headers={"Authorization": f"Bearer {dep.token}"}).raise_for_status()
        line = proc.stdout.readline()
        while "/double" not in line:
            line = proc.stdout.readline()
        assert "/double" in line
    finally:
        proc.kill()
        proc.wait(10)
