"""The dashboard in a real browser: Debian's chromium, headless, driven by selenium through
chromium-driver, against a real server whose nodes are stock-protocol peers.

Logging in goes the only way there is: `push-jobs dashboard --print-url` (the CLI as a
subprocess, configured by a knife.rb like an operator's), then the browser follows the URL.
Jobs are started with `push-jobs job start`. Each test saves a screenshot of the page it looked
at under its tmp_path; with PUSHD_DASHBOARD_PNG=PATH the jobs list is also saved there (how
docs/dashboard.png is made).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import ADMIN_USER, NORMAL_USER, PushdServer, running_server

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
JOB_ID = re.compile(r"\b([0-9a-f]{32})\b")
XSS = "<script>alert(1)</script>"
WAIT = 30


@dataclass
class World:
    server: PushdServer
    base: Path
    env: dict[str, str]

    def cli(self, user: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pushd_knife", *args],
            cwd=self.base / user, env=self.env, capture_output=True, text=True, timeout=60,
        )

    def login_url(self, user: str = ADMIN_USER) -> str:
        result = self.cli(user, "dashboard", "--print-url")
        assert result.returncode == 0, result.stderr
        url = result.stdout.strip()
        assert url.startswith(f"{self.server.base_url}/dashboard/login?token="), url
        return url

    def start(self, command: str, *nodes: str, capture: bool = False) -> str:
        flags = ["--capture"] if capture else []
        result = self.cli(ADMIN_USER, "job", "start", "--nowait", *flags, command, *nodes)
        assert result.returncode == 0, result.stdout + result.stderr
        match = JOB_ID.search(result.stdout + result.stderr)
        assert match, result.stdout + result.stderr
        return match.group(1)

    def status(self, job_id: str) -> str:
        return self.server.request("GET", f"jobs/{job_id}").json()["status"]


def _operator_dir(server: PushdServer, base: Path, user: str) -> None:
    chef = base / user / ".chef"
    chef.mkdir(parents=True)
    shutil.copy(server.users[user], chef / "user.pem")
    (chef / "knife.rb").write_text(
        "current_dir = File.dirname(__FILE__)\n"
        f"node_name                '{user}'\n"
        "client_key               \"#{current_dir}/user.pem\"\n"
        f"chef_server_url          '{server.base_url}/organizations/{server.org_name}'\n"
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail("chromium and chromium-driver are needed: run scripts/install-deps")
    base = tmp_path_factory.mktemp("operators")
    with running_server(nodes=("node1", "node2"), settings={"voting_timeout": 5}) as server:
        for user in (ADMIN_USER, NORMAL_USER):
            _operator_dir(server, base, user)
        for node in ("node1", "node2"):
            server.peer(node)
            server.wait_available(node)
        env = {"HOME": str(base / "home"), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        yield World(server, base, env)


def _options(*, javascript: bool = True) -> Any:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--disable-gpu"):
        options.add_argument(arg)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    return options


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=_options())
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(driver: Any, check: Callable[[], Any], what: str) -> Any:
    def attempt(_: Any) -> Any:
        try:
            return check()
        except (NoSuchElementException, StaleElementReferenceException):
            return None

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(attempt, message=what)


def log_in(driver: Any, world: World, user: str = ADMIN_USER) -> None:
    driver.delete_all_cookies()
    driver.get(world.login_url(user))
    assert driver.current_url == f"{world.server.base_url}/dashboard/"
    assert driver.find_element(By.TAG_NAME, "h2").text == "Jobs"
    wait_until(driver, lambda: driver.find_element(By.ID, "live").text.startswith("Live"),
               "the org feed to connect")


def text_of(driver: Any, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def assert_no_alert(driver: Any) -> None:
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - reading it is the check


def test_job_appears_and_finishes_live_then_its_output(
    world: World, browser: Any, tmp_path: Path
) -> None:
    log_in(browser, world)
    heading = browser.find_element(By.TAG_NAME, "h2")
    job_id = world.start("sleep 1", "node1", "node2", capture=True)
    row = f'#jobs tr[data-job="{job_id}"]'
    wait_until(browser, lambda: browser.find_element(By.CSS_SELECTOR, row), "the job's row")
    assert text_of(browser, f"{row} td.command") == "sleep 1"
    assert text_of(browser, f"{row} td.requester") == ADMIN_USER
    wait_until(browser, lambda: text_of(browser, f"{row} td.status") == "complete",
               "the job to show complete")
    assert text_of(browser, f"{row} td.counts") == "succeeded 2"
    heading.is_displayed()  # still the same document: the page was never reloaded
    browser.save_screenshot(str(tmp_path / "jobs.png"))

    browser.find_element(By.CSS_SELECTOR, f"{row} td.id a").click()
    wait_until(browser, lambda: browser.current_url.endswith(f"/dashboard/jobs/{job_id}"),
               "the job page")
    # The page renders the job, then its outputs as they load: an element read at the wrong
    # moment is replaced under the reader (StaleElementReferenceException), so each is read
    # until it shows its value.
    for css, expected in (
        ("#job-status", "complete"),
        ("#job-counts", "succeeded 2"),
        ('#nodes tr[data-node="node2"] td.status', "succeeded"),
        ('#outputs section[data-node="node1"] pre.stdout', "node1 says hi"),
        ("#options dd.option-capture_output", "true"),
    ):
        wait_until(browser, lambda css=css, expected=expected: text_of(browser, css) == expected,
                   f"{css} showing {expected!r}")
    browser.save_screenshot(str(tmp_path / "job.png"))


def test_abort_a_long_job_with_the_button(world: World, browser: Any, tmp_path: Path) -> None:
    log_in(browser, world)
    job_id = world.start("hang", "node1")
    browser.get(f"{world.server.base_url}/dashboard/jobs/{job_id}")
    wait_until(browser, lambda: text_of(browser, "#job-status") == "running",
               "the job to run (live)")
    wait_until(browser, lambda: text_of(browser, '#nodes tr[data-node="node1"] td.status')
               == "running", "node1 to run")
    browser.find_element(By.ID, "abort-button").click()
    wait_until(browser, lambda: text_of(browser, "#job-status") == "aborted",
               "the job to show aborted")
    assert world.status(job_id) == "aborted"
    assert not browser.find_elements(By.ID, "abort-button")
    browser.save_screenshot(str(tmp_path / "aborted.png"))


def _post_abort(driver: Any, job_id: str, body: str | None) -> int:
    """A POST from the page's own origin, with the browser's cookie (what a CSRF attack
    cannot even do: SameSite=Strict keeps the cookie off other sites' requests)."""
    return int(driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {method: 'POST', credentials: 'same-origin', body: arguments[1],"
        " headers: {'Content-Type': 'application/x-www-form-urlencoded'}})"
        ".then(r => done(r.status), () => done(0));",
        f"/dashboard/jobs/{job_id}/abort", body or "",
    ))


def test_read_only_user_and_forged_posts_cannot_abort(
    world: World, browser: Any, tmp_path: Path
) -> None:
    job_id = world.start("hang", "node2")
    try:
        log_in(browser, world)
        browser.get(f"{world.server.base_url}/dashboard/jobs/{job_id}")
        wait_until(browser, lambda: text_of(browser, "#job-status") == "running", "running")
        assert browser.find_element(By.ID, "abort-button").is_displayed()
        # A writer's session, but no or a wrong CSRF token: refused.
        assert _post_abort(browser, job_id, None) == 403
        assert _post_abort(browser, job_id, "csrf_token=forged") == 403

        log_in(browser, world, NORMAL_USER)
        browser.get(f"{world.server.base_url}/dashboard/jobs/{job_id}")
        assert "(read only)" in text_of(browser, "nav .who")
        assert not browser.find_elements(By.ID, "abort-button")
        own_token = browser.find_element(
            By.CSS_SELECTOR, "form.logout input[name=csrf_token]").get_attribute("value")
        assert _post_abort(browser, job_id, f"csrf_token={own_token}") == 403
        browser.save_screenshot(str(tmp_path / "read-only.png"))
        assert world.status(job_id) == "running"
    finally:
        world.cli(ADMIN_USER, "job", "abort", job_id)


def test_a_script_in_a_command_shows_as_text(world: World, browser: Any, tmp_path: Path) -> None:
    log_in(browser, world)
    job_id = world.start(XSS, "node1")  # a peer nacks it: not on its whitelist
    row = f'#jobs tr[data-job="{job_id}"]'
    # Inserted live by the script (textContent) ...
    wait_until(browser, lambda: text_of(browser, f"{row} td.command") == XSS, "the XSS row")
    assert_no_alert(browser)
    # ... and rendered by the server (escaped).
    browser.refresh()
    assert text_of(browser, f"{row} td.command") == XSS
    assert_no_alert(browser)
    browser.save_screenshot(str(tmp_path / "jobs-xss.png"))
    if os.environ.get("PUSHD_DASHBOARD_PNG"):
        browser.save_screenshot(os.environ["PUSHD_DASHBOARD_PNG"])
    browser.find_element(By.CSS_SELECTOR, f"{row} td.id a").click()
    wait_until(browser, lambda: text_of(browser, "#job-command") == XSS, "the XSS job page")
    assert_no_alert(browser)
    browser.save_screenshot(str(tmp_path / "xss.png"))


def test_nodes_page_counts_availability(world: World, browser: Any, tmp_path: Path) -> None:
    log_in(browser, world)
    browser.find_element(By.LINK_TEXT, "Nodes").click()
    wait_until(browser, lambda: text_of(browser, "h2") == "Nodes", "the nodes page")
    assert text_of(browser, "#available") == "2"
    assert text_of(browser, "#unavailable") == "0"
    assert text_of(browser, '#node-list tr[data-node="node1"] td.availability') == "available"
    browser.save_screenshot(str(tmp_path / "nodes.png"))


def test_pages_render_with_javascript_blocked(world: World, tmp_path: Path) -> None:
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=_options(javascript=False))
    try:
        job_id = world.start("true", "node1", capture=True)
        driver.get(world.login_url())
        row = f'#jobs tr[data-job="{job_id}"]'
        assert text_of(driver, f"{row} td.command") == "true"
        assert text_of(driver, "#live").startswith("Live updates need JavaScript")
        driver.find_element(By.CSS_SELECTOR, f"{row} td.id a").click()
        assert text_of(driver, "#job-id") == job_id
        driver.save_screenshot(str(tmp_path / "no-javascript.png"))
    finally:
        driver.quit()
