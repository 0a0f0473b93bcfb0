"""Service folders: the ``service`` SDK, ``bundle_folder``, and the article's CLI flow against a real manager."""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from jupyter_deploy import service
from jupyter_deploy.bundle import Bundle
from jupyter_deploy.errors import CaptureError
from jupyter_deploy.folder import bundle_folder, read_requirements

from ..conftest import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "iris_service"
IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]

# Calls an entrypoint of a payload in a fresh interpreter that cannot import jupyter_deploy
# nor the service folder: what a deployed service has. Prints the JSON answer.
CALLER = textwrap.dedent(
    """
    import json, sys
    sys.modules["jupyter_deploy"] = None
    import cloudpickle
    payload, entry, kwargs = sys.argv[1:4]
    with open(payload, "rb") as fh:
        functions = cloudpickle.load(fh)["entrypoints"]
    kwargs = json.loads(kwargs)
    if "frame" in kwargs:
        import pandas
        kwargs = {"data": pandas.DataFrame(**kwargs["frame"])}
    print(json.dumps(functions[entry](**kwargs)))
    """
)


def make_folder(root: Path, service_py: str, **files: str) -> Path:
    """A service folder with ``service.py`` and other files (``helpers_py`` names ``helpers.py``)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "service.py").write_text(textwrap.dedent(service_py))
    for name, text in files.items():
        path = root / name.replace("_py", ".py").replace("_txt", ".txt")
        path.write_text(textwrap.dedent(text))
    return root


def call_isolated(bundle: Bundle, entry: str, kwargs: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess:
    """Call ``entry`` from the bundle's payload in a process without jupyter_deploy or the folder."""
    with tarfile.open(fileobj=io.BytesIO(bundle.data)) as tar:
        payload = tar.extractfile("payload.pkl").read()  # type: ignore[union-attr]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    (elsewhere / "payload.pkl").write_bytes(payload)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    return subprocess.run([sys.executable, "-c", CALLER, "payload.pkl", entry, json.dumps(kwargs)], cwd=elsewhere,
                          env=env, capture_output=True, text=True, timeout=120)


SIMPLE = """
    from jupyter_deploy import service

    @service.entrypoint
    def double(x: float) -> float:
        \"\"\"Twice x.\"\"\"
        return 2 * x
"""


# --- the SDK ------------------------------------------------------------------


def test_entrypoint_bare_and_with_arguments():
    with service.collecting() as entries:
        def plain(x: int) -> int:
            return x

        def watched(x: int) -> int:
            return x

        assert service.entrypoint(plain) is plain
        assert service.entrypoint(monitor=True)(watched) is watched
        assert service.registered() == {"plain": plain, "watched": watched}
        assert entries["plain"].monitor is False and entries["watched"].monitor is True
        assert service.is_collecting()
        service.run()  # a no-op while collecting: returns at once
    assert "plain" not in service.registered() and not service.is_collecting()


def test_logger_is_the_stdlib_logger_named_service():
    assert isinstance(service.logger, logging.Logger)
    assert service.logger.name == "service"
    assert logging.getLogger("service") is service.logger


# --- bundle_folder ----------------------------------------------------------


def test_bundle_folder_captures_entrypoints_and_requirements(tmp_path):
    folder = make_folder(tmp_path / "svc", SIMPLE, requirements_txt="""
        # the service's needs

        pandas  # inline comment
        -r requirements-dev.txt
        --requirement other.txt
        packaging>=21; python_version >= "3.8"
    """)
    before = service.registered()
    bundle = bundle_folder(folder, "doubler", "1.0.0")
    manifest = bundle.manifest
    assert manifest["name"] == "doubler" and manifest["version"] == "1.0.0"
    assert [e["name"] for e in manifest["entrypoints"]] == ["double"]
    assert manifest["entrypoints"][0]["doc"] == "Twice x."
    assert "monitor" not in manifest["entrypoints"][0]
    explicit = manifest["inferred"]["explicit"]
    assert explicit[0].startswith("pandas==") and explicit[1].startswith("packaging>=21")
    assert any(r.startswith("pandas==") for r in manifest["requirements"])
    # The caller's own registry and import state are untouched.
    assert service.registered() == before
    assert str(folder) not in sys.path
    assert not [m for m in sys.modules if m.startswith("_jupyter_deploy_service_")]


@pytest.mark.parametrize("line", ["-e .", "--index-url https://example.org/simple", "-c constraints.txt",
                                  "./local_package", "not a requirement!"])
def test_requirements_refuse_unsupported_lines(tmp_path, line):
    folder = make_folder(tmp_path / "svc", SIMPLE, requirements_txt=f"pandas\n{line}\n")
    with pytest.raises(CaptureError) as info:
        bundle_folder(folder, "doubler")
    assert "requirements.txt, line 2" in info.value.message and line.split()[0] in info.value.message


def test_read_requirements_joins_continuations_and_ignores_a_missing_file(tmp_path):
    assert read_requirements(tmp_path / "missing.txt") == []
    path = tmp_path / "requirements.txt"
    path.write_text("pandas \\\n  >=2\nnumpy # why\n\n#scipy\n")
    assert read_requirements(path) == ["pandas >=2", "numpy"]


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(CaptureError, match="is not a folder"):
        bundle_folder(tmp_path / "nowhere", "svc")

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CaptureError, match="has no service.py"):
        bundle_folder(empty, "svc")

    nothing = make_folder(tmp_path / "nothing", "def f(x):\n    return x\n")
    with pytest.raises(CaptureError, match="registers no entrypoint.*@service.entrypoint"):
        bundle_folder(nothing, "svc")

    broken = make_folder(tmp_path / "broken", """
        from jupyter_deploy import service
        import no_such_module_xyz
    """)
    with pytest.raises(CaptureError) as info:
        bundle_folder(broken, "svc")
    message = info.value.message
    assert "failed to load (service.py, line 3)" in message
    assert "ModuleNotFoundError: No module named 'no_such_module_xyz'" in message

    syntax = make_folder(tmp_path / "syntax", "def f(:\n    pass\n")
    with pytest.raises(CaptureError, match=r"\(service.py, line 1\): SyntaxError"):
        bundle_folder(syntax, "svc")

    # An error in a helper module points at the helper's line, the user's own code.
    helper = make_folder(tmp_path / "helper", "import helpers\n", helpers_py="x = 1\nraise ValueError('bad data')\n")
    with pytest.raises(CaptureError, match=r"\(helpers.py, line 2\): ValueError: bad data"):
        bundle_folder(helper, "svc")
    assert "helpers" not in sys.modules

    # The service has no jupyter_deploy: using the SDK module inside a function is refused at once.
    sdk = make_folder(tmp_path / "sdk", """
        from jupyter_deploy import service

        def note(x):
            service.logger.info("got %s", x)

        @service.entrypoint
        def predict(x: float) -> float:
            note(x)
            return x
    """)
    with pytest.raises(CaptureError, match=r"entrypoint 'predict' uses 'service' \(jupyter_deploy.service\) "
                                           r"when it runs \(in note\).*logger = service.logger"):
        bundle_folder(sdk, "svc")

    with pytest.raises(CaptureError, match="service name 'Bad_Name' is invalid"):
        bundle_folder(make_folder(tmp_path / "named", SIMPLE), "Bad_Name")


def test_helper_modules_and_data_files_travel_by_value(tmp_path):
    folder = make_folder(tmp_path / "svc", """
        from pathlib import Path

        from jupyter_deploy import service
        from helpers import scale

        FACTOR = float((Path(__file__).parent / "factor.txt").read_text())

        @service.entrypoint(monitor=True)
        def predict(x: float) -> float:
            \"\"\"x scaled by the factor in factor.txt.\"\"\"
            return scale(x, FACTOR)

        # Called unconditionally: must not start a server while the folder is collected.
        service.run()
    """, helpers_py="""
        def scale(x, factor):
            return x * factor + OFFSET

        OFFSET = 0.5
    """, factor_txt="3\n")
    bundle = bundle_folder(folder, "scaler")
    assert bundle.manifest["entrypoints"][0]["monitor"] is True
    assert "helpers" not in sys.modules
    result = call_isolated(bundle, "predict", {"x": 2}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == 6.5


def test_same_helper_name_in_two_folders_and_in_the_caller(tmp_path, monkeypatch):
    first = make_folder(tmp_path / "one", """
        from jupyter_deploy import service
        import helpers

        @service.entrypoint
        def which() -> str:
            return helpers.NAME
    """, helpers_py="NAME = 'one'\n")
    second = make_folder(tmp_path / "two", (first / "service.py").read_text(), helpers_py="NAME = 'two'\n")
    # A module of the same name already imported by the caller is hidden, then restored.
    mine = type(sys)("helpers")
    monkeypatch.setitem(sys.modules, "helpers", mine)
    answers = []
    for folder in (first, second):
        result = call_isolated(bundle_folder(folder, "which"), "which", {}, tmp_path)
        assert result.returncode == 0, result.stderr
        answers.append(json.loads(result.stdout))
    assert answers == ["one", "two"]
    assert sys.modules["helpers"] is mine


def test_example_folder_predicts_and_logs_without_jupyter_deploy(tmp_path):
    bundle = bundle_folder(EXAMPLE, "iris-service", "1.0.0")
    manifest = bundle.manifest
    assert manifest["features"]["names"] == IRIS_COLUMNS
    assert any(r.startswith("scikit-learn==") for r in manifest["inferred"]["explicit"])
    result = call_isolated(bundle, "predict", {"frame": {"data": IRIS_ROWS, "columns": IRIS_COLUMNS}}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected_iris()
    assert "INFO service: predict: 3 rows -> " in result.stderr


def expected_iris() -> list:
    """What the committed model answers for IRIS_ROWS."""
    with open(EXAMPLE / "models" / "classifier.pkl", "rb") as fh:
        model = pickle.load(fh)
    return model.predict(pd.DataFrame(IRIS_ROWS, columns=IRIS_COLUMNS)).tolist()


def test_committed_model_is_small():
    assert (EXAMPLE / "models" / "classifier.pkl").stat().st_size < 200_000


# --- python service.py --------------------------------------------------------


def test_running_service_py_serves_locally(tmp_path):
    port = free_port()
    folder = tmp_path / "iris_local"
    shutil.copytree(EXAMPLE, folder)
    script = (folder / "service.py").read_text().replace("service.run()", f"service.run(port={port})")
    (folder / "service.py").write_text(script)
    proc = subprocess.Popen([sys.executable, "service.py"], cwd=folder, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()  # type: ignore[union-attr]
            try:
                health = requests.get(f"{url}/healthz", timeout=1)
                if health.ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the local service did not answer"
            time.sleep(0.1)
        assert health.json()["name"] == "iris-local"
        records = [dict(zip(IRIS_COLUMNS, row)) for row in IRIS_ROWS]
        resp = requests.post(f"{url}/predict", json={"data": records}, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.json() == expected_iris()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out
    assert "predict: 3 rows" in out


# --- the article's flow, with the real CLI and a real manager -----------------


def jupyter_deploy_cli() -> list[str]:
    """The installed ``jupyter-deploy`` command (the module when no script is installed next to Python)."""
    script = Path(sys.executable).with_name("jupyter-deploy")
    return [str(script)] if script.exists() else [sys.executable, "-m", "jupyter_deploy.cli"]


def test_deploy_folder_with_the_cli_then_call_it_with_requests(manager, tmp_path):
    env = dict(os.environ, JUPYTER_DEPLOY_CONFIG_DIR=str(tmp_path / "cfg"))
    env.pop("JUPYTER_DEPLOY_URL", None)
    env.pop("JUPYTER_DEPLOY_TOKEN", None)

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        # Pipes, not a terminal: what a script sees.
        return subprocess.run([*jupyter_deploy_cli(), *args], cwd=REPO, env=env, input=stdin,
                              capture_output=True, text=True, timeout=900)

    result = cli("login", manager.url, "--password-stdin", stdin=manager.password + "\n")
    assert result.returncode == 0, result.stderr

    result = cli("deploy", "iris-service", "1.0.0", "examples/iris_service")
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "[iris-service] collecting the entrypoints of examples/iris_service" in result.stderr
    assert "[iris-service] ready in" in result.stderr
    assert "Deployed iris-service 1.0.0: running" in result.stdout
    assert f"POST {manager.url}/services/iris-service/predict" in result.stdout
    assert "token: jdt_" in result.stdout

    result = cli("token", "iris-service")
    token = result.stdout.strip()
    assert result.returncode == 0 and token.startswith("jdt_") and "\n" not in token, result.stderr

    records = [dict(zip(IRIS_COLUMNS, row)) for row in IRIS_ROWS]
    response = requests.post(f"{manager.url}/services/iris-service/predict", json={"data": records},
                             headers={"Authorization": f"Bearer {token}"}, timeout=60)
    print(f"Response: {response.status_code} - {response.reason}")
    assert response.status_code == 200, response.text
    assert response.json() == expected_iris()

    result = cli("ls")
    assert "iris-service" in result.stdout and "1.0.0" in result.stdout and "running" in result.stdout

    deadline = time.monotonic() + 30
    while True:
        result = cli("logs", "iris-service")
        assert result.returncode == 0, result.stderr
        if "INFO service: predict: 3 rows -> " in result.stdout:
            break
        assert time.monotonic() < deadline, result.stdout
        time.sleep(0.5)

    # A folder without service.py is refused before anything is uploaded.
    result = cli("deploy", "iris-service", "1.0.1", str(tmp_path))
    assert result.returncode == 1 and "has no service.py" in result.stderr


def test_user_commands(manager, tmp_path):
    admin_env = dict(os.environ, JUPYTER_DEPLOY_CONFIG_DIR=str(tmp_path / "admin"))
    viewer_env = dict(os.environ, JUPYTER_DEPLOY_CONFIG_DIR=str(tmp_path / "viewer"))
    for env in (admin_env, viewer_env):
        env.pop("JUPYTER_DEPLOY_URL", None)
        env.pop("JUPYTER_DEPLOY_TOKEN", None)

    def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*jupyter_deploy_cli(), *args], cwd=REPO, env=env, input=stdin,
                              capture_output=True, text=True, timeout=300)

    assert cli(admin_env, "login", manager.url, "--password-stdin", stdin=manager.password + "\n").returncode == 0
    result = cli(admin_env, "user", "add", "alice", "--role", "viewer", "--password-stdin", stdin="alice-secret-1\n")
    assert result.returncode == 0, result.stderr
    assert "Added user alice (viewer)." in result.stdout
    result = cli(admin_env, "user", "ls")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["USERNAME", "ROLE"] and ["alice", "viewer"] in rows and ["admin", "admin"] in rows

    result = cli(admin_env, "user", "add", "alice", "--password-stdin", stdin="another-secret\n")
    assert result.returncode == 1 and result.stderr.startswith("jupyter-deploy: ")
    assert cli(admin_env, "user", "add", "bob", "--role", "root", "--password-stdin", stdin="x" * 10).returncode == 2

    # The new user logs in with the same CLI; a viewer may not deploy, and is told so.
    result = cli(viewer_env, "login", manager.url, "-u", "alice", "--password-stdin", stdin="alice-secret-1\n")
    assert result.returncode == 0, result.stderr
    result = cli(viewer_env, "deploy", "iris-service", "1.0.0", "examples/iris_service")
    assert result.returncode == 1 and "viewer" in result.stderr and "Deployed" not in result.stdout
    result = cli(viewer_env, "user", "ls")
    assert result.returncode == 1 and result.stderr.startswith("jupyter-deploy: ")

    result = cli(admin_env, "user", "rm", "alice")
    assert result.returncode == 0 and "Removed user alice." in result.stdout, result.stderr
    assert "alice" not in cli(admin_env, "user", "ls").stdout
    # Her tokens went with her.
    assert cli(viewer_env, "ls").returncode == 1
    result = cli(admin_env, "user", "rm", "alice")
    assert result.returncode == 1 and "alice" in result.stderr


def test_assign_and_rollback_switch_the_main_version(manager, tmp_path):
    env = dict(os.environ, JUPYTER_DEPLOY_CONFIG_DIR=str(tmp_path / "cfg"))
    env.pop("JUPYTER_DEPLOY_URL", None)
    env.pop("JUPYTER_DEPLOY_TOKEN", None)

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*jupyter_deploy_cli(), *args], cwd=tmp_path, env=env, input=stdin,
                              capture_output=True, text=True, timeout=600)

    assert cli("login", manager.url, "--password-stdin", stdin=manager.password + "\n").returncode == 0
    source = """
        from jupyter_deploy import service
        import release

        @service.entrypoint
        def which() -> str:
            return release.NAME
    """
    # One folder, edited between the deploys: each deploy loads it afresh.
    folder = make_folder(tmp_path / "svc", source, release_py="NAME = 'first'\n")
    assert cli("deploy", "which", "1.0.0", "svc").returncode == 0
    (folder / "release.py").write_text("NAME = 'second'\n")
    result = cli("deploy", "which", "2.0.0", "svc")
    assert result.returncode == 0, result.stderr

    token = cli("token", "which").stdout.strip()

    def answer() -> str:
        resp = requests.post(f"{manager.url}/services/which/which", json={},
                             headers={"Authorization": f"Bearer {token}"}, timeout=60)
        assert resp.status_code == 200, resp.text
        return resp.json()

    assert answer() == "second"
    result = cli("assign", "which", "1.0.0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "which: main version is now 1.0.0."
    assert answer() == "first"

    result = cli("rollback", "which")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "which: rolled back; main version is now 2.0.0."
    assert answer() == "second"

    result = cli("assign", "which", "9.9.9")
    assert result.returncode == 1 and result.stderr.startswith("jupyter-deploy: ") and "9.9.9" in result.stderr
