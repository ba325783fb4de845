"""Sphinx extension for the course site: offline MathJax, runnable notebook downloads, weight.

* MathJax is served from the site itself (``_static/mathjax``), copied at build time from the
  ``sphinx-mathjax-offline`` package (MathJax 3.2.2) as separate components.
  ``course_mathjax: cdn`` switches back to Sphinx's CDN default.
* Every notebook page gets ``_sources/<page>.ipynb``: plain Jupyter Markdown written from the
  page's resolved doctree (notebook_markdown.py) around the page's own code cells, and a first
  cell that installs what the notebook imports when the import fails: the student wheel of the
  course package (student_wheel.py, ``packages/`` on the published site) and pinned packages.
* Pages stay light (site_weight.py): icon subset, purged theme stylesheet, palette figures.
* The Colab / Binder / JupyterHub launch buttons open that notebook from the branch the site is
  published to (``course_notebooks_branch``, default ``gh-pages``).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import re
import shutil
import tomllib
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode, urlparse

import jupytext
import nbformat
import pydata_sphinx_theme
from docutils import nodes
from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.transforms import SphinxTransform

from myst_nb.ext.glue.roles import PasteTextRole

import site_weight
import student_wheel
from notebook_markdown import Unsupported, myst_leftovers, notebook_markdown

MATHJAX_DIST = "sphinx-mathjax-offline"          # PyPI package that vendors MathJax 3.2.2
# MathJax as separate components, not the tex-chtml.js bundle (1.2 MB, a third of it the
# context menu): the loader, then TeX input, CommonHTML output and the hidden MathML that screen
# readers read. Each page with math loads about 0.75 MB of it, plus the web fonts it uses.
MATHJAX_ENTRY = "startup.js"
MATHJAX_LOAD = ["input/tex", "output/chtml", "a11y/assistive-mml"]
MATHJAX_PARTS = ("startup.js", "core.js", "input/tex.js", "input/tex/extensions", "output/chtml.js",
                 "output/chtml/fonts/tex.js", "output/chtml/fonts/woff-v2", "a11y/assistive-mml.js")
SETUP_TAG = "course-setup"
STUDENT_WHEEL_DIR = "packages"         # the student wheel, published with the site
STATIC = Path(__file__).parent / "static"
# The theme's own stylesheet, from which the build writes the site's purged copy every time.
THEME_CSS_SOURCE = (Path(pydata_sphinx_theme.__file__).parent / "theme" / "pydata_sphinx_theme"
                    / "static" / "styles" / "pydata-sphinx-theme.css")
PIN = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;#]+)", re.M)   # name==version lines


# ---------------------------------------------------------------------------- MathJax
def mathjax_source_dir() -> Path:
    try:
        dist = importlib.metadata.distribution(MATHJAX_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ExtensionError(
            f"course_mathjax is 'local' but {MATHJAX_DIST} is not installed: "
            f"pip install {MATHJAX_DIST} (it is in requirements.txt), "
            "or set course_mathjax: cdn in _config.yml") from None
    return Path(dist.locate_file(f"{MATHJAX_DIST}/static/mathjax"))


def use_local_mathjax(app: Sphinx, config) -> None:
    mode = config.course_mathjax
    if mode not in ("local", "cdn"):
        raise ExtensionError(f"course_mathjax must be 'local' or 'cdn', not {mode!r}")
    if mode == "local":
        mathjax_source_dir()                              # fail early when it is missing
        config.mathjax_path = f"mathjax/{MATHJAX_ENTRY}"  # relative: resolved under _static/


def configure_mathjax_components(app: Sphinx) -> None:
    """Tell MathJax's loader which components to load (after myst's own mathjax3_config)."""
    if app.config.course_mathjax == "local":
        mathjax = dict(app.config.mathjax3_config or {})
        mathjax["loader"] = {**mathjax.get("loader", {}), "load": MATHJAX_LOAD}
        app.config.mathjax3_config = mathjax


def copy_tree(src: Path, dst: Path) -> None:
    """Copy src into dst, skipping files already there with the same size."""
    if src.is_file():
        pairs = [(src, dst)]
    else:
        pairs = [(f, dst / f.relative_to(src)) for f in src.rglob("*") if f.is_file()]
    for source, target in pairs:
        if target.exists() and target.stat().st_size == source.stat().st_size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def finish_site(app: Sphinx, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    if app.config.course_mathjax == "local":
        src = mathjax_source_dir()
        target = out / "_static" / "mathjax"
        for part in MATHJAX_PARTS:
            copy_tree(src / part, target / part)
        keep = {f for part in MATHJAX_PARTS for f in ((target / part).rglob("*")
                if (target / part).is_dir() else [target / part])}
        for stale in [f for f in target.rglob("*") if f.is_file() and f not in keep]:
            stale.unlink()                           # the bundle and menu of earlier builds
    student_wheel.build(Path(app.confdir), out / STUDENT_WHEEL_DIR,
                        tomllib.loads((Path(app.confdir) / "pyproject.toml").read_text())["project"])
    translate_assignment_downloads(app)
    write_notebooks(app)
    pages = [p for p in out.rglob("*.html") if not {"_static", "_sources", "_images", "_downloads"}
             & set(p.relative_to(out).parts)]
    site_weight.slim_pages(out, pages)
    site_weight.palette_pngs(out / "_images")
    site_weight.slim_stylesheet(out, pages, THEME_CSS_SOURCE)
    site_weight.slim_other_stylesheets(out, pages, out.parent / ".course_site" / "css")
    (out / ".nojekyll").touch()             # GitHub Pages must serve _static/, _sources/
    repo = repository(app)
    if repo and repo.provider == "github":  # Binder builds its image from this file
        binder = out / "binder" / "requirements.txt"
        binder.parent.mkdir(exist_ok=True)
        index = app.config.course_binder_index_url
        binder.write_text(
            "# Environment for the Binder launch button (the site's branch has no other).\n"
            + (f"--extra-index-url {index}\n" if index else "")
            + "\n".join(install_specs(app).values()) + "\n")


# ---------------------------------------------------------------------------- repository
class Repo:
    def __init__(self, url: str, branch: str):
        self.url = url.rstrip("/").removesuffix(".git")
        parsed = urlparse(self.url)
        parts = parsed.path.strip("/").split("/")
        self.provider = (parsed.hostname or "").removesuffix(".com")
        self.org, self.name = (parts + ["", ""])[:2]
        self.branch = branch


def repository(app: Sphinx) -> Repo | None:
    opts = app.config.html_theme_options
    url = opts.get("repository_url", "")
    return Repo(url, opts.get("repository_branch", "") or "main") if url else None


def install_specs(app: Sphinx) -> dict[str, str]:
    """Module to import -> pip requirement that provides it, for a notebook run elsewhere."""
    root = Path(app.confdir)
    repo = repository(app)
    if repo is None:
        raise ExtensionError("set repository.url in _config.yml: notebooks install from it")
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    # The student wheel the build puts beside the pages (student_wheel.py): optlab, the visible
    # checks (autograder.check) and submit() (autograder.submit).
    specs = {"optlab": site_url(app) + STUDENT_WHEEL_DIR + "/"
             + student_wheel.wheel_name(project["name"], project["version"])}
    requirements = root / "requirements.txt"
    pins = {name.lower().replace("_", "-"): version for name, version in PIN.findall(
        requirements.read_text() if requirements.exists() else "")}
    for module, dist in app.config.course_notebook_modules.items():
        specs[module] = f"{dist}=={pins[dist]}" if dist in pins else dist
    return specs


# ---------------------------------------------------------------------------- notebooks
def setup_cell_source(specs: dict[str, str]) -> str:
    lines = "".join(f"    {module!r}: {spec!r},\n" for module, spec in specs.items())
    return (
        "# Setup: installs what this notebook imports when it is missing (Colab, Binder, a fresh\n"
        "# environment). In the course's own environment (`make book`) it installs nothing.\n"
        "import importlib, subprocess, sys\n"
        "\n"
        "def install_missing(requirements):\n"
        "    missing = []\n"
        "    for module, requirement in requirements.items():\n"
        "        try:\n"
        "            importlib.import_module(module)\n"
        "        except ImportError:\n"
        "            missing.append(requirement)\n"
        "    if missing:\n"
        "        subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--quiet', *missing])\n"
        "        importlib.invalidate_caches()\n"
        "\n"
        "install_missing({\n" + lines + "})\n"
    )


def site_url(app: Sphinx) -> str:
    """Base URL of the published site: html_baseurl (`html: baseurl:` in _config.yml), else the
    GitHub Pages address of the repository."""
    base = app.config.html_baseurl
    if not base:
        repo = repository(app)
        if repo is None or repo.provider != "github":
            raise ExtensionError("set html.baseurl in _config.yml: notebooks link into the site")
        base = f"https://{repo.org}.github.io/{repo.name}/"
    # an edition other than the site's root lives in its own folder (course_editions)
    return base.rstrip("/") + "/" + app.config.course_editions.get(edition_of(app), "")


def page_notebook(app: Sphinx, pagename: str) -> nbformat.NotebookNode:
    """The page as a plain Jupyter notebook: the setup cell first, then the page's code cells
    exactly as in its source and, between them, Markdown written from Sphinx's resolved doctree
    (notebook_markdown), so that no MyST syntax is left and glued values are the page's."""
    source = Path(app.env.doc2path(pagename))
    nb = jupytext.read(source)
    text = source.read_text(encoding="utf-8")
    specs = {module: spec for module, spec in install_specs(app).items()
             if module == "optlab" or re.search(rf"\b{re.escape(module)}\b", text)}
    code = [c for c in nb.cells if c.cell_type == "code"]
    doctree = app.env.get_and_resolve_doctree(pagename, app.builder)
    page_url = site_url(app) + app.builder.get_target_uri(pagename)
    try:
        items = notebook_markdown(doctree, page_url, pagename,
                                  app.env.toc_fignumbers.get(pagename, {}))
    except Unsupported as err:
        raise ExtensionError(f"{pagename}: no Markdown for {err} in the downloadable notebook") from None
    containers = [node for kind, node in items if kind == "code"]
    if len(containers) != len(code):
        raise ExtensionError(f"{pagename}: the page shows {len(containers)} code cells, its source "
                             f"has {len(code)} (a removed cell?); cannot pair them")
    cells = [nbformat.v4.new_code_cell(setup_cell_source(specs), metadata={"tags": [SETUP_TAG]})]
    code_iter = iter(code)
    for kind, value in items:
        if kind == "code":
            cells.append(next(code_iter))
        else:
            leftovers = myst_leftovers(value)
            if leftovers:
                raise ExtensionError(f"{pagename}: MyST syntax left in the notebook: {leftovers[:3]}")
            cells.append(nbformat.v4.new_markdown_cell(value))
    nb.cells = cells
    for i, each in enumerate(nb.cells):        # stable ids: an unchanged page, an unchanged file
        each["id"] = f"cell-{i}"
    nb.nbformat, nb.nbformat_minor = 4, 5
    nb.metadata.pop("jupytext", None)
    return nb


def translate_assignment_downloads(app: Sphinx) -> None:
    """The Chinese edition's assignments page offers the student notebooks in Chinese: each
    downloaded assignments/<a>/<a>.ipynb is translated in the build's _downloads (Markdown
    instructions only; cells, tests, points and checksums unchanged) with
    locales/<language>/LC_MESSAGES/assignments/<a>.po. A missing catalog or translation fails the
    build, so a Chinese page never offers a half-translated notebook. (Sphinx copies the English
    file again whenever the copy differs, so the Chinese one is always current.)"""
    if edition_of(app) != "zh":
        return
    from autograder.notebook_i18n import TranslationError, translate_file
    for source, (_docs, dest) in app.env.dlfiles.items():
        parts = Path(source).parts
        if len(parts) == 3 and parts[0] == "assignments" and parts[2] == f"{parts[1]}.ipynb":
            try:
                translate_file(Path(app.outdir) / "_downloads" / dest, app.config.language,
                               root=Path(app.srcdir), assignment=parts[1])
            except TranslationError as err:
                raise ExtensionError(str(err)) from None


def write_notebooks(app: Sphinx) -> None:
    """_sources/<page>.ipynb for every notebook page, every build (the theme puts the executed
    notebook there, and only for pages it rewrites)."""
    for docname in sorted(app.env.found_docs):
        if "kernelspec" in app.env.metadata.get(docname, {}):
            target = Path(app.outdir) / "_sources" / f"{docname}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(page_notebook(app, docname), target)


def add_launch_links(app: Sphinx, pagename, templatename, context, doctree):
    """Runs after sphinx-book-theme's launch/download buttons (priority 501)."""
    if not context.get("ipynb_source") or app.builder.format != "html":
        return
    # written by write_notebooks(); an edition's folder (zh/) in the published branch comes first
    nb_rel = f"{app.config.course_editions.get(edition_of(app), '')}_sources/{context['ipynb_source']}"
    repo = repository(app)
    launch = app.config.html_theme_options.get("launch_buttons", {})
    if not repo or repo.provider != "github":
        return
    branch = app.config.course_notebooks_branch
    ui = {"classic": "tree", "jupyterlab": "lab/tree"}[launch.get("notebook_interface", "classic")]
    urls = {}
    if launch.get("colab_url"):
        urls["Colab"] = (f"{launch['colab_url'].rstrip('/')}/github/{repo.org}/{repo.name}"
                         f"/blob/{branch}/{nb_rel}")
    if launch.get("binderhub_url"):
        urls["Binder"] = (f"{launch['binderhub_url'].rstrip('/')}/v2/gh/{repo.org}/{repo.name}"
                          f"/{branch}?urlpath={ui}/{nb_rel}")
    if launch.get("jupyterhub_url"):
        query = urlencode({"repo": repo.url, "branch": branch,
                           "urlpath": f"{ui}/{repo.name}/{nb_rel}"}, safe="/")
        urls["JupyterHub"] = f"{launch['jupyterhub_url'].rstrip('/')}/hub/user-redirect/git-pull?{query}"
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            for button in group["buttons"]:
                button["url"] = urls.get(button.get("text"), button.get("url"))


# ---------------------------------------------------------------------------- citations
class AuthorYearLabels(BaseLabelStyle):
    """Bibliography labels as the text cites: "Polyak, 1964", "Kingma and Ba, 2015",
    "Sutskever et al., 2013" (sphinxcontrib-bibtex's author_year reference style), instead of
    pybtex's alpha labels ("Pol64") that no reader can match to the citation in the text."""

    def format_labels(self, sorted_entries):
        labels = [self.format_label(entry) for entry in sorted_entries]
        count, counted = Counter(labels), Counter()
        for label in labels:
            if count[label] == 1:
                yield label
            else:                                     # "Goh, 2017a", "Goh, 2017b"
                yield label + chr(ord("a") + counted[label])
                counted.update([label])

    @staticmethod
    def format_label(entry) -> str:
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [Text.from_latex(" ".join(p.prelast_names + p.last_names)).render_as("text")
                 for p in people]
        who = (names[0] if len(names) == 1 else " and ".join(names) if len(names) == 2
               else f"{names[0]} et al." if names else entry.fields.get("title", entry.key))
        return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearStyle(UnsrtStyle):
    default_label_style = "course_author_year"
    default_sorting_style = "author_year_title"


register_plugin("pybtex.style.labels", "course_author_year", AuthorYearLabels)


def drop_label_prefixes(app: Sphinx, doctree, docname: str) -> None:
    """Show list labels without a bibliography's :labelprefix: ("[Lee, 2021]", not
    "[CLLee, 2021]"). The prefix still keeps Sphinx's citation labels unique across pages when
    two chapters list the same work; only the text shown changes."""
    try:
        domain = app.env.get_domain("cite")
    except Exception:                                  # sphinxcontrib-bibtex not loaded
        return
    prefixes = {c.citation_id: domain.bibliographies[c.bibliography_key].labelprefix
                for c in domain.citations if c.bibliography_key.docname == docname}
    for citation in doctree.findall(nodes.citation):
        prefix = next((prefixes[i] for i in citation["ids"] if prefixes.get(i)), "")
        label = citation.next_node(nodes.label)
        if prefix and label is not None:
            for text in label.findall(nodes.Text):
                if text.astext().startswith(prefix):
                    text.parent.replace(text, nodes.Text(text.astext()[len(prefix):]))
                    break
register_plugin("pybtex.style.formatting", "course_author_year", AuthorYearStyle)


# ---------------------------------------------------------------------------- page fixes
def theme_defaults(app: Sphinx, config) -> None:
    # pydata-sphinx-theme logs a console error on a first visit when no colour mode is set.
    # New objects, not changes to the defaults: a second build in the same process (scripts/book.py
    # builds both editions in one) must see the same configuration as a first one.
    config.html_context = {"default_mode": "auto", **config.html_context}
    config.html_static_path = [*config.html_static_path, str(STATIC)]


# ---------------------------------------------------------------------------- editions
# (short: the header has room for two more characters on a 390 px phone, not for "English")
EDITION_NAMES = {"en": ("EN", "Read this page in English"), "zh_CN": ("中文", "阅读本页的中文版")}


def edition_of(app: Sphinx) -> str:
    return "zh" if (app.config.language or "en").startswith("zh") else "en"


def add_language_switch(app: Sphinx, pagename, templatename, context, doctree):
    """A header button on every page that opens the same page in the other edition.
    course_editions maps each edition to its folder in the site ({"en": "", "zh": "zh/"})."""
    editions = app.config.course_editions
    here = edition_of(app)
    if len(editions) < 2 or here not in editions or app.builder.format != "html":
        return
    to_site_root = "../" * (pagename.count("/") + editions[here].count("/"))
    for other, folder in editions.items():
        if other == here:
            continue
        name, tooltip = EDITION_NAMES["zh_CN" if other == "zh" else "en"]
        context.setdefault("header_buttons", []).insert(0, {
            "type": "link", "url": f"{to_site_root}{folder}{pagename}.html", "text": name,
            "tooltip": tooltip, "icon": "fas fa-language", "label": "language-switch"})


def drop_lost_citation_refs(app: Sphinx, doctree) -> None:
    """sphinxcontrib-bibtex notes each {cite} when its role runs. A translated paragraph runs its
    roles again in a document of its own and replaces the original, so the reference list would
    count each citation two or three times. Note this page's citations again from the page as read."""
    from sphinxcontrib.bibtex.citation_target import parse_citation_targets
    from sphinxcontrib.bibtex.roles import CitationRef
    domain = app.env.get_domain("cite")
    docname = app.env.docname
    domain.data["citation_refs"] = [ref for ref in domain.citation_refs if ref.docname != docname] + [
        CitationRef(citation_ref_id=node["ids"][0], docname=docname, line=node.line or 0,
                    targets=list(parse_citation_targets(node["reftarget"])))
        for node in doctree.findall(addnodes.pending_xref)
        if node.get("refdomain") == "cite" and node.get("ids")]


class MathIsNotProse(SphinxTransform):
    """Display equations are the same in every language: keep them out of the translation catalogs
    (Sphinx would offer each one as a message to translate) and out of the Chinese edition's lookup."""

    default_priority = 10          # before Sphinx's i18n (Locale, 20)

    def apply(self, **kwargs):
        for node in self.document.findall(nodes.math_block):
            node["translatable"] = False


class TranslatedGlueText(PasteTextRole):
    """{glue:text} that also works in a translated message. Sphinx's i18n parses each translated
    message as a document of its own, which has none of the page's glued values; there the role
    reads the value from the page itself as a cross-document reference (myst-nb's `doc::key`),
    resolved after reading from the same execution the English page uses."""

    def run(self):
        if "::" not in self.text and self.document.get("source", "").endswith("<translated>"):
            env = self.document.settings.env
            key_format = self.text if ":" in self.text else f"{self.text}:s"
            self.text = f"/{env.doc2path(env.docname, False)}::{key_format}"
        return super().run()


def add_search_scorer(app: Sphinx, pagename, templatename, context, doctree):
    """On the search page, rank first the pages whose title has the query (search_scorer.js).
    (html_search_scorer would do, but Sphinx drops it from builds that write no page.)"""
    if pagename == "search":
        app.add_js_file("search_scorer.js")


def dedupe_scripts(app: Sphinx, pagename, templatename, context, doctree):
    """Drop repeated <script> entries: sphinx-thebe registers its inline config twice under
    Sphinx 7 (a `const` declared twice is a console error on every page)."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (getattr(script, "filename", str(script)) or "",   # None and "" both mean inline
               tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


# Stylesheets and scripts that extensions add to every page, and what a page must contain to
# need them: Jupyter Book loads sphinx-design, sphinx-thebe and sphinx-proof everywhere.
OPTIONAL_ASSETS = {"sphinx-design.min.css": "sd-", "design-tabs.js": "sd-tab",
                   "sphinx-thebe.css": "thebe-launch-button", "sphinx-thebe.js": "thebe-launch-button",
                   "proof.css": "proof"}


def drop_unused_assets(app: Sphinx, pagename, templatename, context, doctree):
    """Leave out of a page the extension assets nothing on it uses (page weight)."""
    body = context.get("body", "")
    def needed(asset) -> bool:
        name = (getattr(asset, "filename", None) or str(asset)).split("?")[0].rsplit("/", 1)[-1]
        return name not in OPTIONAL_ASSETS or OPTIONAL_ASSETS[name] in body
    for key in ("css_files", "script_files"):
        if key in context:
            context[key] = [asset for asset in context[key] if needed(asset)]


def setup(app: Sphinx):
    app.add_config_value("course_mathjax", "local", "html", [str])
    app.add_config_value("course_notebooks_branch", "gh-pages", "html", [str])
    # Modules a chapter may import besides optlab, and the distribution that provides each.
    app.add_config_value("course_notebook_modules", {"myst_nb": "myst-nb"}, "html", [dict])
    # Extra package index for Binder's image, e.g. PyTorch's CPU-only wheels (much smaller).
    app.add_config_value("course_binder_index_url", "", "html", [str])
    # The editions of the site and the folder of each in it (scripts/book.py builds them).
    app.add_config_value("course_editions", {}, "html", [dict])
    app.add_css_file("course.css")                  # layout fixes (_ext/static)
    app.add_js_file("course.js", defer="defer")     # tables as cards on phones
    app.add_role_to_domain("glue", "text", TranslatedGlueText(), override=True)
    app.add_transform(MathIsNotProse)
    app.connect("config-inited", use_local_mathjax)
    app.connect("config-inited", theme_defaults)
    app.connect("builder-inited", configure_mathjax_components, priority=900)
    app.connect("html-page-context", add_search_scorer)
    app.connect("html-page-context", dedupe_scripts, priority=900)   # after all that add scripts
    app.connect("html-page-context", drop_unused_assets, priority=901)
    app.connect("html-page-context", add_launch_links, priority=502)
    app.connect("html-page-context", add_language_switch, priority=503)
    app.connect("doctree-resolved", drop_label_prefixes)
    app.connect("doctree-read", drop_lost_citation_refs)
    # After the themes' own build-finished work (pydata-sphinx-theme rewrites pygments.css).
    app.connect("build-finished", finish_site, priority=900)
    # env_version is a hash of this extension's files, so that changing any of them makes Sphinx
    # read and write every page again (it keeps its environment only while those are unchanged).
    return {"version": extension_hash(), "env_version": int(extension_hash()[:8], 16),
            "parallel_read_safe": True, "parallel_write_safe": True}


def extension_hash() -> str:
    files = sorted(p for p in Path(__file__).parent.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(STATIC.parent).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]
