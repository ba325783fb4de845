"""The book builds with warnings as errors, executes every chapter, and caches execution."""
import subprocess
import textwrap
from pathlib import Path

import yaml

from conftest import BOOK, BUILD_FLAGS, JB, ROOT


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [entry["file"] for entry in toc["chapters"]]


def test_every_toc_page_is_built(built_book):
    for name in toc_files():
        assert (built_book / f"{name}.html").is_file(), f"{name} missing from the site"
        assert (built_book / "zh" / f"{name}.html").is_file(), f"{name} missing from the Chinese edition"


def test_chapter_one_shows_the_glued_results(built_book):
    html = (built_book / "book" / "critical-points.html").read_text()
    # The Hessian of (1 - w1 w2)^2 at the origin is [[0, -2], [-2, 0]]: eigenvalues -2 and 2,
    # derived by hand in the chapter's first exercise; the page must show them as computed.
    assert "eigenvalues: [-2.0, 2.0]" in html
    assert "minimum ratio" in html


def test_rebuilding_without_changes_executes_nothing(built_book):
    """Neither edition executes anything: both read the one execution cache."""
    proc = subprocess.run(BOOK, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "[en] built" in proc.stdout and "[zh] built" in proc.stdout
    assert "Executing notebook" not in proc.stdout + proc.stderr


def test_a_failing_cell_fails_the_build_naming_the_chapter_and_the_cell(tmp_path):
    """Same execution settings as the real book, on a one-page book with a broken cell."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    nb_keys = {k: v for k, v in config["sphinx"]["config"].items() if k.startswith("nb_")}
    (tmp_path / "_config.yml").write_text(yaml.safe_dump({
        "title": "broken", "only_build_toc_files": True,
        "execute": config["execute"], "sphinx": {"config": nb_keys},
    }))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: broken-chapter\n")
    (tmp_path / "broken-chapter.md").write_text(textwrap.dedent('''\
        ---
        jupytext:
          text_representation: {extension: .md, format_name: myst}
        kernelspec: {name: python3, display_name: Python 3}
        ---
        # Broken

        ```{code-cell} python
        x = 1
        ```

        ```{code-cell} python
        raise ValueError("deliberate failure in the second cell")
        ```
        '''))
    proc = subprocess.run([str(JB), "build", str(tmp_path), *BUILD_FLAGS], cwd=tmp_path, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "broken-chapter.md: WARNING: Executing notebook failed" in out
    assert 'raise ValueError("deliberate failure in the second cell")' in out  # the cell's source
    assert not (tmp_path / "_build" / "html" / "broken-chapter.html").exists()


# ------------------------------------------------------------------ what the built pages may show
import math
import re

import pytest
from bs4 import BeautifulSoup

WARNING_TEXT = re.compile(r"\b\w*Warning\b(?::|\s*\()|^\s*warnings\.warn", re.M)


def warning_outputs(html: str) -> list[str]:
    """Text of every cell output on a page that shows a Python warning (or any stderr stream)."""
    soup = BeautifulSoup(html, "html.parser")
    found = []
    for out in soup.select("div.cell_output"):
        text = out.get_text()
        if out.select("div.stderr, div.output.stderr") or WARNING_TEXT.search(text):
            found.append(text.strip()[:300])
    return found


def test_the_warning_scan_sees_a_stderr_warning_and_ignores_plain_output():
    warned = ('<div class="cell_output docutils container"><div class="output stderr highlight-myst-ansi '
              'notranslate"><div class="highlight"><pre><span></span>/tmp/ipykernel_1/2.py:45: UserWarning: '
              'Converting a tensor</pre></div></div></div>')
    printed = ('<div class="cell_output docutils container"><div class="output stream highlight-myst-ansi '
               'notranslate"><div class="highlight"><pre><span></span>loss 0.25</pre></div></div></div>')
    assert len(warning_outputs(warned)) == 1
    assert warning_outputs(printed) == []
    assert len(warning_outputs(printed.replace("loss 0.25", "RuntimeWarning: overflow in exp"))) == 1


@pytest.mark.book
def test_no_page_shows_warning_output(built_book):
    shown = {}
    for name in toc_files():
        found = warning_outputs((built_book / f"{name}.html").read_text())
        if found:
            shown[name] = found
    assert not shown, f"pages print warnings (fix the cause in the chapter): {shown}"


def table_after_header(html: str, header_text: str) -> list[list[str]]:
    """Rows (cell texts) of the first table whose header row contains header_text."""
    soup = BeautifulSoup(html, "html.parser")
    for table in soup.find_all("table"):
        head = table.find("thead")
        if head and header_text in head.get_text():
            return [[td.get_text().strip() for td in tr.find_all("td")] for tr in table.find("tbody").find_all("tr")]
    raise AssertionError(f"no table with {header_text!r} in its header")


def check_sqrt_kappa_column(rows: list[list[str]]) -> None:
    """The momentum chapter says the last column grows like sqrt(kappa)."""
    values = [(int(r[0]), float(r[-1])) for r in rows]
    assert [v for _, v in values] == sorted(v for _, v in values), values
    for kappa, v in values:
        assert 0.8 < v / math.sqrt(kappa) < 1.25, f"kappa={kappa}: {v} is not about sqrt(kappa)"


def test_the_sqrt_kappa_check_rejects_the_inverted_ratio():
    check_sqrt_kappa_column([["10", "3.2"], ["100", "10.0"], ["1000", "31.4"]])
    with pytest.raises(AssertionError):
        check_sqrt_kappa_column([["10", "0.3"], ["100", "0.1"], ["1000", "0.0"]])   # log(gd)/log(mo)


@pytest.mark.book
def test_momentum_kappa_table_grows_like_sqrt_kappa(built_book):
    html = (built_book / "book" / "momentum.html").read_text()
    rows = table_after_header(html, "steps of GD per step of momentum")
    assert len(rows) == 3
    check_sqrt_kappa_column(rows)
