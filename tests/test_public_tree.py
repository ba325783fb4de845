"""`make public`: the course as students may see it. Nothing of the instructor's material is in
it (no solutions/, no hidden tests, no code or file of the sources), it builds the site, and
its own tests pass there."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BOOK, ROOT
from test_site_leaks import MARKERS, code_leaks, copies_of_sources, secret_blocks, site_texts

sys.path.insert(0, str(ROOT / "scripts"))
import public_tree  # noqa: E402


@pytest.fixture(scope="module")
def public(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("public") / "course"
    proc = subprocess.run(["make", "public", f"PUBLIC={dest}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dest


def leaks(tree: Path) -> list[str]:
    """What test_site_leaks looks for in the site, in every file of `tree`: nbgrader markers
    (in notebooks and pages; the README names them), solution or hidden-test code, copies."""
    assert secret_blocks(), "solutions/ has no solution or hidden-test blocks to look for"
    texts = list(site_texts(tree))
    return [f"{name}: {m.group(0)}" for name, text in texts if name.endswith((".ipynb", ".html"))
            for m in [MARKERS.search(text)] if m] + code_leaks(texts) + copies_of_sources(tree)


def test_public_tree_is_every_tracked_file_but_the_instructors(public):
    tracked = public_tree.tracked_files()
    kept = sorted(str(p.relative_to(public)) for p in public.rglob("*") if p.is_file()
                  and p.name != public_tree.MARK)
    assert kept == sorted(p for p in tracked if not public_tree.is_private(p))
    assert not (public / "solutions").exists() and not (public / "nbgrader_config.py").exists()
    assert {"book", "assignments", "optlab", "autograder"} <= {p.name for p in public.iterdir()}
    assert leaks(public) == []


def test_public_tree_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    proc = subprocess.run([sys.executable, ROOT / "scripts" / "public_tree.py", tmp_path],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "not empty" in proc.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_public_tree_is_rewritten_by_the_next_run(public):
    stale = public / "book" / "stale.md"
    stale.write_text("from an earlier version")
    subprocess.run(["make", "public", f"PUBLIC={public}"], cwd=ROOT, check=True, capture_output=True)
    assert not stale.exists() and (public / "book").is_dir()


@pytest.mark.book
def test_public_tree_builds_the_site_and_passes_its_tests(built_book, public):
    """The site builds there with -W (executions come from the instructor's cache, which holds
    only outputs of the same code), no page leaks, and the tests it keeps pass."""
    shutil.copytree(ROOT / "_build" / ".jupyter_cache", public / "_build" / ".jupyter_cache")
    env = {**os.environ, "PYTHONPATH": str(public)}   # its optlab and autograder, not ours
    build = subprocess.run(BOOK, cwd=public, env=env,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-6000:] + build.stderr[-4000:]
    assert leaks(public / "_build" / "html") == []
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                           cwd=public, env=env, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout[-6000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and " failed" not in tests.stdout


def test_leak_search_finds_what_is_planted(tmp_path):
    """The search above can fail: a hidden test's line, a solution file, a marker are found."""
    (kind, nb, lines), *_ = [b for b in secret_blocks() if b[0] == "HIDDEN TESTS"]
    (tmp_path / "notes.md").write_text(f"copied from class:\n{lines[0]}\n")
    shutil.copy(ROOT / "solutions" / "optimizers" / "reference.py", tmp_path / "ref.py")
    (tmp_path / "x.ipynb").write_text('{"cells": [{"source": ["### BEGIN SOLUTION"]}]}')
    found = leaks(tmp_path)
    assert any(f.startswith("notes.md: HIDDEN TESTS") for f in found)
    assert "ref.py" in found and any(f.startswith("x.ipynb: BEGIN SOLUTION") for f in found)


@pytest.mark.book
def test_student_wheel_passes_the_reference_and_fails_a_blank_notebook(built_book, tmp_path):
    """With only the site's wheel (no repository, no visible_cases.json beside the notebook), the
    visible checks pass every assignment's reference code and fail an empty namespace."""
    from test_site_notebooks import install_student_wheel
    target = tmp_path / "site-packages"
    install_student_wheel(built_book, target)
    probe = ("import json, sys; sys.path.insert(0, sys.argv[1])\n"
             "import autograder.check as c\n"
             "assert c.__file__.startswith(sys.argv[1]), c.__file__\n"
             "report = {}\n"
             "for path in c.visible_files():\n"
             "    ns = {'__name__': 'reference'}\n"
             "    exec(open(sys.argv[2].format(path.stem)).read(), ns)\n"
             "    for case in c.decode(path.read_bytes(), max_bytes=2**30)['cases']:\n"
             "        report[case] = (c.run_case(case, ns), c.run_case(case, {}))\n"
             "print(json.dumps(report))\n")
    empty = tmp_path / "notebook"
    empty.mkdir()
    out = subprocess.run([sys.executable, "-c", probe, target, ROOT / "solutions" / "{}" / "reference.py"],
                         capture_output=True, text=True, cwd=empty, check=True)
    report = json.loads(out.stdout)
    assignments = {p.parent.name for p in (ROOT / "assignments").glob("*/visible_cases.json")}
    released = {case for a in assignments for case in
                json.loads((ROOT / "assignments" / a / "visible_cases.json").read_text())["cases"]}
    assert set(report) == released
    assert {case: ref for case, (ref, _) in report.items() if ref is not None} == {}
    assert [case for case, (_, blank) in report.items() if blank is None] == []
