"""The book builds with warnings as errors, executes every chapter, and caches execution."""
import subprocess
import textwrap
from pathlib import Path

import yaml

from conftest import BUILD_FLAGS, JB, ROOT


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [entry["file"] for entry in toc["chapters"]]


def test_every_toc_page_is_built(built_book):
    for name in toc_files():
        assert (built_book / f"{name}.html").is_file(), f"{name} missing from the site"


def test_chapter_one_shows_the_glued_results(built_book):
    html = (built_book / "book" / "critical-points.html").read_text()
    # The Hessian of (1 - w1 w2)^2 at the origin is [[0, -2], [-2, 0]]: eigenvalues -2 and 2,
    # derived by hand in the chapter's first exercise; the page must show them as computed.
    assert "eigenvalues: [-2.0, 2.0]" in html
    assert "minimum ratio" in html


def test_rebuilding_without_changes_executes_nothing(built_book):
    proc = subprocess.run([str(JB), "build", str(ROOT), *BUILD_FLAGS], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:]
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
