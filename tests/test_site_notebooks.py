"""Each notebook page offers its .ipynb and Colab / Binder / JupyterHub launch links, all from the
one repository URL in _config.yml; a downloaded notebook runs on its own in a clean directory."""
import json
import re
import shutil
import subprocess
import sys
import tomllib
from urllib.parse import parse_qs, urlsplit

import nbformat
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


def test_notebook_is_the_myst_source_with_a_setup_cell_first(built_book, notebook_page):
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


def test_setup_cell_installs_the_course_package_from_the_repository(built_book, notebook_page):
    source = downloaded(built_book, notebook_page).cells[0].source
    url, _, _, branch, _, _ = repository()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]

    assert _run_setup_cell(source, []) == [], "installs although everything imports"
    [call] = _run_setup_cell(source, ["optlab"])
    assert call[:4] == [sys.executable, "-m", "pip", "install"]
    assert f"{project} @ git+{url}@{branch}" in call
    if "myst_nb" in page_source(notebook_page).read_text(encoding="utf-8"):
        [call] = _run_setup_cell(source, ["myst_nb"])
        assert any(arg.startswith("myst-nb") for arg in call)


def test_downloaded_notebook_runs_in_a_clean_directory(built_book, notebook_page, tmp_path):
    """As a student would: the .ipynb alone, in an empty folder, run top to bottom."""
    nb_path = tmp_path / f"{notebook_page.split('/')[-1]}.ipynb"
    shutil.copy(built_book / "_sources" / f"{notebook_page}.ipynb", nb_path)
    nb = nbformat.read(nb_path, as_version=4)
    NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    setup_output = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert "pip" not in setup_output          # the local install already provides everything
