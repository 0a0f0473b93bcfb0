"""The dashboard in a real Chromium against a real manager: login, services, live logs, promote, tokens, users."""

from __future__ import annotations

import io
import re
import secrets
from typing import TYPE_CHECKING

import pytest
import requests

import jupyter_deploy
from jupyter_deploy.progress import Progress

from ..browser import screenshot, visit

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from ..harness import ManagerProcess

SESSION_KEY = "jupyter-deploy-dashboard-session"

TAG = "one"


def which(note: str = "") -> str:
    """Which version answers; a note is printed so that the call shows in the service's log."""
    if note:
        print(f"note: {note}", flush=True)
    return TAG


def deploy(manager: ManagerProcess, tag: str) -> jupyter_deploy.Deployment:
    """Deploy ``which`` answering ``tag`` as the next version of ``flip``."""
    global TAG
    TAG = tag
    return jupyter_deploy.deploy("flip", [which], url=manager.url, token=manager.token,
                                 progress=Progress("flip", rich=False, stream=io.StringIO()))


def call(manager: ManagerProcess, token: str | None = None, note: str = "") -> requests.Response:
    """Call the main version of ``flip`` through the manager."""
    return requests.post(f"{manager.url}/services/flip/which", json={"note": note} if note else {},
                         headers=manager.headers(token), timeout=30)


def log_in(page: Page, password: str, username: str = "admin") -> None:
    """Fill the login form by its labels and submit it, as a person would."""
    form = page.locator("#login-form")
    form.get_by_label("Username").fill(username)
    form.get_by_label("Password").fill(password)
    form.get_by_role("button", name="Log in").click()


def confirm(page: Page, title: str, button: str) -> None:
    """Answer the confirmation dialog, after checking it asks the right question."""
    from playwright.sync_api import expect

    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(title)
    dialog.get_by_role("button", name=button, exact=True).click()
    expect(dialog).to_be_hidden()


def version_row(page: Page, service: str, version: str) -> Locator:
    """The row of one version in a service's card."""
    return page.locator(f"article[data-service='{service}'] tr[data-version='{version}']")


def session_token(page: Page) -> dict:
    """What the page keeps in sessionStorage: the login token and its id."""
    return page.evaluate(f"JSON.parse(sessionStorage.getItem('{SESSION_KEY}'))")


def see_note_live(page: Page, manager: ManagerProcess, note: str) -> None:
    """Call the service until the printed note shows in the followed log (the first call may race the follower)."""
    from playwright.sync_api import expect

    output = page.locator("#log-output")
    for _attempt in range(3):
        assert call(manager, note=note).status_code == 200
        try:
            expect(output).to_contain_text(f"note: {note}", timeout=5_000)
            return
        except AssertionError:
            continue
    raise AssertionError(f"the note never showed in the followed log: {output.inner_text()[-2000:]}")


@pytest.fixture
def flip(manager_factory) -> ManagerProcess:
    """A process-runtime manager with two versions of ``flip``: 0.1.0 answers one, 0.1.1 (main) two."""
    manager = manager_factory("process")
    assert (deploy(manager, "one").version, deploy(manager, "two").version) == ("0.1.0", "0.1.1")
    return manager


def test_dashboard_shows_follows_promotes_and_manages_tokens(browser, flip):
    from playwright.sync_api import expect

    manager = flip
    with visit(browser, f"{manager.url}/", height=900, clipboard=True) as seen:
        page = seen.page
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        expect(page.locator("#manager-info")).to_contain_text("process runtime")
        screenshot(page, "dashboard-login.png")
        log_in(page, manager.password)

        # The deployment: both versions, the newer one main, the older one still running as the previous main.
        card = page.locator("article[data-service='flip']")
        expect(card.get_by_role("heading", name="flip")).to_be_visible()
        main, old = version_row(page, "flip", "0.1.1"), version_row(page, "flip", "0.1.0")
        expect(main.locator(".badge-main")).to_have_text("main")
        expect(main.locator(".badge-running")).to_be_visible()
        expect(old.locator(".badge-running")).to_be_visible()
        expect(old.locator(".badge-main")).to_have_count(0)
        expect(main).to_contain_text("POST /services/flip/which")
        expect(main.locator("time").first).to_have_text(re.compile(r"just now|min ago"))
        expect(card.get_by_role("link", name="API docs of flip")).to_have_attribute("href", "services/flip/docs")
        expect(page.locator("#events")).to_contain_text("deployed")
        expect(page.get_by_role("link", name="Users")).to_be_visible()
        screenshot(page, "dashboard-services.png")
        page.set_viewport_size({"width": 420, "height": 900})
        screenshot(page, "dashboard-services-narrow.png")
        page.set_viewport_size({"width": 1280, "height": 900})

        # The docs link hands the session's token to the docs page, which then needs no typing.
        docs = card.get_by_role("link", name="API docs of flip")
        with page.context.expect_page() as opened:
            docs.click()
        docs_page = opened.value
        expect(docs_page.locator(".swagger-ui .info .title")).to_contain_text("flip")
        expect(docs_page.locator("#jd-auth")).to_be_hidden()
        assert "token=" not in docs_page.url
        docs_page.close()
        expect(docs).to_have_attribute("href", "services/flip/docs")

        # Logs: the tail, then a call made now shows up without reloading anything.
        card.get_by_role("link", name="Logs of flip").click()
        expect(page.get_by_role("heading", name="Logs of flip")).to_be_visible()
        expect(page.locator("#log-status")).to_have_text("Following live")
        see_note_live(page, manager, f"dashboard-{secrets.token_hex(4)}")
        expect(page.locator("#log-output")).to_contain_text("POST /which")
        screenshot(page, "dashboard-logs.png")
        # Leaving the view ends the stream (the browser aborts the request).
        with page.expect_event("requestfailed", lambda r: "/api/services/flip/logs" in r.url):
            page.get_by_role("link", name="Services", exact=True).click()
        expect(card).to_be_visible()

        # Promote 0.1.0 through the confirmation dialog; the service then answers from it.
        assert call(manager).json() == "two"
        # From the keyboard: Enter opens the dialog with Cancel focused, Escape backs out and changes nothing.
        old.get_by_role("button", name="Promote").focus()
        page.keyboard.press("Enter")
        expect(page.get_by_role("dialog")).to_be_visible()
        expect(page.get_by_role("dialog").get_by_role("button", name="Cancel")).to_be_focused()
        page.keyboard.press("Escape")
        expect(page.get_by_role("dialog")).to_be_hidden()
        expect(main.locator(".badge-main")).to_have_text("main")
        old.get_by_role("button", name="Promote").click()
        screenshot(page, "dashboard-confirm-promote.png")
        confirm(page, "Promote flip 0.1.0?", "Promote")
        expect(old.locator(".badge-main")).to_have_text("main", timeout=60_000)
        expect(page.locator("#notice")).to_contain_text("flip 0.1.0 is now the main version")
        assert call(manager).json() == "one"
        expect(main.locator(".badge-main")).to_have_count(0)
        screenshot(page, "dashboard-promoted.png")

        # Tokens: an invoke token for flip works, is shown once with a copy button, and dies when revoked.
        page.get_by_role("link", name="Tokens").click()
        form = page.locator("#token-form")
        form.get_by_label("Scope").select_option("invoke")
        form.get_by_label("Service").select_option("flip")
        form.get_by_label("Expires after (days)").fill("7")
        form.get_by_label("Note").fill("from the dashboard test")
        form.get_by_role("button", name="Create token").click()
        expect(page.locator("#token-secret-value")).to_have_value(re.compile(r"^jdt_"))
        page.get_by_role("button", name="Copy").click()
        expect(page.locator("#token-copy-status")).to_have_text("Copied to the clipboard.")
        secret = page.evaluate("navigator.clipboard.readText()")
        assert secret == page.locator("#token-secret-value").input_value()
        row = page.locator("#tokens-table tbody tr", has_text="from the dashboard test")
        expect(row).to_contain_text("invoke")
        expect(row).to_contain_text("flip")
        screenshot(page, "dashboard-token-created.png")
        resp = call(manager, token=secret)
        assert resp.status_code == 200 and resp.json() == "one"

        page.get_by_role("button", name="Done").click()
        expect(page.locator("#token-secret")).to_be_hidden()
        row.get_by_role("button", name="Revoke").click()
        confirm(page, "Revoke", "Revoke")
        expect(row).to_have_count(0)
        assert call(manager, token=secret).status_code == 401
        page.get_by_label("Show revoked and expired").check()
        expect(row.locator(".badge-revoked")).to_have_text("revoked")
        screenshot(page, "dashboard-tokens.png")

        assert not seen.js_errors, seen.js_errors
        assert not seen.console_errors, seen.console_errors
        seen.assert_only_manager(manager.url)

    # A viewer sees the service but gets no buttons that would only answer 403, and no Users tab.
    resp = requests.post(f"{manager.url}/api/users", headers=manager.headers(), timeout=30,
                         json={"username": "vera", "password": "viewer-password", "role": "viewer"})
    assert resp.status_code == 201, resp.text
    with visit(browser, f"{manager.url}/", height=900, clipboard=True) as seen:
        page = seen.page
        log_in(page, "viewer-password", username="vera")
        expect(page.locator("#whoami")).to_have_text("vera (viewer)")
        expect(version_row(page, "flip", "0.1.0").locator(".badge-main")).to_be_visible()
        expect(page.locator("article[data-service='flip']").get_by_role("link", name="Logs of flip")).to_be_visible()
        expect(page.locator("article[data-service='flip'] button")).to_have_count(0)
        expect(page.get_by_role("link", name="Users")).to_be_hidden()
        page.get_by_role("link", name="Tokens").click()
        expect(page.locator("#token-form")).to_be_hidden()
        assert not seen.js_errors, seen.js_errors
        seen.assert_only_manager(manager.url)


def test_login_errors_users_session_end_and_logout(browser, manager_factory):
    from playwright.sync_api import expect

    manager = manager_factory("process")
    with visit(browser, f"{manager.url}/", height=900, clipboard=True) as seen:
        page = seen.page
        log_in(page, "not-the-password")
        expect(page.locator("#login-message")).to_have_text("Wrong username or password")
        expect(page.locator("#services-view")).to_be_hidden()
        screenshot(page, "dashboard-login-error.png")

        log_in(page, manager.password)
        expect(page.get_by_text("No services yet.")).to_be_visible()
        expect(page.locator("#whoami")).to_have_text("admin (admin)")

        # Users (admins only): create one, who can then log in; delete them, who then cannot.
        page.get_by_role("link", name="Users").click()
        form = page.locator("#user-form")
        form.get_by_label("Username").fill("alice")
        form.get_by_label("Password").fill("short")
        form.get_by_role("button", name="Create user").click()
        expect(page.locator("#user-form-message")).to_contain_text("Password must be")
        form.get_by_label("Password").fill("alice-password")
        form.get_by_label("Role").select_option("deployer")
        form.get_by_role("button", name="Create user").click()
        alice = page.locator("#users-table tr[data-username='alice']")
        expect(alice).to_contain_text("deployer")
        expect(page.locator("#users-table tr[data-username='admin']")).to_contain_text("you")
        # The API's refusal, in its own words.
        form.get_by_label("Username").fill("alice")
        form.get_by_label("Password").fill("another-password")
        form.get_by_role("button", name="Create user").click()
        expect(page.locator("#user-form-message")).to_have_text("User 'alice' exists already")
        screenshot(page, "dashboard-users.png")
        login = {"username": "alice", "password": "alice-password"}
        assert requests.post(f"{manager.url}/api/login", json=login, timeout=30).status_code == 200
        alice.get_by_role("button", name="Delete").click()
        confirm(page, "Delete user alice?", "Delete user")
        expect(alice).to_have_count(0)
        assert requests.post(f"{manager.url}/api/login", json=login, timeout=30).status_code == 401

        # The session's token revoked elsewhere: the next call lands on the login page with a message.
        token = session_token(page)
        resp = requests.delete(f"{manager.url}/api/tokens/{token['token_id']}", headers=manager.headers(), timeout=30)
        assert resp.status_code == 200
        page.get_by_role("link", name="Services").click()
        expect(page.locator("#login-message")).to_contain_text("session has ended")
        assert session_token(page) is None
        screenshot(page, "dashboard-session-ended.png")

        # Log out revokes the token, not only forgets it.
        log_in(page, manager.password)
        expect(page.get_by_text("No services yet.")).to_be_visible()
        token = session_token(page)
        page.get_by_role("button", name="Log out").click()
        expect(page.locator("#login-message")).to_have_text("You are logged out.")
        assert session_token(page) is None
        resp = requests.get(f"{manager.url}/api/whoami", headers=manager.headers(token["token"]), timeout=30)
        assert resp.status_code == 401

        assert not seen.js_errors, seen.js_errors
        seen.assert_only_manager(manager.url)


def test_page_is_self_contained(manager_factory):
    manager = manager_factory("process")
    resp = requests.get(f"{manager.url}/", timeout=30)
    # An install without Node.js has no dashboard script: that is a failure here, not a skip.
    assert "was not built" not in resp.text, "the dashboard was not built: run `jlpm build:prod` in labextension/"
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    policy = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    assert resp.headers["X-Frame-Options"] == "DENY"
    for asset, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        assert f"static/dashboard/{asset}" in resp.text
        answer = requests.get(f"{manager.url}/static/dashboard/{asset}", timeout=30)
        assert answer.status_code == 200 and kind in answer.headers["Content-Type"], (asset, answer.headers)
    assert not re.search(r"(src|href)=\"(https?:)?//", resp.text), "the page loads something from elsewhere"


def test_page_says_plainly_when_its_script_was_not_built(monkeypatch, tmp_path):
    """Installed without Node.js, the page is no dead login form: it names what is missing and how to build it."""
    import asyncio
    import concurrent.futures
    import shutil

    import tornado.httpclient
    import tornado.httpserver
    import tornado.testing
    import tornado.web

    from jupyter_deploy_manager import dashboard

    unbuilt = tmp_path / "dashboard"
    shutil.copytree(dashboard.STATIC_DIR, unbuilt, ignore=shutil.ignore_patterns("app.js*"))
    monkeypatch.setattr(dashboard, "STATIC_DIR", unbuilt)
    assert not dashboard.script_built()

    async def fetch() -> tornado.httpclient.HTTPResponse:
        sock, port = tornado.testing.bind_unused_port()
        server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/", dashboard.DashboardHandler)]))
        server.add_sockets([sock])
        try:
            return await tornado.httpclient.AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/", raise_error=False)
        finally:
            server.stop()

    # In a thread of its own: Playwright's sync API may already run an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        resp = pool.submit(asyncio.run, fetch()).result(timeout=60)
    text = resp.body.decode()
    assert resp.code == 503
    assert "The dashboard was not built" in text and "jlpm build:prod" in text and "Node.js" in text
    assert "<script" not in text
    assert resp.headers["Content-Security-Policy"] == dashboard.CONTENT_SECURITY_POLICY
    assert resp.headers["X-Frame-Options"] == "DENY"
