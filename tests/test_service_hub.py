"""The submission service as a JupyterHub service, against a real JupyterHub on loopback.

The fixture starts JupyterHub 6 (DummyAuthenticator with a password, its proxy
configurable-http-proxy from .tools/, which `make test` installs) with the service registered as an
external service, and the service itself (`python -m autograder serve --hub`) with the settings a
Hub gives a managed service. Headless Chromium then goes through the Hub's own login form and OAuth:
a student submits and reads feedback, a second student sees none of it, the instructor (a Hub admin)
sees both. API calls carry Hub API tokens, as `submit()` in a student's kernel does.
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "grading"))
from submissions import FIXTURE_COURSE, WRONG_TINY, submission  # noqa: E402

pytestmark = pytest.mark.service

CHP = ROOT / ".tools" / "node_modules" / ".bin" / "configurable-http-proxy"
SOURCE = FIXTURE_COURSE / "solutions" / "tiny" / "tiny.ipynb"
NAME = "submit"  # the name README and autograder.submit give the service
PREFIX = f"/services/{NAME}/"
PASSWORD = "correct horse battery"
ALICE, BOB, PROF = "alice", "bob", "prof"
MISTAKE = "added k instead of multiplying"
STARTUP = 90  # seconds: JupyterHub and the service on a busy 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = STARTUP) -> None:
    """Until `url` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[:4]} exited with {proc.returncode}:\n{log.read_text()[-6000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:  # not listening yet, or the proxy has no route yet (404)
            time.sleep(0.3)
    pytest.fail(f"nothing answered at {url} within {timeout} s:\n{log.read_text()[-6000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group (the Hub's proxy is its child), SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(15)


def _stop_pidfile(path: Path) -> None:
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


def _request(url, *, token=None, data=None, method=None, headers=()):
    """(status, JSON body) of a request; HTTP errors are answers too."""
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers))
    if token:
        req.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if not CHP.exists():
        pytest.fail(f"{CHP.relative_to(ROOT)} is missing: `make test` installs configurable-http-proxy "
                    f"(npm install --prefix .tools configurable-http-proxy@5.3.0)")
    tmp = tmp_path_factory.mktemp("hub")
    course = tmp / "course"
    shutil.copytree(FIXTURE_COURSE, course)
    public, api, hub_port, svc = (_free_port() for _ in range(4))
    svc_token = secrets.token_hex(32)
    public_url = f"http://127.0.0.1:{public}"
    (tmp / "jupyterhub_config.py").write_text(f"""
c = get_config()  # noqa
c.JupyterHub.bind_url = {public_url + "/"!r}
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.JupyterHub.db_url = "sqlite:///{tmp}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret = bytes.fromhex({secrets.token_hex(32)!r})
c.JupyterHub.pid_file = "{tmp}/jupyterhub.pid"
c.ConfigurableHTTPProxy.command = [{str(CHP)!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api}"
c.ConfigurableHTTPProxy.auth_token = {secrets.token_hex(32)!r}
c.ConfigurableHTTPProxy.pid_file = "{tmp}/proxy.pid"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {PASSWORD!r}
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {{{PROF!r}}}
c.JupyterHub.cleanup_servers = True
# as in the README: the service, and the scope students need to use it
c.JupyterHub.services = [{{
    "name": {NAME!r}, "url": "http://127.0.0.1:{svc}", "api_token": {svc_token!r},
    "oauth_client_id": "service-{NAME}", "oauth_redirect_uri": "{PREFIX}oauth_callback",
    "oauth_no_confirm": True,
}}]
c.JupyterHub.load_roles = [
    {{"name": "user", "scopes": ["self", "access:services!service={NAME}"]}},
    {{"name": "server", "scopes": ["users:activity!user", "access:servers!server",
                                 "access:services!service={NAME}"]}},
]
""")
    hub_log, svc_log = tmp / "jupyterhub.log", tmp / "service.log"
    procs = []
    try:
        with open(hub_log, "w") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(tmp / "jupyterhub_config.py")],
                                          cwd=tmp, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        env = {**os.environ,  # what JupyterHub gives a service it manages
               "JUPYTERHUB_SERVICE_NAME": NAME, "JUPYTERHUB_API_TOKEN": svc_token,
               "JUPYTERHUB_CLIENT_ID": f"service-{NAME}", "JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub_port}/hub/api",
               "JUPYTERHUB_BASE_URL": "/", "JUPYTERHUB_HOST": "", "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{svc}",
               "JUPYTERHUB_SERVICE_PREFIX": PREFIX, "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{PREFIX}oauth_callback",
               "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps([f"access:services!service={NAME}"])}
        with open(svc_log, "w") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "autograder", "serve", "--hub", "--course", str(course),
                                           "--port", str(svc)], env=env, cwd=tmp, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
        _wait_http(f"{public_url}/hub/api", procs[0], hub_log)
        _wait_http(f"http://127.0.0.1:{svc}{PREFIX}healthz", procs[1], svc_log)
        _wait_http(f"{public_url}{PREFIX}healthz", procs[0], hub_log)  # the Hub's route through the proxy
        yield {"public": public_url, "service": public_url + PREFIX, "hub_api": f"{public_url}/hub/api",
               "state": {}, "logs": (hub_log, svc_log)}
    finally:
        for proc in reversed(procs):
            _stop(proc)
        _stop_pidfile(tmp / "proxy.pid")


def _hub_token(hub, user: str, scopes: list[str]) -> str:
    """A Hub API token of `user` (asked for with their password, as in the Hub's REST API docs)."""
    status, body = _request(f"{hub['hub_api']}/users/{user}/tokens", method="POST",
                            data=json.dumps({"auth": {"username": user, "password": PASSWORD},
                                             "scopes": scopes, "note": "test"}).encode(),
                            headers={"Content-Type": "application/json"})
    assert status == 201, body
    return body["token"]


def _until(browser, hub, condition, what: str, timeout: float = 60):
    try:
        return WebDriverWait(browser, timeout).until(condition)
    except TimeoutException:
        body = browser.find_element(By.TAG_NAME, "body").text[:2000]
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in hub["logs"])
        pytest.fail(f"waited {timeout} s for {what}; at {browser.current_url}:\n{body}\n{logs}")


def _login(browser, hub, user: str) -> None:
    """Through the service's login page, the Hub's login form and OAuth, back to the service."""
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})  # the Hub's too (path /hub/)
    browser.get(hub["service"])
    browser.find_element(By.LINK_TEXT, "Log in with JupyterHub").click()
    _until(browser, hub, lambda d: d.find_elements(By.ID, "username_input"), "the Hub's login form")
    browser.find_element(By.ID, "username_input").send_keys(user)
    browser.find_element(By.ID, "password_input").send_keys(PASSWORD)
    browser.find_element(By.ID, "login_submit").click()
    _until(browser, hub, lambda d: d.current_url.startswith(hub["service"]) and d.find_elements(By.TAG_NAME, "header"),
           "the service after logging in")
    assert browser.find_element(By.TAG_NAME, "header").text.startswith("Submissions\n" + user), \
        browser.page_source[:2000]


def _upload(browser, hub, path: Path) -> int:
    browser.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(path))
    browser.find_element(By.XPATH, "//button[text()='Submit and grade']").click()
    _until(browser, hub, lambda d: "/attempts/" in d.current_url and d.find_elements(By.ID, "feedback"), "feedback")
    return int(browser.current_url.rstrip("/").rsplit("/", 1)[1])


def _screenshots(browser, screenshot_dir: Path, name: str) -> None:
    """The page at phone and desktop width, full height; nothing may stick out sideways at either."""
    for label, width in (("phone", 390), ("desktop", 1280)):
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": label == "phone"})
        try:
            overflow, height = browser.execute_script(
                "return [document.documentElement.scrollWidth - window.innerWidth,"
                " document.documentElement.scrollHeight]")
            assert overflow <= 0, f"{name} at {width} px is {overflow} px wider than the screen"
            browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                    {"width": width, "height": height, "deviceScaleFactor": 1,
                                     "mobile": label == "phone"})
            (screenshot_dir / f"service-hub-{name}-{label}.png").write_bytes(browser.get_screenshot_as_png())
        finally:
            browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_student_logs_in_through_the_hub_submits_and_reads_feedback(hub, browser, screenshot_dir, tmp_path):
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})  # the Hub's too (path /hub/)
    browser.get(hub["service"])
    _until(browser, hub, lambda d: d.find_elements(By.TAG_NAME, "h1"), "the login page", 10)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Log in to submit"
    _screenshots(browser, screenshot_dir, "login")
    _login(browser, hub, ALICE)

    wrong, right = tmp_path / "tiny-wrong.ipynb", tmp_path / "tiny.ipynb"
    wrong.write_bytes(submission(SOURCE, solutions=WRONG_TINY))
    right.write_bytes(submission(SOURCE, reference=True))
    first = _upload(browser, hub, wrong)
    feedback = browser.find_element(By.ID, "feedback").text
    assert "Score: 0 / 3" in feedback and MISTAKE in feedback, feedback
    _screenshots(browser, screenshot_dir, "feedback")

    browser.get(hub["service"])
    second = _upload(browser, hub, right)
    feedback = browser.find_element(By.ID, "feedback").text
    assert "Score: 3 / 3" in feedback and MISTAKE not in feedback, feedback
    browser.get(hub["service"])
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "table")[-1].find_elements(By.TAG_NAME, "tr")[1:]]
    assert [(r.split()[0], r.split()[-3:]) for r in rows] == [(str(second), ["3", "/", "3"]),
                                                              (str(first), ["0", "/", "3"])], rows
    hub["state"][ALICE] = [first, second]


def test_second_student_cannot_see_the_first_ones_attempts(hub, browser):
    alice = hub["state"].get(ALICE)
    assert alice, "the first student's attempts are missing (see the test before)"
    _login(browser, hub, BOB)
    assert "None yet." in browser.find_element(By.TAG_NAME, "body").text
    for attempt in alice:
        browser.get(f"{hub['service']}attempts/{attempt}")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
        assert MISTAKE not in browser.page_source and "alice" not in browser.page_source
    browser.get(f"{hub['service']}instructor")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"


def test_instructor_sees_both_students_and_pass_rates(hub, browser, screenshot_dir, tmp_path):
    assert hub["state"].get(ALICE), "the first student's attempts are missing (see the tests before)"
    # bob submits the wrong notebook by API with his Hub token, so the class has two students
    bob = _hub_token(hub, BOB, [f"access:services!service={NAME}"])
    status, att = _request(f"{hub['service']}api/submit?assignment=tiny", token=bob, method="POST",
                           data=submission(SOURCE, solutions=WRONG_TINY))
    assert status == 202, att
    status, att = _request(f"{hub['service']}api/attempts/{att['id']}?wait=60", token=bob)
    assert (status, att["state"], att["score"]) == (200, "graded", 0), att

    _login(browser, hub, PROF)
    assert browser.current_url == hub["service"] + "instructor"
    text = browser.find_element(By.TAG_NAME, "body").text
    students = {r.find_elements(By.TAG_NAME, "td")[1].text
                for r in browser.find_elements(By.CSS_SELECTOR, "table:not(.rates) tr")[1:]
                if r.find_elements(By.TAG_NAME, "td")}
    assert {ALICE, BOB} <= students, text
    # latest attempts: alice full marks, bob wrong: every case of `tiny` passes for one student of two
    rates = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "table.rates tr")[1:]]
    assert rates and all(r.endswith("50 % of 2") for r in rates), rates
    _screenshots(browser, screenshot_dir, "instructor")


def test_api_with_hub_tokens(hub):
    token = _hub_token(hub, ALICE, [f"access:services!service={NAME}"])
    status, att = _request(f"{hub['service']}api/submit?assignment=tiny", token=token, method="POST",
                           data=submission(SOURCE, reference=True))
    assert status == 202, att
    status, att = _request(f"{hub['service']}api/attempts/{att['id']}?wait=60", token=token)
    assert status == 200 and (att["state"], att["score"], att["max_score"]) == ("graded", 3, 3), att
    status, mine = _request(f"{hub['service']}api/attempts", token=token)
    assert status == 200 and att["id"] in [a["id"] for a in mine]

    # a forged token, and a real token of alice without the scope to use this service
    unscoped = _hub_token(hub, ALICE, ["read:users:name!user"])
    for bad in (secrets.token_hex(32), unscoped):
        status, body = _request(f"{hub['service']}api/attempts", token=bad)
        assert status == 401, body
        status, body = _request(f"{hub['service']}api/submit?assignment=tiny", token=bad, method="POST",
                                data=submission(SOURCE, reference=True))
        assert status == 401, body


def test_login_state_must_match(hub):
    """An OAuth callback whose state did not start in this browser's session is refused."""
    req = urllib.request.Request(f"{hub['service']}oauth_callback?code=x&state={secrets.token_urlsafe(24)}")
    try:
        urllib.request.urlopen(req, timeout=30)
        status = 200
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    assert status == 403 and "did not start here" in text
