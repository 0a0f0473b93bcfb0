"""The sample as a smoke test, and secrets that never leak: a real manager on both runtimes, real runners."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
import requests

import jupyter_deploy
from jupyter_deploy.errors import Conflict, DeployError, SmokeTestFailed
from jupyter_deploy.progress import Progress

FRAME = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, 0.0, 2.0]})
SMOKE_TIMEOUT = 2
SECRET = "postgres://scott:tiger-" + hashlib.sha256(os.urandom(16)).hexdigest()[:20] + "@db/prod"
ROTATED = "postgres://scott:lion-" + hashlib.sha256(os.urandom(16)).hexdigest()[:20] + "@db/prod"


def double(data: pd.DataFrame) -> list:
    """Twice column a."""
    return (data["a"] * 2).tolist()


def ratio(data: pd.DataFrame) -> list:
    """a over b, which the sample's second row makes a division by zero."""
    return [a / b for a, b in zip(data["a"], data["b"])]


def slow(data: pd.DataFrame) -> list:
    """Longer than the manager's smoke test limit."""
    time.sleep(SMOKE_TIMEOUT * 4)
    return []


def opaque(data: pd.DataFrame) -> object:
    """Something JSON cannot carry."""
    return object()


def db_facts(data: pd.DataFrame) -> dict:
    """What the service knows of its secret (a hash, never the value) and of its plain variable."""
    return {"sha": hashlib.sha256(os.environ["DB_URL"].encode()).hexdigest(), "mode": os.environ["MODE"],
            "rows": len(data)}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module", params=["process", "docker"])
def runtime_manager(request, tmp_path_factory):
    """One manager per runtime, with a short smoke test limit."""
    from ..harness import ManagerProcess

    if request.param == "docker":
        request.getfixturevalue("docker_client")
    manager = ManagerProcess(tmp_path_factory.mktemp(f"smoke-{request.param}"), runtime=request.param,
                             extra_args=[f"--ManagerApp.smoke_timeout={SMOKE_TIMEOUT}"]).start()
    yield manager
    manager.cleanup()


def quiet() -> Progress:
    """Progress that collects lines instead of printing them."""
    return Progress("test", rich=False, stream=io.StringIO())


def deploy(manager, name, functions, **kwargs):
    """deploy() against this manager, quietly."""
    return jupyter_deploy.deploy(name, functions, url=manager.url, token=manager.token, progress=quiet(), **kwargs)


class CallLoop:
    """Calls one entrypoint through the manager, back to back, until stopped; keeps every answer."""

    def __init__(self, manager, name: str, entrypoint: str, token: str) -> None:
        self.url = f"{manager.url}/services/{name}/{entrypoint}"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.answers: list[tuple[int, str, str]] = []
        self._stop = threading.Event()
        self._new_answer = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = {"data": FRAME.to_dict(orient="records")}
        with requests.Session() as http:
            while not self._stop.is_set():
                try:
                    resp = http.post(self.url, json=body, headers=self.headers, timeout=60)
                    self.answers.append((resp.status_code, resp.headers.get("X-Service-Version", ""), resp.text))
                except requests.RequestException as exc:
                    self.answers.append((0, "", repr(exc)))
                with self._new_answer:
                    self._new_answer.notify_all()

    def wait_until(self, condition, timeout: float = 120) -> None:
        """Block until ``condition(answers)`` holds (checked at each answer); fail after ``timeout`` s."""
        with self._new_answer:
            assert self._new_answer.wait_for(lambda: condition(self.answers), timeout), self.answers[-3:]

    def __enter__(self) -> CallLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def failures(self) -> list[tuple[int, str, str]]:
        """Every answer that was not a 200."""
        return [a for a in self.answers if a[0] != 200]


def test_a_function_broken_on_the_sample_fails_the_deploy_and_main_keeps_serving(runtime_manager):
    good = deploy(runtime_manager, "calc", {"double": double}, sample=FRAME)
    assert good.smoke["sample"] is True
    assert good.smoke_lines() == ["double(sample) -> [2.0, 4.0, 6.0]"]
    assert "double(sample) -> [2.0, 4.0, 6.0]" in repr(good)
    assert "double(sample) -&gt; [2.0, 4.0, 6.0]" in good._repr_html_()

    with CallLoop(runtime_manager, "calc", "double", good.token) as loop:
        with pytest.raises(SmokeTestFailed) as info:
            deploy(runtime_manager, "calc", {"double": ratio}, sample=FRAME)
        # Calls during the failed deploy all went to the old main, and all answered.
        loop.wait_until(lambda answers: len(answers) >= 3)
    assert loop.answers and not loop.failures(), loop.failures()[:3]
    assert {a[1] for a in loop.answers} == {good.version}

    failure = info.value
    assert "ZeroDivisionError" in failure.message and "smoke test" in failure.message
    line = ratio.__code__.co_firstlineno + 2
    # The traceback is the user's: the frame of ratio at its line, with its source, and no runner frame.
    assert f'File "{__file__}", line {line}, in ratio' in failure.traceback
    assert "return [a / b for a, b in zip(data[\"a\"], data[\"b\"])]" in failure.traceback
    assert "jupyter_deploy_runner" not in failure.traceback
    assert failure.traceback.rstrip().endswith("ZeroDivisionError: float division by zero")

    described = runtime_manager.client().service("calc")
    assert described["main_version"] == good.version
    (failed,) = [v for v in described["versions"] if v["status"] == "failed"]
    assert "ZeroDivisionError" in failed["error"]
    # It never takes traffic later either: a promote runs the smoke test again, and it fails again.
    with pytest.raises(Conflict, match="ZeroDivisionError"):
        runtime_manager.client().promote("calc", failed["version"])
    assert runtime_manager.client().service("calc")["main_version"] == good.version


def test_a_timeout_an_unencodable_answer_and_no_sample(runtime_manager):
    with pytest.raises(SmokeTestFailed) as info:
        deploy(runtime_manager, "slowpoke", [slow], sample=FRAME)
    assert f"within {SMOKE_TIMEOUT} s" in info.value.message and "ManagerApp.smoke_timeout" in info.value.message

    with pytest.raises(SmokeTestFailed) as info:
        deploy(runtime_manager, "opaque", [opaque], sample=FRAME)
    assert info.value.entrypoint["kind"] == "unserialisable" and "cannot be sent as JSON" in info.value.message

    # Without a sample nothing is called, so a function that would fail deploys, and the card says why.
    dep = deploy(runtime_manager, "unchecked", [ratio])
    assert dep.smoke == {"sample": False, "entrypoints": []}
    assert "no entrypoint was called" in dep.smoke_lines()[0] and "no entrypoint was called" in dep._repr_html_()


def cli(manager, *args, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``jupyter-deploy ...`` against the manager with its admin token."""
    env = dict(os.environ, JUPYTER_DEPLOY_URL=manager.url, JUPYTER_DEPLOY_TOKEN=manager.token)
    return subprocess.run([sys.executable, "-m", "jupyter_deploy.cli", *args], input=stdin, capture_output=True,
                          text=True, env=env, timeout=600)


def api_answers(manager, name: str, version: str) -> str:
    """The text of every API answer about the service, its secrets, events, tokens and logs."""
    h = manager.headers()
    paths = ["/api/services", f"/api/services/{name}", f"/api/services/{name}/versions/{version}",
             f"/api/services/{name}/versions/{version}/events?follow=0", f"/api/services/{name}/logs?tail=1000",
             "/api/events", "/api/secrets", "/api/tokens", f"/services/{name}/openapi.json",
             f"/api/services/{name}/traffic"]
    return "\n".join(requests.get(manager.url + p, headers=h, timeout=60).text for p in paths)


def files_holding(root, value: str) -> list[str]:
    """Files under ``root`` whose bytes hold ``value``."""
    needle = value.encode()
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
    return found


def docker_views(manager, name: str) -> str:
    """``docker history`` and ``docker inspect`` of the service's images and containers."""
    instance = (manager.data_dir / "instance").read_text().strip()
    label = f"label=io.jupyter-deploy.instance={instance}"
    containers = subprocess.run(["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True,
                                check=True).stdout.split()
    images = subprocess.run(["docker", "images", "-q", f"jupyter-deploy/app-{instance}"], capture_output=True,
                            text=True, check=True).stdout.split()
    assert containers and images
    out = [subprocess.run(["docker", "history", "--no-trunc", image], capture_output=True, text=True,
                          check=True).stdout for image in images]
    # One at a time: a replaced runner's container may go while this looks.
    out += [subprocess.run(["docker", "inspect", one], capture_output=True, text=True).stdout
            for one in images + containers]
    return "\n".join(out)


def test_secrets_reach_the_service_and_nothing_else_and_rotate_without_a_failed_call(runtime_manager):
    manager = runtime_manager
    # The value comes from standard input, never from the command line.
    assert cli(manager, "secret", "set", "DB_URL", SECRET).returncode == 2
    done = cli(manager, "secret", "set", "DB_URL", stdin=SECRET + "\n")
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr

    with pytest.raises(DeployError, match="NO_SUCH_SECRET is not set"):
        deploy(manager, "vault", [db_facts], sample=FRAME, secrets=["NO_SUCH_SECRET"])

    dep = deploy(manager, "vault", [db_facts], sample=FRAME, secrets=["DB_URL"], env={"MODE": "prod"})
    assert dep.connect().db_facts(FRAME) == {"sha": sha(SECRET), "mode": "prod", "rows": 3}
    assert f'"sha": "{sha(SECRET)}"' in dep.smoke_lines()[0]

    listing = cli(manager, "secret", "ls")
    assert "DB_URL" in listing.stdout and f"vault {dep.version}" in listing.stdout and SECRET not in listing.stdout

    def no_trace(value: str) -> None:
        assert value not in api_answers(manager, "vault", dep.version)
        assert value not in manager.log()
        # The database keeps it encrypted; bundles, stages and logs never had it.
        assert not files_holding(manager.data_dir, value)
        if manager.runtime == "docker":
            views = docker_views(manager, "vault")
            assert value not in views and "/run/jupyter-deploy" in views

    no_trace(SECRET)
    key = manager.data_dir / "secret.key"
    assert key.stat().st_mode & 0o777 == 0o600

    with CallLoop(manager, "vault", "db_facts", dep.token) as loop:
        answer = manager.client().set_secret("DB_URL", ROTATED)
        # Switched by the time the answer came: the very next call has the new value.
        assert json.loads(requests.post(loop.url, json={"data": FRAME.to_dict(orient="records")},
                                        headers=loop.headers, timeout=60).text)["sha"] == sha(ROTATED)
        loop.wait_until(lambda answers: any(sha(ROTATED) in a[2] for a in answers))
    assert answer["replaced"] and answer["restarted"] == [{"service": "vault", "version": dep.version}]
    assert not answer["failed"] and SECRET not in json.dumps(answer) and ROTATED not in json.dumps(answer)
    assert loop.answers and not loop.failures(), loop.failures()[:3]
    seen = [json.loads(a[2])["sha"] for a in loop.answers]
    assert set(seen) <= {sha(SECRET), sha(ROTATED)}
    # Once the new runner serves, the old one never answers again.
    assert seen[seen.index(sha(ROTATED)):] == [sha(ROTATED)] * (len(seen) - seen.index(sha(ROTATED)))
    no_trace(ROTATED)

    refused = cli(manager, "secret", "rm", "DB_URL")
    assert refused.returncode == 1 and "used by vault" in refused.stderr
    assert cli(manager, "secret", "rm", "DB_URL", "--force").returncode == 0
    assert "DB_URL" not in cli(manager, "secret", "ls").stdout
    manager.client().delete("vault")


def test_a_folder_deploy_gets_secrets_and_env_from_the_command_line(runtime_manager, tmp_path):
    manager = runtime_manager
    folder = tmp_path / "svc"
    folder.mkdir()
    (folder / "service.py").write_text(
        "import hashlib, os\n"
        "from jupyter_deploy import service\n\n\n"
        "@service.entrypoint\n"
        "def whoami(name: str) -> dict:\n"
        "    \"\"\"Greet, and say what the service was given.\"\"\"\n"
        "    token = os.environ['API_TOKEN']\n"
        "    return {'hello': name, 'region': os.environ['REGION'], 'sha': hashlib.sha256(token.encode()).hexdigest()}\n"
    )
    value = "api-" + hashlib.sha256(os.urandom(8)).hexdigest()
    assert cli(manager, "secret", "set", "API_TOKEN", stdin=value).returncode == 0
    done = cli(manager, "deploy", "folder-svc", "1.0.0", str(folder), "--secret", "API_TOKEN", "-e", "REGION=eu-west")
    assert done.returncode == 0, done.stderr
    # Without a sample nothing was called before traffic, and the summary says so.
    assert "smoke test: none" in done.stdout and value not in done.stdout + done.stderr
    answer = requests.post(f"{manager.url}/services/folder-svc/whoami", json={"name": "ada"},
                           headers=manager.headers(), timeout=60).json()
    assert answer == {"hello": "ada", "region": "eu-west", "sha": sha(value)}
    bundle = manager.data_dir / "bundles" / "folder-svc" / "1.0.0"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["secrets"] == ["API_TOKEN"] and manifest["env"] == {"REGION": "eu-west"}
    assert not files_holding(manager.data_dir, value)
    manager.client().delete("folder-svc")


def test_a_runner_restarted_after_a_manager_restart_still_has_its_secret(runtime_manager):
    manager = runtime_manager
    value = "restart-" + hashlib.sha256(os.urandom(8)).hexdigest()
    manager.client().set_secret("SURVIVOR", value)

    def survivor(data: pd.DataFrame) -> str:
        return hashlib.sha256(os.environ["SURVIVOR"].encode()).hexdigest()

    dep = deploy(manager, "survivor", [survivor], sample=FRAME, secrets=["SURVIVOR"])
    manager.stop()
    manager.start()
    client = manager.client()
    url, body = f"{manager.url}/services/survivor/survivor", {"data": FRAME.to_dict("records")}
    # Answered through the proxy: the new manager has routed it, after asking the runtime to start it.
    wait_until = time.monotonic() + 120
    while requests.post(url, json=body, headers=manager.headers(), timeout=60).status_code != 200:
        assert time.monotonic() < wait_until, "the service was not routed again after the manager restart"
        time.sleep(0.1)
    before = len([e for e in client.events_log("survivor") if e["kind"] == "restarted"])
    # The runner dies under the new manager, which starts it again: with the secret it never wrote down.
    if manager.runtime == "docker":
        instance = (manager.data_dir / "instance").read_text().strip()
        subprocess.run(f"docker ps -q --filter label=io.jupyter-deploy.instance={instance} "
                       "--filter label=io.jupyter-deploy.service=survivor | xargs -r docker kill",
                       shell=True, check=True, capture_output=True)
    else:
        state = json.loads(next((manager.data_dir / "versions").glob("survivor--*/state.json")).read_text())
        os.kill(state["pid"], 9)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        restarted = [e for e in client.events_log("survivor") if e["kind"] == "restarted"]
        resp = requests.post(url, json=body, headers=manager.headers(), timeout=60)
        if len(restarted) > before and resp.status_code == 200:
            break
        time.sleep(0.1)
    assert len(restarted) > before and resp.status_code == 200, resp.text
    assert resp.json() == sha(value)
    client.delete("survivor")
    assert dep.version == "0.1.0"


def test_a_function_that_shows_its_secret_has_it_blanked_in_the_deploy_and_the_log(runtime_manager):
    manager = runtime_manager
    value = "leak-" + hashlib.sha256(os.urandom(8)).hexdigest()
    manager.client().set_secret("LEAKY", value)

    def leaky(data: pd.DataFrame) -> str:
        print("connecting with", os.environ["LEAKY"], flush=True)
        return os.environ["LEAKY"]

    dep = deploy(manager, "leaky", [leaky], sample=FRAME, secrets=["LEAKY"])
    # Its caller gets what it returns; the deploy's record and the log API do not.
    assert dep.smoke_lines() == ['leaky(sample) -> "***"']
    assert dep.connect().leaky(FRAME) == value
    # Docker's log driver may hand the container's lines over a moment after they were written.
    deadline = time.monotonic() + 30
    while "connecting with" not in (logs := manager.client().logs("leaky", 1000)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "connecting with ***" in logs and value not in logs
    assert value not in api_answers(manager, "leaky", dep.version)
    manager.client().delete("leaky")


def test_secrets_files_of_containers_removed_behind_the_managers_back_go_at_its_next_start(tmp_path, docker_client):
    from jupyter_deploy_manager.runtimes.docker import DockerRuntime

    from ..conftest import passable

    passable(tmp_path)
    secrets_dir = tmp_path / "run-secrets"
    orphan = secrets_dir / "0123456789abcdef0123456789abcdef"
    orphan.mkdir(parents=True)
    (orphan / "secrets.json").write_text('{"GONE": "value of a container removed outside the manager"}')
    runtime = DockerRuntime(tmp_path / "data", "jdorphantest", secrets_dir=secrets_dir, client=docker_client)
    try:
        assert not orphan.exists() and secrets_dir.is_dir()
    finally:
        runtime.close()
