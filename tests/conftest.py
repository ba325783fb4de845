"""Shared fixtures. The book is built once per test session, as `make book` builds it."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JB = Path(sys.executable).with_name("jupyter-book")
BUILD_FLAGS = ["-W", "-n", "--keep-going"]


@pytest.fixture(scope="session")
def built_book() -> Path:
    """Build the book (cached execution) and return `_build/html`; fail with the build log."""
    proc = subprocess.run(
        [str(JB), "build", str(ROOT), *BUILD_FLAGS],
        cwd=ROOT, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        pytest.fail(f"jupyter-book build failed (exit {proc.returncode}):\n{proc.stdout[-8000:]}\n{proc.stderr[-8000:]}")
    return ROOT / "_build" / "html"


# ---------------------------------------------------------------------------- the built site
# Pages come from _toc.yml at collection time, so every chapter added later is tested too.
import functools
import http.server
import re
import shutil
import threading

import yaml

SITE = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def book_config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def toc_pages() -> list[str]:
    """Docnames in reading order: the root, then every file in _toc.yml, depth first."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))
    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return [re.sub(r"\.(md|ipynb)$", "", page) for page in pages]


def page_source(docname: str) -> Path:
    return next(ROOT / f"{docname}{suffix}" for suffix in (".md", ".ipynb")
                if (ROOT / f"{docname}{suffix}").exists())


def is_notebook(docname: str) -> bool:
    """A MyST notebook (jupytext/kernelspec front matter) or an .ipynb: a runnable page."""
    source = page_source(docname)
    if source.suffix == ".ipynb":
        return True
    front = re.match(r"---\n(.*?)\n---", source.read_text(encoding="utf-8"), re.S)
    return bool(front and re.search(r"^(kernelspec|jupytext):", front.group(1), re.M))


def pytest_generate_tests(metafunc):
    if "toc_page" in metafunc.fixturenames:
        metafunc.parametrize("toc_page", toc_pages())
    if "site_page" in metafunc.fixturenames:        # toc pages plus Sphinx's own pages
        metafunc.parametrize("site_page", toc_pages() + ["search", "genindex"])
    if "notebook_page" in metafunc.fixturenames:
        metafunc.parametrize("notebook_page", [p for p in toc_pages() if is_notebook(p)])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def site_url(built_book):
    """The built site served on localhost, as `make serve` does; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Headless Debian Chromium with the network cut: every non-loopback request fails.

    Console messages and network events are logged for the tests to inspect.
    """
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("Browser tests need Debian's chromium and chromium-driver; "
                    "`make test` installs them (apt-get install chromium chromium-driver).")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                 # No network: anything but loopback goes to a proxy that is not there.
                 "--proxy-server=http://127.0.0.1:9",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS
