"""The instructor's whole cycle on nbgrader's local exchange, with real Unix accounts, as the README
tells it: release -> fetch (each student) -> submit (one on time and resubmitted, one late) ->
collect -> `autograder grade` (root, as with sudo) -> generate_feedback -> release_feedback ->
fetch_feedback (each student sees their own, nobody else's) -> export, plus canvas.csv/moodle.csv.

On the same collected submissions stock `nbgrader autograde` runs in a copy of the course; the
gradebooks, `nbgrader export` and what each leaves in autograded/ must agree.

Needs root (it creates the accounts with useradd and removes them) and the fixture course `tiny`.
"""
from __future__ import annotations

import csv
import datetime as dt
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grading"))
from submissions import FIXTURE_COURSE, submission  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"),
                                reason="creates Unix accounts and grades in the sandbox: needs root")
BIN = Path(sys.executable).parent
INSTRUCTOR, ANA, BEN = "ag12teach", "ag12ana", "ag12ben"
COURSE_ID = "tinycourse"
INSTRUCTOR_CONFIG = """c = get_config()
c.CourseDirectory.root = {root!r}
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.course_id = {course!r}
c.CourseDirectory.ignore = [".ipynb_checkpoints", "__pycache__", "cases.py", "reference.py"]
c.Exchange.root = {exchange!r}
c.AssignLatePenalties.plugin_class = "latepolicy.OnePointPerDay"
"""
STUDENT_CONFIG = "c = get_config()\nc.Exchange.root = {exchange!r}\nc.CourseDirectory.course_id = {course!r}\n"
LATE_POLICY = '''import math
from nbgrader.plugins import LateSubmissionPlugin


class OnePointPerDay(LateSubmissionPlugin):
    """One point off per started day late."""

    def late_submission_penalty(self, student_id, score, total_seconds_late):
        return float(math.ceil(total_seconds_late / 86400))
'''
RIGHT = {"scale": "def scale(x, k):\n    return np.asarray(x) * k\n",
         "total": "def total(x):\n    return float(np.sum(x))\n"}
WRONG_TOTAL = {**RIGHT, "total": "def total(x):\n    return 1.0\n"}


@pytest.fixture
def accounts():
    """An instructor and two students; made here if missing, removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="nbgrader-cycle-", dir="/tmp"))
    base.chmod(0o755)
    made = []
    try:
        for name in (INSTRUCTOR, ANA, BEN):
            home = base / "home" / name
            home.mkdir(parents=True)
            try:
                pwd.getpwnam(name)
            except KeyError:
                subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh",
                                "--user-group", name], check=True, capture_output=True)
                made.append(name)
            entry = pwd.getpwnam(name)
            os.chown(home, entry.pw_uid, entry.pw_gid)
            home.chmod(0o700)  # students never see each other's files
        yield base
    finally:
        for name in made:
            subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _hidden_ancestor() -> Path | None:
    """The first folder above this Python that other users cannot enter (e.g. /root for a pyenv
    Python in /root/.pyenv), or None."""
    real = Path(os.path.realpath(sys.executable))
    for folder in list(reversed(real.parents))[1:]:
        if not folder.stat().st_mode & 0o001:
            return folder
    return None


def as_user(name: str | None, cmd, cwd, *, env=None, check=True):
    """Run `cmd` as Unix user `name` (None: root, as `sudo` would), with a clean environment.

    When this machine's Python lives where other users cannot enter (a pyenv Python under /root),
    the command runs in a private mount namespace in which that folder shows only the path to the
    Python (mode 0711): the accounts see what they would see with a Python installed for everyone."""
    home = Path(pwd.getpwnam(name).pw_dir) if name else Path(cwd)
    base = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    cmd = [str(c) for c in cmd]
    if name:
        entry = pwd.getpwnam(name)
        drop = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", "--"]
        hidden = _hidden_ancestor()
        if hidden is None:
            cmd = drop + cmd
        else:
            inner = Path(os.path.realpath(sys.executable)).relative_to(hidden).parts[0]
            script = ('d=$(mktemp -d -p "$3") && chmod 711 "$d" && mkdir "$d/$1" && mount --bind "$2/$1" "$d/$1" && '
                      'mount --rbind "$d" "$2" && shift 3 && exec "$@"')
            cmd = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
                   inner, str(hidden), str(home.parent.parent), *drop, *cmd]
    proc = subprocess.run(cmd, cwd=cwd, env={**base, **(env or {})}, capture_output=True,
                          text=True, timeout=300)
    if check:
        assert proc.returncode == 0, f"{name}: {cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def nbgrader(name, args, cwd, **kw):
    return as_user(name, [BIN / "nbgrader", *args], cwd, **kw)


def make_course(folder: Path, exchange: Path) -> None:
    shutil.copytree(FIXTURE_COURSE, folder)
    (folder / "nbgrader_config.py").write_text(
        INSTRUCTOR_CONFIG.format(root=str(folder), course=COURSE_ID, exchange=str(exchange)))
    (folder / "latepolicy.py").write_text(LATE_POLICY)
    entry = pwd.getpwnam(INSTRUCTOR)
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def student_submits(name: str, exchange: Path, solutions: dict, answer: str | None = None) -> None:
    home = Path(pwd.getpwnam(name).pw_dir)
    notebook = home / "tiny" / "tiny.ipynb"

    def write_answer(nb):
        for cell in nb.cells:
            if answer and cell.metadata.get("nbgrader", {}).get("grade_id") == "why":
                cell.source = answer
        return nb
    data = submission(notebook, solutions=solutions, edit=write_answer)
    subprocess.run(["tee", str(notebook)], input=data, capture_output=True, check=True,
                   user=pwd.getpwnam(name).pw_uid, group=pwd.getpwnam(name).pw_gid, extra_groups=[])
    nbgrader(name, ["submit", "tiny"], home)


def gradebook_view(course: Path) -> dict:
    """Everything a late-penalty plugin, export and formgrader read, per student."""
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        view = {}
        for student in gb.students:
            sub = gb.find_submission("tiny", student.id)
            nb = gb.find_submission_notebook("tiny", "tiny", student.id)
            view[student.id] = {
                "timestamp": sub.timestamp, "seconds_late": sub.total_seconds_late, "score": sub.score,
                "max_score": sub.max_score, "penalty": sub.late_submission_penalty,
                "needs_manual_grade": sub.needs_manual_grade,
                "grades": {g.name: (g.auto_score, g.manual_score, g.needs_manual_grade) for g in nb.grades},
                "comments": {c.name: c.auto_comment for c in nb.comments}}
        return view


def rows(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path, encoding="utf-8")))


def test_instructor_cycle_with_unix_accounts(accounts):
    base = accounts
    exchange, course, stock = base / "exchange", base / "course", base / "stock"
    exchange.mkdir()
    exchange.chmod(0o777)  # as nbgrader's docs set it up: every user may write, the sticky bit is nbgrader's
    make_course(course, exchange)
    for name in (ANA, BEN):
        jupyter = Path(pwd.getpwnam(name).pw_dir) / ".jupyter"
        as_user(name, ["mkdir", "-p", jupyter], jupyter.parent)
        as_user(name, [sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write(sys.argv[2])",
                       jupyter / "nbgrader_config.py", STUDENT_CONFIG.format(exchange=str(exchange), course=COURSE_ID)],
                jupyter.parent)

    # --- instructor: generate and release
    nbgrader(INSTRUCTOR, ["generate_assignment", "tiny"], course)
    nbgrader(INSTRUCTOR, ["release_assignment", "tiny"], course)
    # --- students fetch; Ana submits, then resubmits a better version, both before the deadline
    for name in (ANA, BEN):
        nbgrader(name, ["fetch_assignment", "tiny"], Path(pwd.getpwnam(name).pw_dir))
    student_submits(ANA, exchange, WRONG_TOTAL)
    time.sleep(1.1)
    student_submits(ANA, exchange, RIGHT, answer="Because the lecture says so.")
    time.sleep(1.1)
    due = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    nbgrader(INSTRUCTOR, ["db", "assignment", "add", "tiny", f"--duedate={due.isoformat()}"], course)
    time.sleep(1.1)
    student_submits(BEN, exchange, RIGHT)  # late, with the written answer left as released
    nbgrader(INSTRUCTOR, ["collect", "tiny"], course)
    assert sorted(p.name for p in (course / "submitted").iterdir()) == [ANA, BEN]

    # --- stock nbgrader autograde on a copy of the same collected course (the trusted dry run)
    shutil.copytree(course, stock, symlinks=True)
    (stock / "nbgrader_config.py").write_text(
        INSTRUCTOR_CONFIG.format(root=str(stock), course=COURSE_ID, exchange=str(exchange)))
    entry = pwd.getpwnam(INSTRUCTOR)
    for path in [stock, *stock.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    nbgrader(INSTRUCTOR, ["autograde", "tiny"], stock, env={"AUTOGRADER_COURSE": str(stock)})

    # --- our grader, as root (sudo), on the instructor's course
    graded = as_user(None, [BIN / "autograder", "grade", "tiny", "submitted", "--workers", "1",
                            "--lms-column", "Tiny (4711)"], course)
    assert "2 submissions" in graded.stdout
    # what we wrote in the course is the instructor's again
    for path in [course / "autograded", *(course / "autograded").rglob("*"), course / "grades",
                 *(course / "grades").rglob("*"), course / "gradebook.db"]:
        assert path.stat().st_uid == entry.pw_uid, path

    # --- parity: the gradebook, autograded/ and nbgrader's export agree with stock autograde's
    ours, theirs = gradebook_view(course), gradebook_view(stock)
    assert ours.keys() == theirs.keys() == {ANA, BEN}
    for sid in (ANA, BEN):
        assert ours[sid] == theirs[sid], (sid, ours[sid], theirs[sid])
    assert ours[ANA]["seconds_late"] == 0 and ours[ANA]["penalty"] == 0
    assert ours[BEN]["seconds_late"] > 0 and ours[BEN]["penalty"] == 1.0
    assert ours[ANA]["grades"]["why"] == (None, None, True)  # answered: waits for a grader
    assert ours[BEN]["grades"]["why"] == (0.0, None, False)  # left as released: 0, as nbgrader gives
    assert ours[BEN]["comments"]["why"] == "No response."
    for sid in (ANA, BEN):
        mine, stocks = course / "autograded" / sid / "tiny", stock / "autograded" / sid / "tiny"
        assert sorted(p.name for p in mine.iterdir()) == sorted(p.name for p in stocks.iterdir()) \
            == ["submission_secret.txt", "timestamp.txt", "tiny.ipynb"]
        for name in ("submission_secret.txt", "timestamp.txt"):
            assert (mine / name).read_bytes() == (stocks / name).read_bytes() \
                == (course / "submitted" / sid / "tiny" / name).read_bytes()
        for name in ("submission_secret.txt", "timestamp.txt", "tiny.ipynb"):
            assert (mine / name).stat().st_mode & 0o777 == (stocks / name).stat().st_mode & 0o777 == 0o444
    exports = {}
    for folder, dest in ((course, course / "grades" / "nbgrader-export.csv"), (stock, stock / "export.csv")):
        nbgrader(INSTRUCTOR, ["export", "--to", dest], folder)
        exports[folder] = rows(dest)
    assert exports[course] == exports[stock]
    assert not (course / "grades.csv").exists()
    ben = next(r for r in exports[course] if r["student_id"] == BEN)
    assert (float(ben["raw_score"]), float(ben["late_submission_penalty"]), float(ben["score"]),
            float(ben["max_score"])) == (3.0, 1.0, 2.0, 4.0)

    # --- our grades.csv and feedback: autograded and hand-graded points apart, and the penalty
    ours_csv = {r["student_id"]: r for r in rows(course / "grades" / "tiny" / "grades.csv")}
    assert {k: ours_csv[ANA][k] for k in ("score", "max_score", "manual_score", "manual_max_score",
                                          "late_penalty", "total_score", "total_max_score")} == \
        {"score": "3", "max_score": "3", "manual_score": "", "manual_max_score": "1", "late_penalty": "",
         "total_score": "3", "total_max_score": "4"}
    assert {k: ours_csv[BEN][k] for k in ("score", "manual_score", "late_penalty", "total_score")} == \
        {"score": "3", "manual_score": "0", "late_penalty": "1", "total_score": "2"}
    assert float(ours_csv[BEN]["seconds_late"]) == ours[BEN]["seconds_late"]
    assert ours_csv[ANA]["submitted_at"] == ours[ANA]["timestamp"].replace(tzinfo=dt.timezone.utc).isoformat()
    page = (course / "grades" / "tiny" / "students" / BEN / "feedback.html").read_text()
    assert "Score: <strong>3 / 3</strong> in the autograded tests" in page
    assert "Hand-graded answers: <strong>0 / 1</strong>" in page
    assert "late penalty <strong>&minus;1</strong>" in page and "Total: <strong>2 / 4</strong>" in page
    page = (course / "grades" / "tiny" / "students" / ANA / "feedback.html").read_text()
    assert "Hand-graded answers: not graded yet (out of 1" in page and "late penalty" not in page
    assert "Total: <strong>3 / 4</strong> so far" in page

    # --- LMS files: one upload each
    canvas = rows(course / "grades" / "tiny" / "canvas.csv")
    assert list(canvas[0]) == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Tiny (4711)"]
    assert {r["SIS Login ID"]: r["Tiny (4711)"] for r in canvas} == {ANA: "3", BEN: "2"}
    moodle = rows(course / "grades" / "tiny" / "moodle.csv")
    assert {r["ID number"]: (r["Grade"], r["Maximum Grade"]) for r in moodle} == {ANA: ("3", "4"), BEN: ("2", "4")}

    # --- feedback through the exchange; each student fetches their own
    nbgrader(INSTRUCTOR, ["generate_feedback", "tiny"], course)
    nbgrader(INSTRUCTOR, ["release_feedback", "tiny"], course)
    listing = as_user(ANA, ["ls", exchange / COURSE_ID / "feedback"], base, check=False)
    assert listing.returncode != 0  # feedback pages are found by their secret hash, never listed
    fetched = {}
    for name in (ANA, BEN):
        home = Path(pwd.getpwnam(name).pw_dir)
        nbgrader(name, ["fetch_feedback", "tiny"], home)
        pages = sorted((home / "tiny" / "feedback").glob("*/tiny.html"))
        assert len(pages) == 1, pages  # only the feedback of the submission that was graded
        fetched[name] = pages[0]
        stamp = (course / "submitted" / name / "tiny" / "timestamp.txt").read_text()
        assert pages[0].parent.name == stamp
    ana, ben = fetched[ANA].read_text(), fetched[BEN].read_text()
    assert "tiny (Score: 3.0 / 4.0)" in ana and "Late submission penalty" not in ana
    assert "Because the lecture says so." in ana and "Because the lecture says so." not in ben
    assert "tiny (Score: 2.0 / 4.0)" in ben and "Late submission penalty (Score: -1.0)" in ben
    for page in (ana, ben):
        assert "scale-hidden" not in page or 'check("scale-hidden' not in page  # ids only, no test source
        assert "BEGIN HIDDEN" not in page

    # --- after hand grading: `autograder export` refreshes our CSV, LMS files and feedback
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        grade = gb.find_grade("why", "tiny", "tiny", ANA)
        grade.manual_score = 1.0
        gb.db.commit()
    as_user(INSTRUCTOR, [BIN / "autograder", "export", "tiny"], course)
    ours_csv = {r["student_id"]: r for r in rows(course / "grades" / "tiny" / "grades.csv")}
    assert (ours_csv[ANA]["manual_score"], ours_csv[ANA]["total_score"]) == ("1", "4")
    assert {r["SIS Login ID"]: r["Tiny (4711)"] for r in rows(course / "grades" / "tiny" / "canvas.csv")} == \
        {ANA: "4", BEN: "2"}
    nbgrader(INSTRUCTOR, ["export", "--to", course / "grades" / "nbgrader-export.csv"], course)
    ana_row = next(r for r in rows(course / "grades" / "nbgrader-export.csv") if r["student_id"] == ANA)
    assert float(ana_row["score"]) == 4.0

    # --- an extension granted in nbgrader's gradebook: regrading no longer counts Ben late
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        gb.grant_extension("tiny", BEN, days=1)
    as_user(None, [BIN / "autograder", "grade", "tiny", "submitted", "--workers", "1", "--force"], course)
    ben_row = {r["student_id"]: r for r in rows(course / "grades" / "tiny" / "grades.csv")}[BEN]
    assert (ben_row["seconds_late"], ben_row["late_penalty"], ben_row["total_score"]) == ("0", "", "3")
    regraded = gradebook_view(course)
    assert regraded[BEN]["penalty"] == 0
    # nbgrader's rule on a regrade: a grade given by hand is kept and flagged for another look
    assert regraded[ANA]["grades"]["why"] == (None, 1.0, True)
    assert regraded[ANA]["grades"]["test_scale"] == (2.0, None, False)
