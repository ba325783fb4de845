"""One upload file per learning platform: an LMS download graded, then canvas.csv and moodle.csv hold
the platform's own ids and the totals that nbgrader's export would show."""
from __future__ import annotations

import csv
import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grading"))
from submissions import FIXTURE_COURSE, WRONG_TINY, submission  # noqa: E402

from autograder.__main__ import main  # noqa: E402

SOURCE = FIXTURE_COURSE / "solutions" / "tiny" / "tiny.ipynb"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")


def rows(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path, encoding="utf-8")))


def test_canvas_and_moodle_files_from_an_lms_download(tmp_path):
    course = tmp_path / "course"
    shutil.copytree(FIXTURE_COURSE, course)
    right = submission(SOURCE, reference=True)
    with zipfile.ZipFile(tmp_path / "download.zip", "w") as z:
        z.writestr("fay_LATE_12345_67890_tiny.ipynb", right)  # Canvas: user 12345, submission 67890
        z.writestr("Gus Ho_555_assignsubmission_file_/tiny.ipynb", submission(SOURCE, solutions=WRONG_TINY))  # Moodle
        z.writestr("张伟_1201_assignsubmission_file_/tiny.ipynb", right)
    out = tmp_path / "out"
    assert main(["grade", "tiny", str(tmp_path / "download.zip"), "--out", str(out), "--root", str(course),
                 "--workers", "1", "--lms-column", "Tiny (4711)"]) == 0

    canvas = rows(out / "canvas.csv")
    assert list(canvas[0]) == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Tiny (4711)"]
    fay = next(r for r in canvas if r["Student"] == "fay")
    assert (fay["ID"], fay["SIS Login ID"], fay["Tiny (4711)"]) == ("12345", "", "3")  # 3 autograded, 1 by hand pending

    moodle = {r["Identifier"]: r for r in rows(out / "moodle.csv")}
    assert list(next(iter(moodle.values()))) == ["Identifier", "Full name", "Email address", "ID number",
                                                 "Grade", "Maximum Grade"]
    assert (moodle["Participant 555"]["Full name"], moodle["Participant 555"]["Grade"],
            moodle["Participant 555"]["Maximum Grade"]) == ("Gus Ho", "0", "4")
    assert (moodle["Participant 1201"]["Full name"], moodle["Participant 1201"]["Grade"]) == ("张伟", "3")

    # hand grading in the gradebook, then `autograder export`: the uploads take the hand-graded point
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        gb.find_grade("why", "tiny", "tiny", "fay_12345").manual_score = 1.0
        gb.db.commit()
    assert main(["export", "tiny", "--out", str(out), "--root", str(course)]) == 0
    fay = next(r for r in rows(out / "canvas.csv") if r["Student"] == "fay")
    assert fay["Tiny (4711)"] == "4"  # the column name is remembered from the grading run
    grades = {r["student_id"]: r for r in rows(out / "grades.csv")}
    assert (grades["fay_12345"]["score"], grades["fay_12345"]["manual_score"],
            grades["fay_12345"]["total_score"], grades["fay_12345"]["total_max_score"]) == ("3", "1", "4", "4")
    assert "Hand-graded answers: <strong>1 / 1</strong>" in (out / "students" / "fay_12345" / "feedback.html").read_text()


def test_a_student_renamed_between_downloads_is_one_row_with_the_latest_grade(tmp_path):
    """Canvas user 1201 is `doejohn` in the first download and `doejohnny` in the second: the upload
    files hold one row for 1201, the later submission's grade."""
    course = tmp_path / "course"
    shutil.copytree(FIXTURE_COURSE, course)
    out = tmp_path / "out"
    for name, day, data in (("doejohn_1201_5551_tiny.ipynb", 1, submission(SOURCE, reference=True)),
                            ("doejohnny_LATE_1201_5552_tiny.ipynb", 2, submission(SOURCE, solutions=WRONG_TINY))):
        with zipfile.ZipFile(tmp_path / f"week{day}.zip", "w") as z:
            z.writestr(zipfile.ZipInfo(name, (2026, 11, day, 12, 0, 0)), data)
        assert main(["grade", "tiny", str(tmp_path / f"week{day}.zip"), "--out", str(out), "--root", str(course),
                     "--workers", "1", "--no-gradebook"]) == 0
    grades = {r["student_id"]: r["score"] for r in rows(out / "grades.csv")}
    assert grades == {"doejohn_1201": "3", "doejohnny_1201": "0"}
    assert [(r["ID"], r["Student"], r["tiny"]) for r in rows(out / "canvas.csv")] == [("1201", "doejohnny", "0")]
