"""Each notebook page offers its .ipynb and Colab / Binder / JupyterHub launch links, all from the
one repository URL in _config.yml; a downloaded notebook is plain Jupyter Markdown (no MyST syntax
left, the page's numbers and equation numbers in it), renders in JupyterLab, and runs on its own
in a clean directory."""
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT, book_config, page_source

CELL_TIMEOUT = 600


def repository():
    config = book_config()
    repo = config["repository"]
    url = repo["url"].rstrip("/")
    org, name = urlsplit(url).path.strip("/").split("/")[:2]
    branch = config["sphinx"]["config"].get("course_notebooks_branch", "gh-pages")
    return url, org, name, repo.get("branch", "main"), branch, config["launch_buttons"]


def downloaded(site, page):
    return nbformat.read(site / "_sources" / f"{page}.ipynb", as_version=4)


def myst_code_cells(page):
    """Code cell bodies of the MyST source, read independently of jupytext: the text inside
    each {code-cell} fence, less its option block (--- YAML --- or :key: lines)."""
    text = page_source(page).read_text(encoding="utf-8")
    cells = []
    for body in re.findall(r"^(`{3,})\{code-cell\}[^\n]*\n(.*?)^\1\s*$", text, re.S | re.M):
        body = body[1]
        body = re.sub(r"\A---\n.*?\n---\n", "", body, flags=re.S)
        body = re.sub(r"\A(:[\w-]+:.*\n)+", "", body)
        cells.append(body.strip("\n"))
    return cells


def test_page_links_its_notebook_and_launchers(built_book, notebook_page):
    html = (built_book / f"{notebook_page}.html").read_text(encoding="utf-8")
    depth = notebook_page.count("/")
    nb_rel = f"_sources/{notebook_page}.ipynb"
    assert f'href="{"../" * depth}{nb_rel}"' in html, "no .ipynb download button"

    url, org, name, _, nb_branch, launch = repository()
    hrefs = [h.replace("&amp;", "&") for h in re.findall(r'href="(https://[^"]+)"', html)]
    colab = f"{launch['colab_url']}/github/{org}/{name}/blob/{nb_branch}/{nb_rel}"
    binder = f"{launch['binderhub_url']}/v2/gh/{org}/{name}/{nb_branch}?urlpath=lab/tree/{nb_rel}"
    assert colab in hrefs and binder in hrefs, "Colab / Binder buttons missing or wrong"
    hub = [h for h in hrefs if h.startswith(launch["jupyterhub_url"] + "/hub/user-redirect/git-pull?")]
    assert len(hub) == 1, "JupyterHub button missing"
    query = parse_qs(urlsplit(hub[0]).query)
    assert query == {"repo": [url], "branch": [nb_branch], "urlpath": [f"lab/tree/{name}/{nb_rel}"]}


def test_notebook_has_the_sources_code_cells_after_a_setup_cell(built_book, notebook_page):
    nb = downloaded(built_book, notebook_page)
    setup, *cells = nb.cells
    assert setup.cell_type == "code" and "course-setup" in setup.metadata.get("tags", [])
    assert [c.source for c in cells if c.cell_type == "code"] == myst_code_cells(notebook_page)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert nb.metadata.kernelspec.name == "python3"


def _run_setup_cell(source, hide):
    """Run the setup cell in a fresh interpreter where importing `hide` fails and pip is replaced
    by a recorder; return the pip command lines it would have run."""
    probe = (
        "import json, subprocess, sys\n"
        f"for module in {hide!r}: sys.modules[module] = None   # `import module` now fails\n"
        "calls = []\n"
        "subprocess.check_call = lambda args, **kw: calls.append(args) or 0\n"
        f"exec({source!r})\n"
        "print(json.dumps(calls))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _site_base():
    return book_config().get("html", {}).get("baseurl") or \
        "https://{1}.github.io/{2}/".format(*repository())


def test_setup_cell_installs_the_student_wheel_from_the_site(built_book, notebook_page):
    """Not the repository (which holds solutions/): the wheel published with the site."""
    source = downloaded(built_book, notebook_page).cells[0].source
    assert _run_setup_cell(source, []) == [], "installs although everything imports"
    [call] = _run_setup_cell(source, ["optlab"])
    assert call[:4] == [sys.executable, "-m", "pip", "install"]
    [wheel] = [arg for arg in call if arg.endswith(".whl")]
    assert wheel.startswith(_site_base().rstrip("/") + "/packages/")
    assert (built_book / "packages" / wheel.rsplit("/", 1)[1]).is_file()
    assert not any("git+" in arg for arg in call)
    if "myst_nb" in page_source(notebook_page).read_text(encoding="utf-8"):
        [call] = _run_setup_cell(source, ["myst_nb"])
        assert any(arg.startswith("myst-nb") for arg in call)


@pytest.mark.parametrize("assignment", sorted(p.parent.name for p in (ROOT / "assignments").glob("*/*.ipynb")))
def test_assignment_setup_cell_installs_the_student_wheel_from_the_site(built_book, assignment):
    """A released assignment opened alone (Colab, a learning-platform download) installs the site's
    student wheel, which holds the checks, when `autograder.check` does not import; with the same
    install code as the chapters' notebooks (course_site.setup_cell_source)."""
    sys.path.insert(0, str(ROOT / "_ext"))
    from course_site import STUDENT_WHEEL_DIR, setup_cell_source
    from student_wheel import wheel_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    url = _site_base().rstrip("/") + f"/{STUDENT_WHEEL_DIR}/" + wheel_name(project["name"], project["version"])
    install = setup_cell_source({"autograder.check": url})
    nb = nbformat.read(ROOT / "assignments" / assignment / f"{assignment}.ipynb", as_version=4)
    [setup] = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "setup"]
    assert setup.source.startswith(install), (
        f"the setup cell of solutions/{assignment}/{assignment}.ipynb must begin with the install code "
        f"for {url} (the site's address changed?); update it and run `make assignments`")
    assert "from autograder.check import check" in setup.source[len(install):]
    assert _run_setup_cell(install, []) == []
    assert _run_setup_cell(install, ["autograder.check"]) == [[sys.executable, "-m", "pip", "install", "--quiet", url]]
    assert (built_book / url.removeprefix(_site_base().rstrip("/") + "/")).is_file()


def test_downloaded_notebook_runs_in_a_clean_directory(built_book, notebook_page, tmp_path):
    """As a student would: the .ipynb alone, in an empty folder, run top to bottom."""
    nb_path = tmp_path / f"{notebook_page.split('/')[-1]}.ipynb"
    shutil.copy(built_book / "_sources" / f"{notebook_page}.ipynb", nb_path)
    nb = nbformat.read(nb_path, as_version=4)
    NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    setup_output = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert "pip" not in setup_output          # the local install already provides everything


# ---------------------------------------------------------------------------- plain Markdown
# MyST syntax as it shows once a Markdown renderer (nbconvert's, like JupyterLab's) has read it:
# a role is "{name}" before an inline code span, a directive a code block whose language is
# "{name}", a label a paragraph "(name)=", a colon fence a paragraph of ":::".
MYST_IN_HTML = {
    "role": re.compile(r"\{[a-zA-Z][\w:.+-]*\}$"),           # text right before a <code>
    "label": re.compile(r"^\s*\([\w:.+-]+\)=\s*$", re.M),
    "colon fence": re.compile(r"^\s*:{3,}", re.M),
}


def _markdown_cells_html(nb_path):
    """The notebook rendered by nbconvert (JupyterLab's template); its Markdown cells' HTML."""
    from bs4 import BeautifulSoup
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_filename(str(nb_path))
    soup = BeautifulSoup(body, "html.parser")
    return soup.select(".jp-MarkdownCell .jp-RenderedMarkdown")


def test_downloaded_notebook_renders_without_myst_syntax(built_book, notebook_page):
    cells = _markdown_cells_html(built_book / "_sources" / f"{notebook_page}.ipynb")
    assert len(cells) > 3
    found = []
    for cell in cells:
        for code in cell.find_all("code"):
            classes = " ".join(code.get("class") or []) + " ".join(code.parent.get("class") or [])
            if "{" in classes:                                 # ```{math}, ```{exercise} ...
                found.append(f"directive: {classes}")
            before = code.previous_sibling
            if isinstance(before, str) and MYST_IN_HTML["role"].search(before):
                found.append(f"role: {before.strip()}`{code.get_text()}`")
        text = cell.get_text("\n")
        found += [f"{kind}: {m.group(0).strip()}" for kind in ("label", "colon fence")
                  for m in MYST_IN_HTML[kind].finditer(text)]
        found += [f"role: {m}" for m in re.findall(r"\{(?:term|cite|eq|ref|numref|doc|glue[:\w]*|"
                                                    r"math|download|prf:\w+)\}", text)]
    assert found == [], f"MyST syntax left in the rendered notebook: {found[:10]}"


def test_downloaded_notebook_shows_what_the_page_shows(built_book, notebook_page):
    """Equation numbers, glued values and cross-references are the page's, as links into the
    published site; math is $...$ / $$...$$."""
    nb = downloaded(built_book, notebook_page)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    html = (built_book / f"{notebook_page}.html").read_text(encoding="utf-8")
    source = page_source(notebook_page).read_text(encoding="utf-8")

    assert re.findall(r'<span class="eqno">\(([\d.]+)\)', html) == \
        re.findall(r"\\tag\{([\d.]+)\}", md), "equation numbers differ from the page's"
    assert "{math}" not in md and md.count("$$") % 2 == 0
    # Every glued value the page shows in its prose is in the notebook, in the same order.
    glued = re.findall(r"\{glue:text\}`([^`:]+)", source)
    if glued:
        shown = re.findall(r'<span class="pasted-text">([^<]*)</span>', html)
        assert shown, "page shows no glued values"
        position = 0
        for value in shown:
            position = md.find(value, position)
            assert position >= 0, f"glued value {value!r} of the page missing from the notebook"
    site = book_config().get("html", {}).get("baseurl") or \
        "https://{1}.github.io/{2}/".format(*repository())
    for term in re.findall(r"\{term\}`([^`]+)`", source)[:5]:
        label = re.sub(r"\s*<[^>]*>$", "", term)
        assert f"[{label}]({site.rstrip('/')}/book/glossary.html#term-" in md, term
    if "{cite}" in source:
        assert re.search(r"\[[A-Z][^\]]*, \d{4}\]\(" + re.escape(site), md), "citation not a link"
    # Exercises as block quotes with the page's numbers, solutions as <details>.
    assert len(re.findall(r"^> \*\*Exercise \d+", md, re.M)) == html.count('<div class="exercise admonition"')
    assert md.count("<details>") == html.count('<div class="solution dropdown admonition"')
    page_entries = [re.sub(r"<[^>]+>", "", e) for e in re.findall(
        r'<div class="citation" id="[^"]+" role="doc-biblioentry">.*?<p>(.*?)</p>', html, re.S)]
    nb_entries = re.findall(r"^- \*\*\[([^\]]+)\]\*\* (.*)$", md, re.M)
    assert len(nb_entries) == len(page_entries), "reference list differs from the page's"
    for (_, entry), shown in zip(nb_entries, page_entries):
        words = len(shown.split())
        assert len(re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", entry).replace("*", "").split()) <= words + 2, \
            f"reference entry longer than the page's: {entry[:80]}"
    if "{ref}" in source:
        assert re.search(r"\]\(" + re.escape(site) + r"book/[\w-]+\.html#", md)


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# What each edition's momentum notebook shows: a heading, the exercises' heading, a solution's summary.
EDITION_TEXT = {"en": ("form", "Exercises", "Solution to Exercise", "Momentum"),
                "zh": ("形式", "练习", "解答", "动量")}


@pytest.mark.parametrize("edition", ["en", "zh"])
def test_downloaded_notebook_in_jupyterlab(built_book, browser, screenshot_dir, tmp_path, edition):
    """A downloaded chapter opened in JupyterLab (headless, loopback only), from each edition: its
    Markdown renders with typeset math, links and no MyST syntax (the Chinese one in Chinese);
    screenshots go to _build/screenshots/."""
    import os
    import secrets
    import socket
    import time

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    page = "book/momentum"
    heading_text, exercises_text, solution_text, title = EDITION_TEXT[edition]
    site = built_book if edition == "en" else built_book / edition
    shutil.copy(site / "_sources" / f"{page}.ipynb", tmp_path / "momentum.ipynb")
    shot = "" if edition == "en" else f"-{edition}"
    token, port = secrets.token_hex(16), _free_port()
    settings = tmp_path / ".lab-settings"          # no news pop-up over the screenshot
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
     ).write_text('{"fetchNews": "false"}')
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / ".jupyter-config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / ".jupyter-runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(settings))
    lab = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
         "--ServerApp.allow_root=True", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert lab.poll() is None and time.time() < deadline, "JupyterLab did not start"
                time.sleep(1)
        browser.set_window_size(1280, 900)
        browser.get(f"http://127.0.0.1:{port}/lab/tree/momentum.ipynb?token={token}")
        rendered = ".jp-MarkdownCell .jp-RenderedMarkdown"
        WebDriverWait(browser, 120).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, rendered)) > 3
            and d.find_elements(By.CSS_SELECTOR, f"{rendered} mjx-container"))
        browser.find_element(By.CSS_SELECTOR, "li[data-id='filebrowser']").click()   # hide it
        heading = browser.find_element(By.XPATH, f"//h2[contains(., '{heading_text}')]")  # "The lecture's form"
        browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", heading)
        WebDriverWait(browser, 60).until(lambda d: d.execute_script(
            "const h = arguments[0].closest('.jp-Cell');"
            "return h && h.querySelectorAll('mjx-container').length > 3", heading))
        time.sleep(2)                                   # let MathJax finish the visible cells
        cells = browser.find_elements(By.CSS_SELECTOR, rendered)
        text = "\n".join(c.text for c in cells)
        assert not re.search(r"\{(term|cite|eq|ref|glue:text|math)\}|\(ch-[\w-]+\)=", text), text[:500]
        assert browser.find_elements(By.CSS_SELECTOR, f"{rendered} a[href*='glossary.html#term-']")
        if edition == "zh":
            assert re.search(r"[\u4e00-\u9fff]", text) and "The lecture" not in text
        browser.save_screenshot(str(screenshot_dir / f"jupyterlab-momentum{shot}.png"))

        # Exercises: a block quote, and the solution a <details> that opens on a click.
        exercises = browser.find_element(By.XPATH, f"//h2[starts-with(., '{exercises_text}')]")
        browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", exercises)
        WebDriverWait(browser, 30).until(lambda d: d.find_elements(
            By.CSS_SELECTOR, f"{rendered} details summary"))
        summary = browser.find_element(By.CSS_SELECTOR, f"{rendered} details summary")
        assert summary.text.startswith(solution_text)
        assert browser.find_elements(By.CSS_SELECTOR, f"{rendered} blockquote")
        summary.click()
        WebDriverWait(browser, 10).until(lambda d: d.execute_script(
            "return document.querySelector(arguments[0]).open", f"{rendered} details"))
        time.sleep(1)
        browser.save_screenshot(str(screenshot_dir / f"jupyterlab-momentum-exercises{shot}.png"))

        # Notebook 7, from the same server, renders the same Markdown.
        browser.get(f"http://127.0.0.1:{port}/notebooks/momentum.ipynb?token={token}")
        WebDriverWait(browser, 120).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, rendered)) > 3
            and d.find_elements(By.CSS_SELECTOR, f"{rendered} mjx-container"))
        text = "\n".join(c.text for c in browser.find_elements(By.CSS_SELECTOR, rendered))
        assert title in text and not re.search(r"\{(term|cite|eq|ref|glue:text)\}", text)
        browser.save_screenshot(str(screenshot_dir / f"notebook7-momentum{shot}.png"))
    finally:
        lab.terminate()
        lab.wait(timeout=30)


def install_student_wheel(site: Path, target: Path) -> Path:
    """pip-install the site's student wheel (offline, without dependencies) into `target`."""
    [wheel] = (site / "packages").glob("*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--target", str(target), str(wheel)], check=True)
    return wheel


def test_student_wheel_holds_optlab_and_the_visible_checks(built_book, tmp_path):
    """optlab, the modules of autograder that `autograder.check` imports and the released visible
    cases; nothing else (no grader, no solutions). Installed alone, a notebook in an empty folder
    gets the checks' feedback from it."""
    import zipfile

    target = tmp_path / "site-packages"
    wheel = install_student_wheel(built_book, target)
    names = set(zipfile.ZipFile(wheel).namelist())
    code = {n for n in names if not n.split("/")[0].endswith(".dist-info")}
    visible = {f"autograder/visible/{p.parent.name}.json" for p in (ROOT / "assignments").glob("*/visible_cases.json")}
    assert visible and visible <= code
    assert {f"optlab/{p.name}" for p in (ROOT / "optlab").glob("*.py")} <= code
    graders = {f"autograder/{m}.py" for m in ("grade", "records", "sandbox", "zygote", "inputs")}
    assert not graders & code and not any("solutions" in n or "cases.py" in n for n in names)
    assert {n.split("/")[0] for n in code} == {"optlab", "autograder"}
    empty = tmp_path / "notebook"
    empty.mkdir()
    probe = ("import sys; sys.path.insert(0, sys.argv[1])\n"
             "import optlab, autograder.check as c\n"
             "print(optlab.__file__, c.__file__, sep='\\n')\n"
             "[first, *_] = c.visible_files()\n"
             "case = sorted(c.decode(first.read_bytes(), max_bytes=2**30)['cases'])[0]\n"
             "print(case, c.run_case(case, {}))\n")
    out = subprocess.run([sys.executable, "-c", probe, str(target)], capture_output=True, text=True,
                         check=True, cwd=empty).stdout.splitlines()
    assert out[0].startswith(str(target / "optlab")) and out[1].startswith(str(target / "autograder"))
    case, message = out[2].split(" ", 1)    # a blank notebook: the check's feedback on it
    assert case.split(".")[0] in message and "not available" not in message, out[2]
