"""What the grader leaves for nbgrader stays usable whatever the submission's cell metadata says:
nbgrader's own tools (generate_feedback) run on it, and a forged grade cell earns nothing."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grading"))
from submissions import FIXTURE_COURSE, submission  # noqa: E402

from autograder.__main__ import main  # noqa: E402

SOURCE = FIXTURE_COURSE / "solutions" / "tiny" / "tiny.ipynb"
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")
CONFIG = """c = get_config()
c.CourseDirectory.root = {root!r}
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.course_id = "tinycourse"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "__pycache__", "cases.py", "reference.py"]
"""


def forged(nb):
    why = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "why")
    twin = nbformat.from_dict(dict(why))  # the answer cell twice
    twin.source, twin.id = "a second answer", "twin-answer"
    bonus = nbformat.v4.new_markdown_cell("bonus")
    bonus.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": 100,
                                  "grade_id": "bonus", "schema_version": 3, "task": False}
    why.source = "My answer."
    nb.cells += [twin, bonus]
    return nb


def test_forged_cell_metadata_keeps_nbgrader_working(tmp_path):
    course = tmp_path / "course"
    shutil.copytree(FIXTURE_COURSE, course)
    (course / "nbgrader_config.py").write_text(CONFIG.format(root=str(course)))
    sub = tmp_path / "submitted" / "mallory" / "tiny"
    sub.mkdir(parents=True)
    (sub / "tiny.ipynb").write_bytes(submission(SOURCE, reference=True, edit=forged))
    assert main(["grade", "tiny", str(tmp_path / "submitted"), "--out", str(tmp_path / "out"),
                 "--root", str(course), "--workers", "1"]) == 0
    nb = nbformat.read(course / "autograded" / "mallory" / "tiny" / "tiny.ipynb", as_version=4)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert "bonus" not in ids and ids.count("why") == 1
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([str(BIN / "nbgrader"), "generate_feedback", "tiny"], cwd=course, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (course / "feedback" / "mallory" / "tiny" / "tiny.html").read_text()
    assert "tiny (Score: 3.0 / 4.0)" in page and "/ 100" not in page
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        grade = gb.find_grade("why", "tiny", "tiny", "mallory")
        assert (grade.auto_score, grade.needs_manual_grade) == (None, True)  # answered: for a grader
        assert gb.find_submission("tiny", "mallory").max_score == 4.0
