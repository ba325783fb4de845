"""nbgrader's exchange on one machine: release -> fetch -> submit -> collect -> grade with this grader
-> generate_feedback -> export, in a temporary course built from the fixture assignment `tiny`."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grading"))
from submissions import FIXTURE_COURSE, submission  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")
BIN = Path(sys.executable).parent
CONFIG = """c = get_config()
c.CourseDirectory.root = {root!r}
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.course_id = "tinycourse"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "__pycache__", "cases.py", "reference.py"]
c.Exchange.root = {exchange!r}
"""


def run(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_exchange_end_to_end(tmp_path):
    course, student, exchange = tmp_path / "course", tmp_path / "student", tmp_path / "exchange"
    shutil.copytree(FIXTURE_COURSE, course)
    student.mkdir(), exchange.mkdir()
    exchange.chmod(0o777)
    (course / "nbgrader_config.py").write_text(CONFIG.format(root=str(course), exchange=str(exchange)))
    (student / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.Exchange.root = {str(exchange)!r}\nc.CourseDirectory.course_id = 'tinycourse'\n")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", HOME=str(tmp_path))
    nbgrader = [str(BIN / "nbgrader")]

    run(nbgrader + ["generate_assignment", "tiny"], course, env)
    released = (course / "assignments" / "tiny" / "tiny.ipynb").read_text()
    assert "scale-hidden" not in released and "np.asarray(x) * k" not in released
    assert not (course / "assignments" / "tiny" / "cases.py").exists()
    run(nbgrader + ["release_assignment", "tiny"], course, env)
    run(nbgrader + ["fetch_assignment", "tiny"], student, env)
    fetched = student / "tiny" / "tiny.ipynb"
    # the student solves `scale` correctly and `total` wrongly: 2 of the 3 autograded points
    fetched.write_bytes(submission(fetched, solutions={
        "scale": "def scale(x, k):\n    return np.asarray(x) * k\n",
        "total": "def total(x):\n    return 1.0\n"}))
    run(nbgrader + ["submit", "tiny"], student, env)
    run(nbgrader + ["collect", "tiny"], course, env)
    user = next(p.name for p in (course / "submitted").iterdir())

    graded = run([sys.executable, "-m", "autograder", "grade", "tiny", "submitted", "--workers", "1"], course, env)
    assert "1 submissions" in graded.stdout
    row = next(csv.DictReader(open(course / "grades" / "tiny" / "grades.csv")))
    assert (row["student_id"], row["score"], row["max_score"], row["status"]) == (user, "2", "3", "ok")

    run(nbgrader + ["generate_feedback", "tiny"], course, env)
    page = (course / "feedback" / user / "tiny" / "tiny.html").read_text()
    assert "check(\"scale-hidden" not in page and "BEGIN HIDDEN" not in page  # ids only, no test source
    assert "values differ" in page  # the grader's verdict for the failing test cell

    run(nbgrader + ["export"], course, env)
    export = next(r for r in csv.DictReader(open(course / "grades.csv")) if r["assignment"] == "tiny")
    assert export["student_id"] == user
    assert float(export["raw_score"]) == 2.0 and float(export["max_score"]) == 4.0  # + 1 manual point
