"""The interactive API pages in a real Chromium: no CDN, token form, prefilled "Try it out", real answers."""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest
import requests
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


# ---------------------------------------------------------------- docstrings are text, the page is locked down


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Another origin: records every path a page asks it for."""

    seen: list[str]

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on another port (another origin) and the paths it was asked for."""
    seen: list[str] = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("Recorder", (_Recorder,), {"seen": seen}))
    thread = threading.Thread(target=server.serve_forever, name="elsewhere", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def shout(text: str) -> str:
    """Replaced per test run: see hostile_doc()."""
    return text.upper()


def hostile_doc(origin: str) -> str:
    """A docstring a deployer could write to fool the docs page's visitors: markup that fetches and asks for a token."""
    return (f'Shout the text. <img src="{origin}/pixel.png"> ![x]({origin}/markdown.png) '
            f'<input id="fake-token" placeholder="paste your token here"><button>Authorize</button> '
            f'<a href="{origin}/phish">log in again</a>')


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, elsewhere) -> Iterator[Service]:
    """A service whose docstring holds HTML and Markdown that would fetch from ``elsewhere`` if rendered."""
    from ..harness import ManagerProcess

    manager = ManagerProcess(tmp_path_factory.mktemp("hostile-docs"), runtime="process").start()
    try:
        shout.__doc__ = hostile_doc(elsewhere[0])
        dep = jupyter_deploy.deploy("shout", [shout], url=manager.url, token=manager.token,
                                    progress=Progress("test", rich=False, stream=io.StringIO()))
        assert dep.status == "running", dep.status
        yield Service(manager, dep.token, dep.version)
    finally:
        manager.cleanup()


def test_docstring_markup_is_shown_as_text_and_fetches_nothing(browser, hostile, elsewhere):
    from playwright.sync_api import expect

    origin, fetched = elsewhere
    manager = hostile.manager
    with visit(browser, f"{manager.url}/services/shout/docs#token={hostile.token}") as seen:
        page = seen.page
        block = operation(page, "/shout")
        expect(block).to_be_visible()
        block.locator(".opblock-summary-control").click()
        description = block.locator(".opblock-description-wrapper").first
        # The deployer's markup reads as the characters they typed, not as an image, a form or a link.
        expect(description).to_contain_text(f'<img src="{origin}/pixel.png">')
        expect(description).to_contain_text('<input id="fake-token" placeholder="paste your token here">')
        expect(description).to_contain_text(f"![x]({origin}/markdown.png)")
        screenshot(page, "docs-hostile-docstring.png", down_to=".opblock-description-wrapper >> nth=0")
        assert description.locator("img, input, button, a, form").count() == 0
        assert page.locator("#fake-token").count() == 0
        assert page.locator(f"img[src^='{origin}'], a[href^='{origin}']").count() == 0
        # The operation still works: Execute calls the service with the example body.
        block.get_by_role("button", name="Execute").click()
        live = block.locator(".live-responses-table .response")
        expect(live.locator(".response-col_status")).to_have_text("200")
        expect(live.locator(".response-col_description .microlight").first).to_have_text('"TEXT"')
        assert not seen.js_errors, seen.js_errors
        assert not seen.console_errors, seen.console_errors
        seen.assert_only_manager(manager.url)
    assert fetched == [], f"the page fetched {fetched} from another origin"


def test_docs_pages_send_the_dashboards_security_headers(hostile):
    from jupyter_deploy_manager.pages import CONTENT_SECURITY_POLICY

    manager = hostile.manager
    service_pages = ("/services/shout/docs", f"/services/shout/versions/{hostile.version}/docs")
    for path in (*service_pages, "/api/docs", "/"):
        resp = requests.get(f"{manager.url}{path}", timeout=30)
        assert "script-src 'self';" in CONTENT_SECURITY_POLICY and "img-src 'self' data:;" in CONTENT_SECURITY_POLICY
        if path in service_pages:
            # The JupyterLab sidebar shows these in a frame of the Jupyter server's origin
            # (ManagerApp.docs_frame_ancestors); everything else in the policy is the same.
            assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY.replace(
                "frame-ancestors 'none'", "frame-ancestors *"), path
            assert "X-Frame-Options" not in resp.headers, path
        else:
            assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, path
            assert resp.headers["X-Frame-Options"] == "DENY", path
        assert resp.headers["X-Content-Type-Options"] == "nosniff", path
        assert resp.headers["Referrer-Policy"] == "no-referrer", path
        # Nothing inline for the policy to refuse: the page's script and style are files of the manager.
        assert "<script>" not in resp.text and "<style>" not in resp.text, path
    for asset in ("/static/docs/docs.js", "/static/docs/docs.css", "/static/swagger-ui/swagger-ui-bundle.js"):
        resp = requests.get(f"{manager.url}{asset}", timeout=30)
        assert resp.status_code == 200 and resp.headers["X-Content-Type-Options"] == "nosniff", asset
