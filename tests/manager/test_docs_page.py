"""The interactive API pages in a real Chromium: no CDN, token form, prefilled "Try it out", real answers."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

import jupyter_deploy
from jupyter_deploy.progress import Progress

from ..browser import screenshot, visit

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from ..harness import ManagerProcess


IRIS = load_iris(as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(IRIS.data, IRIS.target, test_size=0.2, random_state=0)
clf = RandomForestClassifier(n_estimators=20, random_state=0).fit(X_train, y_train)


def predict(data: pd.DataFrame) -> list:
    """Predict the iris class of each row."""
    return clf.predict(data).tolist()


@dataclass
class Service:
    """The deployed iris service and the manager serving it."""

    manager: ManagerProcess
    token: str
    version: str


@pytest.fixture
def iris(manager_factory) -> Service:
    """The iris example deployed on a fresh process-runtime manager."""
    manager = manager_factory("process")
    dep = jupyter_deploy.deploy("iris", predict, sample=X_test, url=manager.url, token=manager.token,
                                progress=Progress("test", rich=False, stream=io.StringIO()))
    assert dep.status == "running", dep.status
    return Service(manager, dep.token, dep.version)


def authorize(page: Page, token: str) -> None:
    """Type the token into the form and press Authorize, as a person would."""
    from playwright.sync_api import expect

    expect(page.locator("#jd-auth")).to_be_visible()
    page.locator("#jd-token").fill(token)
    page.get_by_role("button", name="Authorize").click()


def operation(page: Page, path: str) -> Locator:
    """The operation block of ``path``."""
    return page.locator(".opblock").filter(has=page.locator(f".opblock-summary-path[data-path='{path}']"))


def expect_rendered(page: Page, title: str) -> None:
    """Swagger UI shows the document: its title and the predict operation, with the token form gone."""
    from playwright.sync_api import expect

    expect(page.locator(".swagger-ui .info .title")).to_contain_text(title)
    expect(operation(page, "/predict")).to_be_visible()
    expect(page.locator("#jd-auth")).to_be_hidden()


def try_predict(page: Page, shots: str | None = None) -> tuple[list[dict[str, Any]], Any]:
    """Expand predict, Execute with the prefilled body; the rows sent and the answer shown."""
    from playwright.sync_api import expect

    block = operation(page, "/predict")
    block.locator(".opblock-summary-control").click()
    # The page sets tryItOutEnabled, so an expanded operation is already in "Try it out" mode and its
    # toggle reads Cancel: a person goes straight to Execute.
    expect(block.get_by_role("button", name="Cancel")).to_be_visible()
    editor = block.locator("textarea.body-param__text")
    expect(editor).to_be_editable()
    sent = json.loads(editor.input_value())
    if shots:
        screenshot(page, f"{shots}-before-execute.png", down_to=".opblock .execute-wrapper")
    block.get_by_role("button", name="Execute").click()
    live = block.locator(".live-responses-table .response")
    expect(live.locator(".response-col_status")).to_have_text("200")
    # The bearer token went with the call because the page pre-authorized Swagger UI.
    expect(block.locator(".curl-command")).to_contain_text("Authorization: Bearer jdt_")
    shown = json.loads(live.locator(".response-col_description .microlight").first.inner_text())
    if shots:
        # Down to the live answer only: the static response list below it is thousands of pixels long.
        screenshot(page, f"{shots}-after-execute.png", down_to=".live-responses-table")
    return sent["data"], shown


def test_docs_page_calls_the_model_with_the_sample_and_shows_its_answer(browser, iris):
    from playwright.sync_api import expect

    manager = iris.manager
    with visit(browser, f"{manager.url}/services/iris/docs") as seen:
        page = seen.page
        expect(page.locator("#jd-token")).to_be_visible()
        screenshot(page, "docs-token-form.png")
        authorize(page, iris.token)
        expect_rendered(page, "iris")
        rows, shown = try_predict(page, shots="docs")

        # Prefilled from the deploy's sample, not typed: the first test rows, values as sent.
        assert rows, "the request body example has no rows"
        assert rows == X_test.head(len(rows)).to_dict(orient="records")
        assert shown == predict(pd.DataFrame(rows, columns=X_test.columns))
        assert not seen.js_errors, seen.js_errors
        assert not seen.console_errors, seen.console_errors
        seen.assert_only_manager(manager.url)
        assert f"{manager.url}/services/iris/predict" in seen.requests


def test_wrong_token_shows_the_error_and_no_swagger_ui(browser, iris):
    from playwright.sync_api import expect

    with visit(browser, f"{iris.manager.url}/services/iris/docs") as seen:
        page = seen.page
        authorize(page, "jdt_not-a-real-token")
        expect(page.locator("#jd-error")).to_contain_text("invalid, expired or revoked token")
        expect(page.locator("#jd-auth")).to_be_visible()
        expect(page.locator("#swagger-ui")).to_be_empty()
        screenshot(page, "docs-wrong-token.png")
        assert not seen.js_errors, seen.js_errors
        seen.assert_only_manager(iris.manager.url)


def test_token_in_the_fragment_authorizes_without_the_form(browser, iris):
    with visit(browser, f"{iris.manager.url}/services/iris/docs#token={iris.token}") as seen:
        page = seen.page
        expect_rendered(page, "iris")
        # Dropped from the address bar so it is not bookmarked or shared by accident.
        assert "token=" not in page.url
        rows, shown = try_predict(page)
        assert shown == predict(pd.DataFrame(rows, columns=X_test.columns))
        assert not seen.js_errors, seen.js_errors
        seen.assert_only_manager(iris.manager.url)


def test_version_docs_page_works(browser, iris):
    from playwright.sync_api import expect

    url = f"{iris.manager.url}/services/iris/versions/{iris.version}/docs"
    with visit(browser, url) as seen:
        page = seen.page
        authorize(page, iris.token)
        expect_rendered(page, "iris")
        expect(page).to_have_title(f"iris {iris.version}")
        expect(page.locator(".swagger-ui .info .title .version").first).to_have_text(iris.version)
        rows, shown = try_predict(page)
        assert shown == predict(pd.DataFrame(rows, columns=X_test.columns))
        assert not seen.js_errors, seen.js_errors
        seen.assert_only_manager(iris.manager.url)
        assert f"{iris.manager.url}/services/iris/versions/{iris.version}/openapi.json" in seen.requests


def test_manager_api_docs_page_renders_its_operations(browser, manager_factory):
    from playwright.sync_api import expect

    manager = manager_factory("process")
    with visit(browser, f"{manager.url}/api/docs") as seen:
        page = seen.page
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("jupyter-deploy")
        expect(page.locator(".opblock-summary-path").filter(has_text="services").first).to_be_visible()
        assert page.locator(".opblock").count() >= 5, "the manager API has more than a handful of operations"
        expect(page.locator("#jd-auth")).to_be_hidden()
        screenshot(page, "api-docs.png")
        assert not seen.js_errors, seen.js_errors
        assert not seen.console_errors, seen.console_errors
        seen.assert_only_manager(manager.url)
        assert f"{manager.url}/api/openapi.json" in seen.requests


def test_manager_api_docs_page_keeps_a_fragment_token_across_reloads(browser, manager_factory):
    from playwright.sync_api import expect

    manager = manager_factory("process")
    with visit(browser, f"{manager.url}/api/docs#token={manager.token}") as seen:
        page = seen.page
        whoami = operation(page, "/api/whoami")
        expect(whoami).to_be_visible()
        page.reload()
        whoami.locator(".opblock-summary-control").click()
        whoami.get_by_role("button", name="Execute").click()
        live = whoami.locator(".live-responses-table .response")
        expect(live.locator(".response-col_status")).to_have_text("200")
        expect(live.locator(".response-col_description .microlight").first).to_contain_text("admin")
        assert not seen.js_errors, seen.js_errors
        seen.assert_only_manager(manager.url)
