"""Nothing of the solutions reaches the website; the student notebooks do.

Every file of the built site is read (HTML as its text, notebooks as their cell sources, _sources,
_downloads and the search index included) and searched for nbgrader's solution and hidden-test
markers, and for the code between those markers in the nbgrader source notebooks (solutions/).
"""
import html
import json
import re

import pytest

from conftest import ROOT

MARKERS = re.compile(r"BEGIN SOLUTION|END SOLUTION|BEGIN HIDDEN TESTS|END HIDDEN TESTS"
                     r"|BEGIN MARK SCHEME|END MARK SCHEME")
BLOCK = re.compile(r"#+\s*BEGIN (SOLUTION|HIDDEN TESTS)\s*\n(.*?)#+\s*END \1", re.S)
MIN_LINE = 20          # shorter lines (`return x`, `t = 0`) are too common to prove a leak


def _normalize(text):
    return re.sub(r"\s+", " ", text).strip()


def _cells(path):
    return ["".join(cell["source"]) for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]]


def site_texts(site):
    """(relative path, searchable text) for every file of the built site."""
    for path in sorted(p for p in site.rglob("*") if p.is_file()):
        raw = path.read_bytes().decode("utf-8", errors="ignore")
        if path.suffix == ".ipynb":
            raw += "\n" + "\n".join(_cells(path))
        elif path.suffix in (".html", ".htm"):
            raw += "\n" + html.unescape(re.sub(r"<[^>]+>", "", raw))
        yield str(path.relative_to(site)), raw


def secret_blocks():
    """(kind, source notebook, distinctive lines) for each solution / hidden-test block."""
    released = "\n".join(_normalize(text) for nb in (ROOT / "assignments").rglob("*.ipynb")
                         for text in _cells(nb))
    blocks = []
    for nb in sorted((ROOT / "solutions").rglob("*.ipynb")):
        for cell in _cells(nb):
            for kind, body in BLOCK.findall(cell):
                lines = {_normalize(line) for line in body.splitlines()}
                lines = {line for line in lines if len(line) >= MIN_LINE
                         and not line.startswith("#") and line not in released}
                if lines:
                    blocks.append((kind, nb.relative_to(ROOT), sorted(lines)))
    return blocks


def test_no_nbgrader_markers_anywhere_in_the_site(built_book):
    hits = [f"{name}: {m.group(0)}" for name, text in site_texts(built_book)
            for m in [MARKERS.search(text)] if m]
    assert hits == [], f"nbgrader markers in the built site: {hits}"


def code_leaks(texts) -> list[str]:
    """Solution or hidden-test code in (name, text) pairs: a solution leaks when all of its
    distinctive lines are there, a hidden test when any line of it is."""
    blocks = secret_blocks()
    leaks = []
    for name, text in texts:
        flat = _normalize(text)
        for kind, source, lines in blocks:
            found = [line for line in lines if line in flat]
            if found and (kind == "HIDDEN TESTS" or len(found) == len(lines)):
                leaks.append(f"{name}: {kind} from {source}: {found[0]!r}")
    return leaks


def copies_of_sources(tree) -> list[str]:
    sources = {p.read_bytes() for p in (ROOT / "solutions").rglob("*") if p.is_file()}
    return [str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file() and p.read_bytes() in sources]


def test_no_solution_or_hidden_test_code_in_the_site(built_book):
    if not secret_blocks():
        pytest.skip("solutions/ has no solution or hidden-test blocks yet")
    leaks = code_leaks(site_texts(built_book))
    assert leaks == [], "solution code in the built site:\n" + "\n".join(leaks)


def test_solution_notebooks_are_not_copied_into_the_site(built_book):
    assert copies_of_sources(built_book) == []


def test_student_notebooks_are_downloadable_from_the_assignments_page(built_book):
    released = sorted((ROOT / "assignments").rglob("*.ipynb"))
    released = [nb for nb in released if ".ipynb_checkpoints" not in nb.parts]
    if not released:
        pytest.skip("no student notebooks released into assignments/ yet")
    page = built_book / "book" / "assignments.html"
    links = {(page.parent / href).resolve()
             for href in re.findall(r'href="([^"#?]+\.ipynb)"', page.read_text(encoding="utf-8"))}
    for nb in released:
        served = [link for link in links if link.is_file() and link.read_bytes() == nb.read_bytes()]
        assert served, f"the assignments page offers no download of {nb.relative_to(ROOT)}"
