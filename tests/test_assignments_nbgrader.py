"""The assignments through stock nbgrader, in a temporary copy of the course (never in the repository):
`assignments/` is exactly what `nbgrader generate_assignment` makes from `solutions/`, releases leak
nothing, and `nbgrader autograde` gives the reference full marks and an untouched notebook 0 on every
test, each failing by an AssertionError from a check (no grading error)."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.case import VISIBLE_CASES_FILE, test_cells

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ASSIGNMENTS = ["optimizers", "classification", "backprop"]


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(BIN / "nbgrader"), *args], cwd=course, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A temporary course: solutions/ and nbgrader_config.py copied, every assignment generated."""
    course = tmp_path_factory.mktemp("course")
    shutil.copytree(ROOT / "solutions", course / "solutions", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "nbgrader_config.py", course)
    for a in ASSIGNMENTS:  # what `make assignments` runs
        nbgrader(course, "generate_assignment", a, "--force")
        subprocess.run([sys.executable, "-m", "autograder.case", a], cwd=course, check=True, capture_output=True)
    return course


def _comparable(nb):
    cells = [(c.cell_type, c.source, json.dumps(c.metadata, sort_keys=True)) for c in nb.cells]
    return cells, json.dumps(nb.metadata, sort_keys=True)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_assignments_folder_is_exactly_the_regenerated_release(course, assignment):
    mine, fresh = ROOT / "assignments" / assignment, course / "assignments" / assignment
    assert sorted(p.name for p in mine.iterdir()) == sorted(p.name for p in fresh.iterdir()) \
        == sorted([f"{assignment}.ipynb", VISIBLE_CASES_FILE])
    a = nbformat.read(mine / f"{assignment}.ipynb", as_version=4)
    b = nbformat.read(fresh / f"{assignment}.ipynb", as_version=4)
    assert _comparable(a) == _comparable(b), "assignments/ is stale: run `make assignments`"
    assert (mine / VISIBLE_CASES_FILE).read_bytes() == (fresh / VISIBLE_CASES_FILE).read_bytes()


def _distinctive_solution_lines(source):
    """Lines between BEGIN/END SOLUTION in the source notebook long enough to be recognisable."""
    lines = set()
    for cell in source.cells:
        for block in re.findall(r"### BEGIN SOLUTION(.*?)### END SOLUTION", cell.source, re.S):
            lines |= {line.strip() for line in block.splitlines() if len(line.strip()) >= 20}
    return lines


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_released_notebooks_hold_no_solution_and_no_hidden_test(assignment):
    folder = ROOT / "assignments" / assignment
    released = (folder / f"{assignment}.ipynb").read_text()
    data = (folder / VISIBLE_CASES_FILE).read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in released
    source = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    hidden_ids = set()
    for cell in source.cells:
        for block in re.findall(r"### BEGIN HIDDEN TESTS(.*?)### END HIDDEN TESTS", cell.source, re.S):
            hidden_ids |= set(re.findall(r'check\("([^"]+)"\)', block))
    assert hidden_ids
    for cid in hidden_ids:
        assert f'"{cid}"' not in released and f'"{cid}"' not in data, cid
    lines = _distinctive_solution_lines(source)
    assert len(lines) >= 5
    leaked = [line for line in lines if line in released or line in data]
    assert leaked == []
    nb = nbformat.read(folder / f"{assignment}.ipynb", as_version=4)
    for cell in nb.cells:  # written answers are placeholders again
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "markdown" and meta.get("solution"):
            assert cell.source.strip() == "YOUR ANSWER HERE"
    for cell in source.cells:  # none of the model answers' sentences survive
        if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
            assert cell.source.strip()[:60] not in released


@pytest.fixture(scope="module")
def autograded(course):
    """`nbgrader autograde` of two students per assignment: the untouched release and the reference."""
    for a in ASSIGNMENTS:
        for student, src in [("untouched", course / "assignments" / a), ("reference", course / "solutions" / a)]:
            dest = course / "submitted" / student / a
            dest.mkdir(parents=True)
            shutil.copy(src / f"{a}.ipynb", dest)
        nbgrader(course, "autograde", a, "--force")
    return course


def _graded_cells(course, student, assignment):
    nb = nbformat.read(course / "autograded" / student / assignment / f"{assignment}.ipynb", as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")}


def _scores(course, assignment, student):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id="when-nets-wont-train") as gb:
        sub = gb.find_submission_notebook(assignment, assignment, student)
        return {g.name: (g.auto_score, g.max_score) for g in sub.grades if g.cell.cell_type == "code"}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_untouched_notebook_scores_zero_on_every_test_without_grading_errors(autograded, assignment):
    cells = test_cells(ROOT / "solutions" / assignment / f"{assignment}.ipynb")
    scores = _scores(autograded, assignment, "untouched")
    assert set(scores) == {c.grade_id for c in cells}
    assert all(auto == 0 for auto, _ in scores.values()), scores
    graded = _graded_cells(autograded, "untouched", assignment)
    for cell in cells:
        errors = [o for o in graded[cell.grade_id].outputs if o.output_type == "error"]
        assert len(errors) == 1 and errors[0].ename == "CheckFailed", (cell.grade_id, errors)
        assert errors[0].evalue.startswith(f"{cell.case_ids[0]}: ")
        assert "NotImplementedError" in errors[0].evalue or "NameError" in errors[0].evalue


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_validate_shows_each_failure_once_whole_and_without_the_checkers_frames(course, assignment, tmp_path):
    """`nbgrader validate` of the untouched release, with an import that grading lacks added at the
    top: the import is reported once, by name; every check names its case and the likely mistake,
    in lines validate does not cut, with no frame of the checker."""
    nb = nbformat.read(course / "assignments" / assignment / f"{assignment}.ipynb", as_version=4)
    nb.cells.insert(1, nbformat.v4.new_code_cell("import my_helpers_file"))
    nbformat.write(nb, tmp_path / f"{assignment}.ipynb")
    shutil.copy(course / "assignments" / assignment / VISIBLE_CASES_FILE, tmp_path)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([str(BIN / "nbgrader"), "validate", f"{assignment}.ipynb"], cwd=tmp_path, env=env,
                         capture_output=True, text=True).stdout
    errors = [block.split("The error was:", 1)[1].strip() for block in out.split("=" * 90)
              if "The error was:" in block]
    assert errors and not any(line.endswith("...") for e in errors for line in e.splitlines())
    assert "check.py" not in out and "Traceback" not in out
    errors = [e for e in errors if e != "You did not provide a response."]   # a written answer
    assert all(e.startswith("Check failed: ") for e in errors), errors       # only the checks fail
    assert [e for e in errors if "import my_helpers_file" in e] == [errors[0]]
    for e in errors[1:]:
        assert "NotImplementedError" in e or "not defined" in e, e


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_reference_scores_full_marks_and_passes_every_case_in_kernel(autograded, assignment):
    cells = test_cells(ROOT / "solutions" / assignment / f"{assignment}.ipynb")
    scores = _scores(autograded, assignment, "reference")
    assert scores == {c.grade_id: (c.points, c.points) for c in cells}
    graded = _graded_cells(autograded, "reference", assignment)
    for cell in cells:
        printed = "".join(o.get("text", "") for o in graded[cell.grade_id].outputs if o.output_type == "stream")
        assert printed.split() == [w for cid in cell.case_ids for w in ("passed:", cid)]


@pytest.mark.book
def test_the_site_offers_exactly_the_released_files(built_book):
    """The assignments page's downloads are the released notebooks and case data, byte for byte."""
    page = (built_book / "book" / "assignments.html").read_text(encoding="utf-8")
    links = re.findall(r'href="\.\./(_downloads/[0-9a-f]+/[^"]+)"', page)
    released = {p.read_bytes() for a in ASSIGNMENTS for p in (ROOT / "assignments" / a).iterdir()}
    assert len(links) == 2 * len(ASSIGNMENTS)
    assert {(built_book / link).read_bytes() for link in links} == released
