"""Shared fixtures. The book is built once per test session, as `make book` builds it."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JB = Path(sys.executable).with_name("jupyter-book")
BUILD_FLAGS = ["-W", "-n", "--keep-going"]
BOOK = [sys.executable, "scripts/book.py"]          # `make book`: both editions, run in the root


@pytest.fixture(scope="session")
def built_book() -> Path:
    """Build both editions as `make book` does (cached execution) and return `_build/html` (the
    Chinese edition is `_build/html/zh`); fail with the build log."""
    proc = subprocess.run(BOOK, cwd=ROOT, capture_output=True, text=True)
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


EDITIONS = ("", "zh/")          # the English site's root and the Chinese edition's folder in it


def pytest_generate_tests(metafunc):
    # Pages of both editions: "book/momentum" and "zh/book/momentum".
    if "toc_page" in metafunc.fixturenames:
        metafunc.parametrize("toc_page", [e + p for e in EDITIONS for p in toc_pages()])
    if "site_page" in metafunc.fixturenames:        # toc pages plus Sphinx's own pages
        metafunc.parametrize("site_page", [e + p for e in EDITIONS
                                           for p in toc_pages() + ["search", "genindex"]])
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


# ---------------------------------------------------------------------------- a throwaway PostgreSQL
import glob
import os
import pwd
import random
import signal
import tempfile
import time


def postgres_bindir() -> Path | None:
    """Where initdb and postgres are: Debian keeps them off PATH, in /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    dirs = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    return max(dirs, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0, default=None)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server of its own for the session: a fresh cluster in a temporary folder, reached
    only through a unix socket there (no TCP), trust authentication, removed at the end. As root it runs
    as `nobody` (PostgreSQL refuses to run as root). Yields the URL of its `postgres` database."""
    bindir = postgres_bindir()
    if bindir is None or not (bindir / "postgres").exists():
        pytest.fail("The PostgreSQL tests need a PostgreSQL server (initdb, postgres); "
                    "`make test` installs Debian's (apt-get install postgresql).")
    # outside pytest's tmp folders, which are root's only: the server's user must reach this one
    home = Path(tempfile.mkdtemp(prefix="autograder-pg-"))
    as_user = {}
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        as_user = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    data, sock, port = home / "data", home / "sock", random.randrange(20000, 60000)
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "HOME": str(home)}
    server = None
    try:
        init = subprocess.run([bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust",
                               "--encoding=UTF8", "--no-sync"],
                              capture_output=True, text=True, env=env, cwd=home, **as_user)
        if init.returncode != 0:
            pytest.fail(f"initdb failed:\n{init.stdout[-3000:]}\n{init.stderr[-3000:]}")
        sock.mkdir(mode=0o700)
        if as_user:
            os.chown(sock, as_user["user"], as_user["group"])
        log = open(home / "server.log", "wb")
        # fsync off: a throwaway cluster need not survive a crash of this machine
        server = subprocess.Popen(
            [bindir / "postgres", "-D", data, "-k", sock, "-p", str(port), "-c", "listen_addresses=",
             "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=300",
             "-c", "shared_buffers=32MB"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=home, **as_user)
        log.close()
        url = f"postgresql+psycopg://postgres@/postgres?host={sock}&port={port}"
        import psycopg
        for _ in range(300):
            if server.poll() is not None:
                pytest.fail(f"postgres exited ({server.returncode}):\n{(home / 'server.log').read_text()[-3000:]}")
            try:
                psycopg.connect(host=str(sock), port=port, user="postgres", dbname="postgres").close()
                break
            except psycopg.OperationalError:
                time.sleep(0.1)
        else:
            pytest.fail(f"postgres did not start in 30 s:\n{(home / 'server.log').read_text()[-3000:]}")
        yield url
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGINT)  # fast shutdown: clients are cut off, then it stops
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A new, empty database on the session's PostgreSQL server; its SQLAlchemy URL."""
    import psycopg
    from sqlalchemy.engine import make_url
    server = make_url(postgres_server)
    name = f"t{os.getpid()}_{random.randrange(1 << 30)}"
    with psycopg.connect(host=server.query["host"], port=server.query["port"], user="postgres",
                         dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.set(database=name).render_as_string(hide_password=False)
