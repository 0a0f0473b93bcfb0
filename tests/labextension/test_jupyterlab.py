"""The JupyterLab sidebar and the notebook panel in Debian's headless Chromium, against real ``jupyter lab`` and manager."""

from __future__ import annotations

import nbformat
import pytest
import requests
from nbclient import NotebookClient

from ..browser import screenshot, visit
from ..manager.runtimes.support import wait_for

pytestmark = pytest.mark.timeout(900)

SIDEBAR = "#jupyter-deploy-sidebar"


def open_sidebar(page) -> None:
    """Click the Deployments tab in the left bar and wait for the panel."""
    page.locator('.jp-SideBar.jp-mod-left li[data-id="jupyter-deploy-sidebar"]').click()
    page.locator(SIDEBAR).wait_for(state="visible")


def state(page) -> str:
    """The sidebar's current view: login, unreachable, empty, list, ..."""
    return page.locator(f"{SIDEBAR} .jd-state").first.get_attribute("data-state")


def wait_state(page, wanted: str) -> None:
    """Wait until the sidebar shows ``wanted``."""
    page.locator(f'{SIDEBAR} .jd-state[data-state="{wanted}"]').first.wait_for(state="visible")


def lab_url(server, path: str = "lab") -> str:
    """A JupyterLab URL carrying Jupyter's token."""
    return f"{server.url}/{path}?token={server.token}"


def write_notebook(path, *sources: str) -> None:
    """A notebook of code cells."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def run_all_cells(page) -> None:
    """Wait for the notebook's kernel, then Run > Run All Cells."""
    page.locator(".jp-Notebook").first.wait_for(state="visible")
    page.locator(".jp-StatusBar-TextItem", has_text="Idle").first.wait_for(state="visible", timeout=120_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def confirm_dialog(page) -> None:
    """Accept JupyterLab's confirmation dialog."""
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(state="visible")
    dialog.locator("button.jp-mod-accept").click()
    dialog.wait_for(state="detached")


def test_sidebar_login_empty_and_unreachable(browser, jupyter_factory, manager):
    """Login form (a wrong password is said plainly), then "no deployments yet", then "manager unreachable"."""
    server = jupyter_factory("lab")
    with visit(browser, lab_url(server)) as seen:
        page = seen.page
        open_sidebar(page)
        wait_state(page, "login")
        form = page.locator(f"{SIDEBAR} form.jd-login")
        form.locator('input[name="url"]').fill(manager.url)
        form.locator('input[name="username"]').fill("admin")
        form.locator('input[name="password"]').fill("wrong")
        form.locator('input[name="password"]').press("Enter")
        error = page.locator(f"{SIDEBAR} .jd-error")
        error.wait_for(state="visible")
        assert "wrong username or password" in error.inner_text()
        screenshot(page, "sidebar-login.png")

        form.locator('input[name="password"]').fill(manager.password)
        form.locator('button[type="submit"]').click()
        wait_state(page, "empty")
        empty_text = page.locator(f"{SIDEBAR} .jd-state").first.inner_text()
        assert "%%deploy" in empty_text and "panel()" in empty_text
        assert server.api("GET", "status").json()["logged_in"] is True

        manager.stop()
        page.locator(f'{SIDEBAR} button[data-action="refresh"]').first.click()
        wait_state(page, "unreachable")
        text = page.locator(f"{SIDEBAR} .jd-state").first.inner_text()
        assert manager.url in text
        screenshot(page, "sidebar-unreachable.png")
        assert not seen.js_errors, seen.js_errors


def test_panel_deploys_from_a_notebook_and_the_sidebar_lists_it(browser, jupyter_factory, manager):
    """In JupyterLab: panel(), pick model and function, Deploy from the keyboard, the card shows the endpoint."""
    server = jupyter_factory("lab")
    assert server.api("POST", "login", json={"url": manager.url, "username": "admin",
                                              "password": manager.password}).ok
    write_notebook(
        server.root / "panel.ipynb",
        "from sklearn.datasets import load_iris\n"
        "from sklearn.tree import DecisionTreeClassifier\n"
        "import pandas as pd\n"
        "X, y = load_iris(return_X_y=True, as_frame=True)\n"
        "clf = DecisionTreeClassifier(random_state=0).fit(X, y)\n"
        "X_test = X.sample(5, random_state=1)",
        "def predict(data: pd.DataFrame) -> list:\n"
        "    \"\"\"Iris species of each row.\"\"\"\n"
        "    return clf.predict(data).tolist()",
        "import jupyter_deploy\njupyter_deploy.panel()",
    )
    with visit(browser, lab_url(server, "lab/tree/panel.ipynb"), height=1400) as seen:
        page = seen.page
        run_all_cells(page)
        view = page.locator(".jupyter-deploy-panel")
        view.wait_for(state="visible", timeout=180_000)

        assert view.locator(".jd-model select").input_value() == "clf"
        view.locator(".jd-functions select").select_option("predict")
        view.locator(".jd-sample select").select_option("X_test")
        view.locator(".jd-name input").fill("lab-iris")
        page.locator(".jd-requirements textarea").wait_for(state="visible")
        assert "scikit-learn==" in view.locator(".jd-requirements textarea").input_value()

        # From the keyboard: focus the button and press Enter.
        view.locator(".jd-deploy").focus()
        page.keyboard.press("Enter")
        card = view.locator(".jupyter-deploy-card")
        card.wait_for(state="visible", timeout=600_000)
        # The widget's state may be saved with the notebook: the card in it shows the token masked.
        masked = card.locator(".jupyter-deploy-token").inner_text()
        assert masked.startswith("jdt_") and "••••" in masked
        assert f"{manager.url}/services/lab-iris/predict" in card.inner_text()
        token = manager.client().create_token(service="lab-iris")["token"]
        assert token not in card.inner_html()
        view.locator(".jd-row").first.wait_for(state="visible")
        screenshot(page, "panel.png")

        # The endpoint answers what the notebook's model says.
        from sklearn.datasets import load_iris
        from sklearn.tree import DecisionTreeClassifier

        X, y = load_iris(return_X_y=True, as_frame=True)
        rows = X.sample(5, random_state=1)
        expected = DecisionTreeClassifier(random_state=0).fit(X, y).predict(rows).tolist()
        answer = requests.post(f"{manager.url}/services/lab-iris/predict", json={"data": rows.to_dict("records")},
                               headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert answer.status_code == 200 and answer.json() == expected

        open_sidebar(page)
        service = page.locator(f'{SIDEBAR} .jd-service[data-service="lab-iris"]')
        service.locator('.jd-badge[data-status="running"]').first.wait_for(state="visible")
        screenshot(page, "sidebar-list.png")
        assert not seen.js_errors, seen.js_errors


def test_sidebar_docs_logs_stop_and_delete(browser, jupyter_factory, manager, monkeypatch):
    """A ``%%deploy`` notebook's service: docs and logs open in tabs; stop and delete act on the manager."""
    server = jupyter_factory("lab")
    assert server.api("POST", "login", json={"url": manager.url, "username": "admin",
                                              "password": manager.password}).ok
    # The notebook runs in a kernel logged in with the same stored credentials.
    monkeypatch.setenv("JUPYTER_DEPLOY_CONFIG_DIR", str(server.deploy_config))
    path = server.root / "deploy.ipynb"
    write_notebook(
        path,
        "%load_ext jupyter_deploy",
        "%%deploy nb-echo\n"
        "def shout(text: str) -> str:\n"
        "    \"\"\"Upper-case the text.\"\"\"\n"
        "    print('shouting', text, flush=True)\n"
        "    return text.upper()",
    )
    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(server.root)}}).execute()
    service = manager.client().service("nb-echo")
    assert service["status"] == "running"
    answer = requests.post(f"{manager.url}/services/nb-echo/shout", json={"text": "from the lab"},
                           headers=manager.headers(), timeout=30)
    assert answer.json() == "FROM THE LAB"
    # Run the notebook again: version 0.1.1 becomes main, 0.1.0 stays as the previous main.
    NotebookClient(nbformat.read(str(path), as_version=4), timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(server.root)}}).execute()
    assert manager.client().service("nb-echo")["main_version"] == "0.1.1"

    with visit(browser, lab_url(server), height=1000) as seen:
        page = seen.page
        open_sidebar(page)
        row = page.locator(f'{SIDEBAR} .jd-service[data-service="nb-echo"]')
        row.locator('.jd-badge[data-status="running"]').first.wait_for(state="visible")

        # Promote the previous version back to main.
        row.locator('.jd-version[data-version="0.1.0"] button[data-action="promote"]').click()
        confirm_dialog(page)
        wait_for(lambda: manager.client().service("nb-echo")["main_version"] == "0.1.0", what="the promote")
        row.locator('.jd-version[data-version="0.1.0"][data-main="true"]').wait_for(state="visible")

        row.locator('button[data-action="docs"]').first.click()
        docs = page.locator("#jupyter-deploy-docs-nb-echo")
        docs.wait_for(state="visible")
        frame = page.frame_locator("#jupyter-deploy-docs-nb-echo iframe.jd-docs-frame")
        frame.locator(".swagger-ui .title").first.wait_for(state="visible")
        assert "nb-echo" in frame.locator(".swagger-ui .title").first.inner_text()
        frame.locator(".opblock-summary-path", has_text="/shout").first.wait_for(state="visible")
        screenshot(page, "sidebar-docs.png")

        row.locator('button[data-action="logs"]').first.click()
        logs = page.locator("#jupyter-deploy-logs-nb-echo pre.jd-logs")
        logs.wait_for(state="visible")
        page.wait_for_function(
            "() => (document.querySelector('#jupyter-deploy-logs-nb-echo pre.jd-logs') || {}).textContent"
            "?.includes('shouting from the lab')"
        )
        screenshot(page, "sidebar-logs.png")

        row.locator('button[data-action="stop"]').first.click()
        confirm_dialog(page)
        wait_for(lambda: manager.client().service("nb-echo")["status"] == "stopped", what="the stop")
        row.locator('.jd-badge[data-status="stopped"]').first.wait_for(state="visible")

        row.locator('button[data-action="delete"]').first.click()
        confirm_dialog(page)
        wait_for(lambda: requests.get(f"{manager.url}/api/services/nb-echo", headers=manager.headers(),
                                        timeout=30).status_code == 404, what="the delete")
        wait_state(page, "empty")
        assert not seen.js_errors, seen.js_errors


def test_the_card_copies_its_token_in_the_live_page_and_the_saved_notebook_has_none(browser, jupyter_factory):
    """A deployment card in JupyterLab: copy puts the token on the clipboard; the notebook saved to disk lacks it."""
    server = jupyter_factory("lab")
    token = "jdt_live-page-only-" + "0123456789abcdef" * 2
    path = server.root / "card.ipynb"
    write_notebook(
        path,
        "from jupyter_deploy.deployment import Deployment\n"
        # Built in the cell, so the source does not hold it either.
        "Deployment('demo', '0.1.0', 'http://manager.example/services/demo', 'jdt_live-page-only-' + "
        "'0123456789abcdef' * 2, 'running', "
        "'http://manager.example', [{'name': 'predict', 'signature': '(data)', 'parameters': [{'name': 'data'}]}], "
        "[], None, {'sample': True, 'entrypoints': [{'entrypoint': 'predict', 'called': True, 'ok': True, "
        "'preview': '[0, 2, 1]'}]})",
    )
    with visit(browser, lab_url(server, "lab/tree/card.ipynb"), height=1000, clipboard=True) as seen:
        page = seen.page
        run_all_cells(page)
        card = page.locator(".jp-OutputArea .jupyter-deploy-card")
        card.wait_for(state="visible", timeout=120_000)
        assert "predict(sample) -> [0, 2, 1]" in card.inner_text()
        assert token not in card.inner_html() and card.locator(".jupyter-deploy-token").inner_text().endswith("cdef")
        card.locator(".jupyter-deploy-copy").click()
        page.locator(".jupyter-deploy-copy", has_text="copied").wait_for(state="visible")
        assert page.evaluate("navigator.clipboard.readText()") == token
        # The docs link gets the token in its fragment when followed from this page, not before.
        assert token not in (card.locator(".jupyter-deploy-docs").get_attribute("href") or "")
        page.keyboard.press("Control+s")
        wait_for(lambda: "jupyter-deploy-card" in path.read_text(), what="the notebook saved with its output")
        assert token not in path.read_text()
        assert not seen.js_errors, seen.js_errors
