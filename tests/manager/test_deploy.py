"""Deploy real models through a real manager on both runtimes, and call them over HTTP."""

from __future__ import annotations

import subprocess
import time

import pandas as pd
import pytest
import requests
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

import jupyter_deploy
from jupyter_deploy.errors import BuildFailed, Forbidden, InvalidInput, ServiceError
from jupyter_deploy.progress import Progress

IRIS = load_iris(as_frame=True)
X = IRIS.data
clf = RandomForestClassifier(n_estimators=15, random_state=0).fit(X, IRIS.target)
SPECIES = list(IRIS.target_names)


def predict(data: pd.DataFrame) -> list:
    """Predict the iris class of each row."""
    return clf.predict(data).tolist()


def species(data: pd.DataFrame, upper: bool = False) -> list:
    """Species names, optionally upper-case."""
    names = [SPECIES[i] for i in clf.predict(data)]
    return [n.upper() for n in names] if upper else names


def explode(n: int) -> float:
    """Divide by n (fails for 0)."""
    return 1 / n


@pytest.fixture(scope="module", params=["process", "docker"])
def runtime_manager(request, tmp_path_factory):
    """One manager per runtime for this module's tests."""
    from ..harness import ManagerProcess

    if request.param == "docker":
        # Fails, or skips on a machine without an engine, exactly as the docker tests do.
        request.getfixturevalue("docker_client")
    manager = ManagerProcess(tmp_path_factory.mktemp(f"deploy-{request.param}"), runtime=request.param).start()
    yield manager
    manager.cleanup()


def quiet() -> Progress:
    """Progress that collects lines instead of printing them."""
    import io

    return Progress("test", rich=False, stream=io.StringIO())


@pytest.fixture(scope="module")
def iris(runtime_manager):
    """The iris service deployed once per runtime."""
    progress = quiet()
    dep = jupyter_deploy.deploy(
        "iris", [predict, species, explode], sample=X.head(), url=runtime_manager.url,
        token=runtime_manager.token, progress=progress,
    )
    return dep, progress


def call(manager, name, entrypoint, body, token):
    """POST to an entrypoint through the manager."""
    return requests.post(f"{manager.url}/services/{name}/{entrypoint}", json=body,
                         headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_deploy_shows_progress_and_returns_a_deployment(runtime_manager, iris):
    dep, progress = iris
    text = progress.stream.getvalue()
    for phase_text in ("capturing", "requirements inferred: ", "uploading", "building on the", "ready in"):
        assert phase_text in text
    assert "scikit-learn==" in text
    assert dep.status == "running" and dep.version == "0.1.0"
    assert dep.url == f"{runtime_manager.url}/services/iris"
    assert dep.token.startswith("jdt_")
    assert [e["name"] for e in dep.entrypoints] == ["predict", "species", "explode"]
    html = dep._repr_html_()
    # The card never holds the token: a saved notebook keeps only the masked one.
    assert dep.token not in html and dep.token not in repr(dep) and dep.masked_token in html
    assert "curl -X POST" in html and f"{dep.url}/predict" in html
    assert "predict(sample) -> [" in repr(dep) and "explode: not called" in repr(dep)


def test_answers_equal_the_notebook_for_every_dataframe_form(runtime_manager, iris):
    dep, _ = iris
    rows = X.sample(12, random_state=3)
    expected = clf.predict(rows).tolist()
    forms = {
        "records": rows.to_dict(orient="records"),
        "columns": rows.to_dict(orient="list"),
        "split": rows.to_dict(orient="split"),
    }
    for form, data in forms.items():
        resp = call(runtime_manager, "iris", "predict", {"data": data}, dep.token)
        assert resp.status_code == 200, (form, resp.text)
        assert resp.json() == expected, form
    resp = call(runtime_manager, "iris", "species", {"data": forms["records"], "upper": True}, dep.token)
    assert resp.json() == [s.upper() for s in species(rows)]


def test_connect_from_elsewhere_gives_the_same_answer(runtime_manager, iris):
    dep, _ = iris
    svc = jupyter_deploy.connect("iris", url=runtime_manager.url, token=dep.token)
    rows = X.tail(7)
    assert svc.predict(rows) == clf.predict(rows).tolist()
    assert svc.species(rows, upper=True) == species(rows, upper=True)
    assert "Predict the iris class" in svc.predict.__doc__
    assert list(__import__("inspect").signature(svc.species).parameters) == ["data", "upper"]
    assert svc.explode(4) == 0.25


def test_bad_input_is_a_clear_422_and_a_raising_function_a_500(runtime_manager, iris):
    dep, _ = iris
    bad_rows = X.head(2).drop(columns=["petal width (cm)"]).assign(extra=1).to_dict(orient="records")
    resp = call(runtime_manager, "iris", "predict", {"data": bad_rows}, dep.token)
    assert resp.status_code == 422
    message = resp.json()["message"]
    assert "petal width (cm)" in message and "extra" in message

    resp = call(runtime_manager, "iris", "predict", {"rows": []}, dep.token)
    assert resp.status_code == 422 and "rows" in resp.json()["message"] and "data" in resp.json()["message"]

    resp = requests.post(f"{runtime_manager.url}/services/iris/predict", data="{oops",
                         headers={"Authorization": f"Bearer {dep.token}"})
    assert resp.status_code == 400

    resp = call(runtime_manager, "iris", "nope", {}, dep.token)
    assert resp.status_code == 404 and "predict" in resp.json()["message"]

    resp = call(runtime_manager, "iris", "explode", {"n": 0}, dep.token)
    assert resp.status_code == 500
    assert "ZeroDivisionError" in resp.json()["message"]
    assert "Traceback" not in resp.text
    # The service stays up, and the traceback went to its log.
    assert call(runtime_manager, "iris", "explode", {"n": 2}, dep.token).json() == 0.5
    deadline = time.monotonic() + 10
    while "Traceback" not in runtime_manager.client().logs("iris", 200) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "ZeroDivisionError" in runtime_manager.client().logs("iris", 200)

    svc = jupyter_deploy.connect("iris", url=runtime_manager.url, token=dep.token)
    with pytest.raises(InvalidInput, match="petal width"):
        svc.predict(X.head(2).drop(columns=["petal width (cm)"]))
    with pytest.raises(ServiceError):
        svc.explode(0)


def test_tokens_are_scoped_to_their_service(runtime_manager, iris):
    dep, _ = iris
    other = jupyter_deploy.deploy("other", [explode], url=runtime_manager.url, token=runtime_manager.token,
                                  progress=quiet())
    assert call(runtime_manager, "other", "explode", {"n": 8}, other.token).json() == 0.125
    resp = call(runtime_manager, "iris", "explode", {"n": 8}, other.token)
    assert resp.status_code == 403
    with pytest.raises(Forbidden):
        jupyter_deploy.connect("other", url=runtime_manager.url, token=dep.token)
    assert call(runtime_manager, "iris", "explode", {"n": 8}, "").status_code == 401
    runtime_manager.client().delete("other")
    # Deleting a service revokes its tokens and stops it.
    assert call(runtime_manager, "other", "explode", {"n": 8}, other.token).status_code == 401
    assert call(runtime_manager, "other", "explode", {"n": 8}, runtime_manager.token).status_code == 404


def test_failed_build_leaves_the_running_version_serving(runtime_manager, iris):
    dep, _ = iris
    progress = quiet()
    with pytest.raises(BuildFailed) as info:
        jupyter_deploy.deploy("iris", [predict], sample=X.head(), requirements=["no-such-package-jd-test==9.9.9"],
                              url=runtime_manager.url, token=runtime_manager.token, progress=progress)
    assert "no-such-package-jd-test" in info.value.message
    described = runtime_manager.client().service("iris")
    assert described["main_version"] == dep.version
    failed = [v for v in described["versions"] if v["status"] == "failed"]
    assert failed and "no-such-package-jd-test" in failed[0]["error"]
    resp = call(runtime_manager, "iris", "predict", {"data": X.head(3).to_dict(orient="records")}, dep.token)
    assert resp.status_code == 200 and resp.json() == clf.predict(X.head(3)).tolist()


def test_redeploy_switches_main_to_the_new_model(runtime_manager, iris):
    dep, _ = iris
    global clf
    old = clf
    try:
        clf = RandomForestClassifier(n_estimators=3, max_depth=1, random_state=1).fit(X, IRIS.target)
        new = jupyter_deploy.deploy("iris", [predict, species, explode], sample=X.head(), url=runtime_manager.url,
                                    token=runtime_manager.token, progress=quiet())
        assert new.version != dep.version
        resp = call(runtime_manager, "iris", "predict", {"data": X.to_dict(orient="records")}, dep.token)
        assert resp.json() == clf.predict(X).tolist() != old.predict(X).tolist()
        assert runtime_manager.client().service("iris")["main_version"] == new.version
    finally:
        clf = old


def _kill_runners(manager, docker_command: str = "kill") -> None:
    """End the manager's runners from outside, as the OOM killer or an operator's `docker kill` would."""
    if manager.runtime == "docker":
        instance = (manager.data_dir / "instance").read_text().strip()
        subprocess.run(
            f"docker ps -q --filter label=io.jupyter-deploy.instance={instance} | xargs -r docker {docker_command}",
            shell=True, check=True, capture_output=True,
        )
    else:
        from ..harness import kill_processes_under

        kill_processes_under(manager.data_dir / "versions")  # the runners, not the manager itself


def test_a_killed_runner_is_reported_and_restarted_every_time(runtime_manager, iris):
    dep, _ = iris
    client = runtime_manager.client()
    rows = X.head(2).to_dict(orient="records")
    for round_ in range(3):
        before = len([e for e in client.events_log("iris") if e["kind"] == "restarted"])
        _kill_runners(runtime_manager)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            restarted = [e for e in client.events_log("iris") if e["kind"] == "restarted"]
            resp = call(runtime_manager, "iris", "predict", {"data": rows}, dep.token)
            if len(restarted) > before and resp.status_code == 200:
                break
            time.sleep(0.1)
        assert len(restarted) > before, f"round {round_}: no restart event"
        assert resp.status_code == 200, resp.text
    events = client.events_log("iris")
    assert [e for e in events if e["kind"] == "crashed"], events
    # The status followed the runner down and back up.
    main = client.service("iris")["main_version"]
    assert next(v for v in client.service("iris")["versions"] if v["version"] == main)["status"] == "running"


def test_manager_restart_keeps_everything_and_restarts_what_stopped(runtime_manager, iris):
    dep, _ = iris
    client = runtime_manager.client()
    main = client.service("iris")["main_version"]
    runtime_manager.stop()
    # While the manager is down, the service's container/process dies too.
    _kill_runners(runtime_manager, "stop -t 1")
    runtime_manager.start()
    deadline = time.monotonic() + 120
    while True:
        resp = call(runtime_manager, "iris", "predict", {"data": X.head(2).to_dict(orient="records")}, dep.token)
        if resp.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert resp.status_code == 200, resp.text
    assert runtime_manager.client().service("iris")["main_version"] == main
    events = runtime_manager.client().events_log("iris")
    assert any(e["kind"] == "restarted" for e in events)


def test_usage_reports_memory_and_cpu_of_running_versions(runtime_manager, iris):
    resp = requests.get(f"{runtime_manager.url}/api/services/iris/usage", headers=runtime_manager.headers(), timeout=60)
    assert resp.status_code == 200
    usage = resp.json()["usage"]
    main = runtime_manager.client().service("iris")["main_version"]
    assert usage[main]["memory_mb"] > 20  # pandas and scikit-learn are loaded
    assert usage[main]["cpu_seconds"] > 0
