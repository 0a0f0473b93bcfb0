"""The ipywidgets panel driven through its widgets, against a real manager (the browser test drives the real UI)."""

from __future__ import annotations

import pandas as pd
import pytest
import requests
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

from jupyter_deploy.panel import NONE, DeployPanel


@pytest.fixture
def iris():
    """A fitted model and sample rows, as a notebook would have them."""
    X, y = load_iris(return_X_y=True, as_frame=True)
    return DecisionTreeClassifier(random_state=0).fit(X, y), X.head(5)


@pytest.fixture
def logged_in(manager, tmp_path, monkeypatch):
    """The panel finds the manager through the stored login, as in a notebook."""
    monkeypatch.setenv("JUPYTER_DEPLOY_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.delenv("JUPYTER_DEPLOY_URL", raising=False)
    monkeypatch.delenv("JUPYTER_DEPLOY_TOKEN", raising=False)
    import jupyter_deploy

    jupyter_deploy.login(manager.url, "admin", manager.password)
    return manager


def test_pickers_show_models_functions_and_samples(iris):
    """Only models, public notebook functions and DataFrames/arrays are offered, and requirements are inferred."""
    model, rows = iris

    def predict(data: pd.DataFrame) -> list:
        return model.predict(data).tolist()

    predict.__module__ = "__main__"
    namespace = {"clf": model, "X_test": rows, "predict": predict, "pd": pd, "n": 3, "_hidden": model}
    view = DeployPanel(namespace, url="http://127.0.0.1:9", token="t")
    assert view.model.options == (NONE, "clf")
    assert view.model.value == "clf", "a single model is picked for the user"
    assert view.functions.options == ("predict",)
    assert view.sample.options == (NONE, "X_test")
    assert view.name.value == "clf"
    assert "scikit-learn==" in view.requirements.value
    view.functions.value = ("predict",)
    assert "scikit-learn==" in view.requirements.value and "pandas==" in view.requirements.value
    # The deployments list says plainly that the manager is not there.
    assert 'data-state="error"' in view.list_status.value and "cannot reach the manager" in view.list_status.value


def test_picks_that_make_no_service_are_explained(iris, logged_in):
    """Nothing picked, or a function that does not use the picked model: a plain error, nothing deployed."""
    model, _ = iris

    def unrelated(x: int) -> int:
        return x + 1

    unrelated.__module__ = "__main__"
    view = DeployPanel({"clf": model, "unrelated": unrelated})
    view.model.value = NONE
    view.start_deploy()
    assert view.wait() is None and "pick a model or at least one function" in view.result.value
    view.model.value = "clf"
    view.functions.value = ("unrelated",)
    view.start_deploy()
    assert view.wait() is None and "none of unrelated uses clf" in view.result.value
    assert logged_in.client().services() == []


def test_deploy_a_model_shows_the_card_and_the_endpoint_answers(iris, logged_in):
    """Model + sample, Deploy: the card (widget state, which may be saved) masks the token; the endpoint answers."""
    model, rows = iris
    view = DeployPanel({"clf": model, "X_test": rows})
    view.sample.value = "X_test"
    view.name.value = "panel-iris"
    view.start_deploy()
    deployment = view.wait(timeout=600)
    assert deployment is not None, view.result.value + view.log.value
    assert deployment.token not in view.result.value and deployment.masked_token in view.result.value
    assert deployment.endpoint() in view.result.value and "predict(sample) -&gt; [" in view.result.value
    assert 'data-phase="done"' in view.phase.value and view.progress.value == view.progress.max
    answer = requests.post(deployment.endpoint(), json={"data": rows.to_dict("records")},
                           headers={"Authorization": f"Bearer {deployment.token}"}, timeout=30)
    assert answer.status_code == 200 and answer.json() == model.predict(rows).tolist()
    [row] = view.list_box.children
    assert 'data-service="panel-iris"' in row.children[0].value and 'data-status="running"' in row.children[0].value

    # Stop asks first; confirming stops it on the manager.
    row.children[1].click()
    [row] = view.list_box.children
    assert "Stop every version of panel-iris?" in row.children[1].value
    row.children[2].click()
    assert logged_in.client().service("panel-iris")["status"] == "stopped"
    # Delete, cancelled, keeps it; confirmed, removes it.
    [row] = view.list_box.children
    row.children[2].click()
    [row] = view.list_box.children
    row.children[3].click()
    assert [s["name"] for s in logged_in.client().services()] == ["panel-iris"]
    [row] = view.list_box.children
    row.children[2].click()
    [row] = view.list_box.children
    row.children[2].click()
    assert logged_in.client().services() == []
    assert 'data-state="empty"' in view.list_status.value


def test_a_failed_build_shows_the_error_and_the_log(iris, logged_in):
    """A requirement that cannot be installed: the error in plain words, the build log kept, nothing running."""
    model, rows = iris
    view = DeployPanel({"clf": model, "X_test": rows})
    view.name.value = "broken"
    view.requirements.value += "\nno-such-package-jupyter-deploy==9.9.9"
    view.start_deploy()
    assert view.wait(timeout=600) is None
    assert view.error is not None and "no-such-package-jupyter-deploy" in view.result.value
    assert 'data-phase="failed"' in view.phase.value and view.progress.bar_style == "danger"
    assert not view.deploy_button.disabled, "the form is usable again"
    print(view.result.value, view.log.value)
    assert "jd-log-text" in view.log.value, "the build log stays visible"
    assert logged_in.client().service("broken")["status"] == "failed"
