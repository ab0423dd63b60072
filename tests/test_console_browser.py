"""The web console in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium) against a real ``chronos serve`` with API
tokens set, and receivers on 127.0.0.1.

One server and one browser serve the whole module (a server start is ~30 s); the
tests run in file order and build on each other's jobs. Every test but the
cross-site one also checks Chrome's network log: the console asks nothing of any
host but its own. The browser is fenced in besides: a dead proxy for every host but
loopback, and no DNS.

The screenshots in docs/images/ are taken here (test_screenshots, see SCREENSHOTS).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from receiver import ThreadedReceiver
from server import Server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip("needs the Debian packages chromium and chromium-driver (.ci/run installs them)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TOKEN = "console-test-token"
# Taken into a temporary folder, so a test run leaves the checkout clean;
# CHRONOS_SCREENSHOTS=docs/images pytest tests/test_console_browser.py renews the README's pictures
# (the whole module: the pictures show the jobs its earlier tests made).
SCREENSHOTS = os.environ.get("CHRONOS_SCREENSHOTS")
WAIT = 30


@pytest.fixture(scope="module")
def receiver() -> Iterator[ThreadedReceiver]:
    with ThreadedReceiver() as r:
        r.route("/ok", status=200, body='{"ok": true, "rows": 1280}')
        r.route("/fail", status=500, body="database is locked")
        r.route("/slow", status=200, delay=1.5)
        yield r


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("console") / "data", env={"CHRONOS_API_TOKENS": TOKEN})
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def api(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look anything up
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", "--disable-features=Translate,OptimizationHints,MediaRouter",
        # Fences: loopback bypasses the proxy; everything else meets a closed port and no DNS.
        "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


def requested_urls(browser) -> list[str]:
    """Every URL the page asked for since the last call (Chrome's network log, drained)."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


@pytest.fixture(autouse=True)
def own_host_only(request, browser, server) -> Iterator[None]:
    requested_urls(browser)  # start from an empty log
    yield
    if "cross_site" in request.node.name:
        requested_urls(browser)
        return
    own = urlsplit(server.url).netloc
    urls = requested_urls(browser)
    foreign = [u for u in urls if urlsplit(u).scheme != "data" and urlsplit(u).netloc != own]
    assert not foreign, f"the console asked other hosts: {foreign}"


def wait(browser, condition: Callable[[Any], Any], what: str, timeout: float = WAIT) -> Any:
    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition, message=what)


def open_page(browser, server, path: str) -> None:
    browser.get(server.url + path)
    browser.execute_script("window.chronosMarker = 'same page'")  # gone if the page reloads


def same_page(browser) -> bool:
    return browser.execute_script("return window.chronosMarker") == "same page"


def job(name: str, url: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "schedule": "0 * * * *", "webhook": {"url": url}, "retry_policy": {"max_attempts": 1}, **fields}


def text_of(browser, css: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, css).text


# ------------------------------------------------------------------ the tests, in order


def test_without_login_the_console_refuses(browser, server, api, receiver):
    assert api.post("/api/v1/jobs", json=job("ping", receiver.url("/ok"), tags={"team": "ops"})).status_code == 201
    browser.get(server.url + "/")
    assert urlsplit(browser.current_url).path == "/ui/login"
    assert "ping" not in browser.page_source
    browser.get(server.url + "/ui/jobs/ping")
    assert urlsplit(browser.current_url).path == "/ui/login" and "ping" not in text_of(browser, "main")


def test_after_login_the_overview_shows_the_jobs(browser, server):
    browser.find_element(By.ID, "token").send_keys("wrong")
    browser.find_element(By.ID, "sign-in").click()
    assert "not one of the server's API tokens" in text_of(browser, "main")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "sign-in").click()
    wait(browser, lambda d: urlsplit(d.current_url).path == "/ui/jobs/ping", "back where the login started")
    cookie = browser.get_cookie("chronos_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"]
    assert browser.execute_script("return document.cookie") == ""  # HttpOnly: no script sees the cookies
    browser.get(server.url + "/ui")
    assert browser.find_element(By.CSS_SELECTOR, '#overview tr[data-job="ping"]')
    assert "Fires per minute" in text_of(browser, "main")


def test_a_job_created_through_the_api_appears(browser, server, api, receiver):
    open_page(browser, server, "/ui/jobs")
    assert not browser.find_elements(By.CSS_SELECTOR, 'tr[data-job="nightly-report"]')
    nightly = job("nightly-report", receiver.url("/ok"), schedule="30 2 * * *", timezone="America/New_York")
    assert api.post("/api/v1/jobs", json=nightly).status_code == 201
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-job="nightly-report"]'), "the new job listed")
    assert same_page(browser)  # the live refresh brought it, not a reload
    row = text_of(browser, 'tr[data-job="nightly-report"]')
    assert "America/New_York" in row and "30 2 * * *" in row


def test_triggering_from_its_page_shows_the_execution_without_a_reload(browser, server):
    open_page(browser, server, "/ui/jobs/ping")
    assert not browser.find_elements(By.CSS_SELECTOR, "#history tr[data-execution]")
    browser.find_element(By.ID, "trigger").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#history tr[data-status="success"]'), "a successful run")
    assert same_page(browser)
    assert "manual" in text_of(browser, "#history tr[data-execution]")


def test_disable_and_enable(browser, server, api):
    open_page(browser, server, "/ui/jobs/ping")
    browser.find_element(By.ID, "disable").click()
    wait(browser, lambda d: d.find_elements(By.ID, "enable"), "the Enable button")
    assert api.get("/api/v1/jobs/ping").json()["enabled"] is False
    assert "disabled" in text_of(browser, "h1") and "No upcoming runs" in text_of(browser, "main")
    browser.find_element(By.ID, "enable").click()
    wait(browser, lambda d: d.find_elements(By.ID, "disable"), "the Disable button")
    assert api.get("/api/v1/jobs/ping").json()["enabled"] is True


def test_a_failing_job_strip_turns_red(browser, server, api, receiver):
    assert api.post("/api/v1/jobs", json=job("broken-export", receiver.url("/fail"))).status_code == 201
    open_page(browser, server, "/ui/jobs")
    assert api.post("/api/v1/jobs/broken-export/trigger").status_code == 202
    cell = 'tr[data-job="broken-export"] .strip .cell'
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, cell + ".s-failed"), "a failed cell in the strip")
    assert same_page(browser)
    colour = browser.find_element(By.CSS_SELECTOR, cell).value_of_css_property("background-color")
    assert colour in ("rgba(198, 40, 40, 1)", "rgb(198, 40, 40)"), colour
    browser.find_element(By.CSS_SELECTOR, cell).click()  # each cell links to its execution
    wait(browser, lambda d: "/executions/" in d.current_url, "the execution page")
    page = text_of(browser, "main")
    assert "failed" in page and "500" in page and "database is locked" in page


def test_a_yaml_edit_with_a_bad_schedule_shows_the_error_beside_it_and_changes_nothing(browser, server, api):
    before = api.get("/api/v1/jobs/ping").json()
    browser.get(server.url + "/ui/jobs/ping/edit")
    editor = browser.find_element(By.ID, "yaml")
    text = editor.get_attribute("value")
    assert "schedule: 0 * * * *" in text
    browser.execute_script("arguments[0].value = arguments[1]", editor, text.replace("schedule: 0 * * * *", "schedule: 61 * * * *"))
    browser.find_element(By.ID, "save").click()
    error = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#errors li[data-field="schedule"]'), "the error")[0]
    line = next(i for i, row in enumerate(text.splitlines(), start=1) if row.startswith("schedule:"))
    assert f"line {line}" in error.text and "61" in error.text
    editor = browser.find_element(By.ID, "yaml")  # the page answered the post: a new editor
    assert error.location["x"] > editor.location["x"] + editor.size["width"] - 5  # beside the editor, not under it
    assert "61 * * * *" in browser.find_element(By.ID, "yaml").get_attribute("value")  # the text is kept
    assert api.get("/api/v1/jobs/ping").json() == before


def test_cross_site_form_post_is_refused(browser, server, api, receiver):
    # A page on another origin (a receiver on 127.0.0.1, another port) posts a form to the console.
    attack = (
        "<!doctype html><form id=f method=post action='" + server.url + "/ui/jobs/ping/disable'>"
        "<input name=csrf value=guessed></form><script>document.getElementById('f').submit()</script>"
    )
    receiver.route("/attack", status=200, body=attack, headers={"Content-Type": "text/html"})
    browser.get(receiver.url("/attack"))
    wait(browser, lambda d: urlsplit(d.current_url).netloc == urlsplit(server.url).netloc, "the post answered")
    assert "CSRF_REFUSED" in browser.page_source
    assert api.get("/api/v1/jobs/ping").json()["enabled"] is True


def test_screenshots(browser, server, api, receiver, tmp_path):
    """The README's pictures: an overview, a job and an execution with some history."""
    images = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    images.mkdir(parents=True, exist_ok=True)
    for name, schedule in (("billing-sync", "*/15 * * * *"), ("cache-warmup", "@every 30s"), ("weekly-digest", "0 9 * * MON")):
        api.post("/api/v1/jobs", json=job(name, receiver.url("/ok"), schedule=schedule))
    api.post("/api/v1/jobs", json=job("slow-report", receiver.url("/slow"), schedule="0 6 * * *"))
    for name in ("ping", "ping", "ping", "billing-sync", "cache-warmup", "slow-report", "broken-export"):
        api.post(f"/api/v1/jobs/{name}/trigger")
        time.sleep(0.3)
    browser.set_window_size(1280, 1500)
    try:
        browser.get(server.url + "/ui")
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#overview tr[data-job="slow-report"] .cell'), "history")
        browser.save_screenshot(str(images / "console-overview.png"))
        browser.get(server.url + "/ui/jobs/ping")
        browser.save_screenshot(str(images / "console-job.png"))
        browser.find_element(By.CSS_SELECTOR, "#history tr[data-execution] a").click()
        wait(browser, lambda d: "/executions/" in d.current_url, "the execution page")
        browser.save_screenshot(str(images / "console-execution.png"))
    finally:
        browser.set_window_size(1280, 1000)
    assert all((images / f"console-{p}.png").stat().st_size > 10_000 for p in ("overview", "job", "execution"))


def test_phone_width_and_keyboard(browser, server):
    browser.set_window_size(375, 800)
    try:
        browser.get(server.url + "/ui/jobs")
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 375, f"the jobs page is {width}px wide at a 375px window"
        browser.find_element(By.TAG_NAME, "body").send_keys("\t")
        assert browser.execute_script("return document.activeElement.className") == "skip"
    finally:
        browser.set_window_size(1280, 1000)


def test_logout(browser, server):
    browser.get(server.url + "/ui")
    browser.find_element(By.CSS_SELECTOR, ".logout button").click()
    wait(browser, lambda d: urlsplit(d.current_url).path == "/ui/login", "the login page")
    browser.get(server.url + "/ui/jobs")
    assert urlsplit(browser.current_url).path == "/ui/login"
