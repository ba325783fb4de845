"""The grader's interface: inputs, exit codes, refusal without a sandbox, resume after a kill, fairness."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grading"))
from submissions import FIXTURE_COURSE, WRONG_TINY, submission  # noqa: E402

from autograder.__main__ import main  # noqa: E402
from autograder.course import draw, load_assignment  # noqa: E402
from autograder.submissions import discover  # noqa: E402
from autograder.sandbox import Worker  # noqa: E402

SOURCE = FIXTURE_COURSE / "solutions" / "tiny" / "tiny.ipynb"
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")
REFERENCE = submission(SOURCE, reference=True)
WRONG = submission(SOURCE, solutions=WRONG_TINY)


@pytest.fixture
def course(tmp_path):
    shutil.copytree(FIXTURE_COURSE, tmp_path / "course")
    return tmp_path / "course"


def rows(out: Path) -> dict[str, dict]:
    return {r["student_id"]: r for r in csv.DictReader(open(out / "grades.csv"))}


# --------------------------------------------------------------------------- inputs
def test_discovers_every_accepted_layout(tmp_path):
    (tmp_path / "nbgrader" / "ann" / "tiny").mkdir(parents=True)
    (tmp_path / "nbgrader" / "ann" / "tiny" / "tiny.ipynb").write_bytes(b"ann")
    (tmp_path / "nbgrader" / "bob" / "tiny").mkdir(parents=True)
    (tmp_path / "nbgrader" / "bob" / "tiny" / "tiny.ipynb").write_bytes(b"bob")
    (tmp_path / "flat" / "cy").mkdir(parents=True)
    (tmp_path / "flat" / "cy" / "my work.ipynb").write_bytes(b"cy")
    (tmp_path / "flat" / "dee").mkdir()  # a student folder without a notebook still gets a row
    (tmp_path / "eve.ipynb").write_bytes(b"eve")
    with zipfile.ZipFile(tmp_path / "lms.zip", "w") as z:
        z.writestr("fay_12345_67890_tiny.ipynb", b"fay")  # Canvas
        z.writestr("Gus Ho_555_assignsubmission_file_/tiny.ipynb", b"gus")  # Moodle
        z.writestr("__MACOSX/._junk.ipynb", b"junk")
    subs = discover([tmp_path / "nbgrader", tmp_path / "flat", tmp_path / "eve.ipynb", tmp_path / "lms.zip"], "tiny")
    got = {s.student_id: (s.data, s.problem) for s in subs}
    assert got == {"ann": (b"ann", None), "bob": (b"bob", None), "cy": (b"cy", None),
                   "dee": (b"", got["dee"][1]), "eve": (b"eve", None), "fay_12345": (b"fay", None),
                   "Gus_Ho_555": (b"gus", None)}
    assert "no notebook" in got["dee"][1]


def test_repeated_student_ids_are_refused_not_renamed_and_the_others_graded(tmp_path, course):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    (tmp_path / "a" / "sam.ipynb").write_bytes(REFERENCE)
    (tmp_path / "b" / "sam.ipynb").write_bytes(WRONG)
    (tmp_path / "b" / "Sam!.ipynb").write_bytes(WRONG)  # the same id once cleaned
    (tmp_path / "b" / "sam-2.ipynb").write_bytes(REFERENCE)
    paths = [str(tmp_path / "a" / "sam.ipynb"), str(tmp_path / "b")]
    subs = {s.student_id: s for s in discover(paths, "tiny")}
    assert set(subs) == {"sam", "sam-2"} and subs["sam"].problem_status == "duplicate-id"
    assert main(["grade", "tiny", *paths, "--out", str(tmp_path / "out"), "--root", str(course), "--no-gradebook"]) == 0
    got = rows(tmp_path / "out")
    assert (got["sam"]["score"], got["sam"]["status"]) == ("0", "duplicate-id")
    assert "a/sam.ipynb" in got["sam"]["message"] and "b/sam.ipynb" in got["sam"]["message"]
    assert got["sam-2"]["score"] == "3"  # nobody else is held back
    kept = sorted(p.read_bytes() for p in (tmp_path / "out" / "students" / "sam" / "submitted").glob("attempt-*"))
    assert kept == sorted([REFERENCE, WRONG, WRONG])  # every colliding submission's bytes are kept


def test_unknown_assignment_and_bad_path_exit_2(course, tmp_path, capsys):
    assert main(["grade", "nope", str(tmp_path), "--root", str(course)]) == 2
    assert "unknown assignment 'nope'" in capsys.readouterr().err
    assert main(["grade", "tiny", str(tmp_path / "missing.txt"), "--root", str(course)]) == 2


def test_hidden_inputs_are_drawn_per_run(course):
    a = load_assignment("tiny", course)
    first = draw(a, seed=1).inputs["scale-hidden-2d"]["args"][0]
    drawn = draw(a)  # a fresh seed
    second = drawn.inputs["scale-hidden-2d"]["args"][0]
    assert first.shape == second.shape and not np.allclose(first, second)
    assert drawn.inputs["scale-visible"]["args"][0].tolist() == [0, 1, 2, 3]  # visible data stays fixed


# --------------------------------------------------------------------------- sandbox refusal
BROKEN = [sys.executable, str(Path(__file__).parent / "fixtures" / "grading" / "broken_worker.py")]


def test_refuses_without_a_sandbox_layer(course, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Worker, "command", BROKEN)
    (tmp_path / "ann.ipynb").write_bytes(REFERENCE)
    code = main(["grade", "tiny", str(tmp_path / "ann.ipynb"), "--out", str(tmp_path / "out"),
                 "--root", str(course)])
    err = capsys.readouterr().err
    assert code == 2
    assert "Refusing to grade" in err and "the namespace layer is missing" in err
    assert not (tmp_path / "out" / "students" / "ann" / "results.json").exists()


def test_allow_unsandboxed_grades_and_says_so_in_every_feedback(course, tmp_path, monkeypatch):
    monkeypatch.setattr(Worker, "command", BROKEN)
    (tmp_path / "ann.ipynb").write_bytes(REFERENCE)
    (tmp_path / "bob.ipynb").write_bytes(WRONG)
    code = main(["grade", "tiny", str(tmp_path / "ann.ipynb"), str(tmp_path / "bob.ipynb"),
                 "--out", str(tmp_path / "out"), "--root", str(course), "--allow-unsandboxed", "--workers", "1"])
    assert code == 0
    assert {k: v["score"] for k, v in rows(tmp_path / "out").items()} == {"ann": "3", "bob": "0"}
    for sid in ("ann", "bob"):
        assert "WITHOUT the sandbox" in (tmp_path / "out" / "students" / sid / "feedback.html").read_text()
        assert json.loads((tmp_path / "out" / "students" / sid / "results.json").read_text())["sandbox"]["enabled"] is False


# --------------------------------------------------------------------------- fairness on the fixture
FAIR = {
    "loops": {"scale": "def scale(x, k):\n    x = np.asarray(x)\n    out = np.empty_like(x)\n"
                       "    for i in np.ndindex(x.shape):\n        out[i] = x[i] * k\n    return out\n",
              "total": "def total(x):\n    s = 0.0\n    for v in np.ravel(x):\n        s += v\n    return s\n"},
    "float32_math": {"scale": "def scale(x, k):\n    x = np.asarray(x)\n    return (x.astype(np.float32) * np.float32(k))"
                              ".astype(x.dtype)\n",
                     "total": "def total(x):\n    return np.sum(x)\n"},  # a numpy scalar, not a float
}


@root_only
def test_correct_variants_get_full_marks_and_resume_after_a_kill(course, tmp_path):
    """Loops, float32 arithmetic, numpy scalars: full marks. Killing the grader loses nothing."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name, sols in FAIR.items():
        (inbox / f"{name}.ipynb").write_bytes(submission(SOURCE, solutions=sols))
    for i in range(4):
        (inbox / f"ref{i}.ipynb").write_bytes(REFERENCE)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "autograder", "grade", "tiny", str(inbox), "--out", str(out),
           "--root", str(course), "--workers", "1"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = out / ".journal"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 2):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(journal.read_text().splitlines())
    assert 2 <= done_before < 6, "the kill came too late to test resuming"

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"({6 - done_before} graded now, {done_before} already done)" in again.stdout
    entries = [json.loads(l)["student_id"] for l in journal.read_text().splitlines()]
    assert sorted(entries) == sorted(r for r in rows(out))  # each graded exactly once
    assert {k: (v["score"], v["status"]) for k, v in rows(out).items()} == \
        {k: ("3", "ok") for k in [*FAIR, "ref0", "ref1", "ref2", "ref3"]}

    forced = subprocess.run(cmd + ["--force"], capture_output=True, text=True, timeout=300)
    assert "(6 graded now, 0 already done)" in forced.stdout
    assert len(journal.read_text().splitlines()) == 12


@root_only
def test_a_changed_submission_is_regraded(course, tmp_path):
    nb = tmp_path / "ann.ipynb"
    nb.write_bytes(WRONG)
    args = ["grade", "tiny", str(nb), "--out", str(tmp_path / "out"), "--root", str(course), "--workers", "1"]
    assert main(args) == 0 and rows(tmp_path / "out")["ann"]["score"] == "0"
    nb.write_bytes(REFERENCE)
    assert main(args) == 0 and rows(tmp_path / "out")["ann"]["score"] == "3"
    kept = tmp_path / "out" / "students" / "ann" / "submitted" / "ann.ipynb"
    assert kept.read_bytes() == REFERENCE
    # the earlier, different submission's result is kept, not overwritten
    earlier = list((tmp_path / "out" / "students" / "ann" / "attempts").glob("*/results.json"))
    assert [json.loads(p.read_text())["score"] for p in earlier] == [0.0]


def test_progress_bar_only_on_a_terminal():
    from autograder.__main__ import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, plain = Tty(), io.StringIO()
    for stream in (tty, plain):
        bar = Progress(2, stream)
        bar({"student_id": "ann"}), bar({"student_id": "bob"}), bar.close()
    assert "2/2" in tty.getvalue() and "#" * 30 in tty.getvalue()
    assert plain.getvalue() == ""


# --------------------------------------------------------------------------- the API
@root_only
def test_the_api_function_stays_callable_call_after_call(course, tmp_path):
    import autograder
    (tmp_path / "ann.ipynb").write_bytes(REFERENCE)
    for n in range(2):  # importing the API's own modules never replaces the public name
        summary = autograder.grade("tiny", [tmp_path / "ann.ipynb"], out=tmp_path / f"out{n}", root=course,
                                   workers=1, gradebook=False)
        assert [(r["student_id"], float(r["score"])) for r in summary.rows] == [("ann", 3.0)]


class FailsOnce:
    """The local engine, except that `student`'s first task comes back as the engine's own error."""

    def __init__(self, student: str):
        from autograder.engine import Local
        self.local, self.student, self.failed = Local(1), student, False

    def __getattr__(self, name):
        return getattr(self.local, name)

    def run(self, calls, tasks):
        for task, transcript in self.local.run(calls, tasks):
            if f"/{self.student}/" in task.key and not self.failed:
                self.failed, transcript = True, ConnectionError("worker lost")
            yield task, transcript


@root_only
def test_an_engine_failure_is_regraded_by_a_rerun_not_kept(course, tmp_path):
    import autograder
    (tmp_path / "ann.ipynb").write_bytes(REFERENCE)
    (tmp_path / "bob.ipynb").write_bytes(REFERENCE)
    engine, paths = FailsOnce("bob"), [tmp_path / "ann.ipynb", tmp_path / "bob.ipynb"]
    first = autograder.grade("tiny", paths, out=tmp_path / "out", root=course, engine=engine, gradebook=False)
    assert {r["student_id"]: r["status"] for r in first.rows} == {"ann": "ok", "bob": "grader-error"}
    again = autograder.grade("tiny", paths, out=tmp_path / "out", root=course, engine=engine, gradebook=False)
    assert again.already_done == 1 and [r.student_id for r in again.results] == ["bob"]
    assert {r["student_id"]: (r["status"], float(r["score"])) for r in again.rows} == \
        {"ann": ("ok", 3.0), "bob": ("ok", 3.0)}
    journal = [json.loads(line)["student_id"] for line in (tmp_path / "out" / ".journal").read_text().splitlines()]
    assert sorted(journal) == ["ann", "bob"]  # each once: the failure was never journaled


@root_only
def test_a_failed_later_version_does_not_leave_the_earlier_one_done(course, tmp_path):
    """ann's X is graded; her Y then fails in the engine; she hands in X again: X is graded again,
    not skipped as done while the records hold Y's failure."""
    import autograder
    x, y = tmp_path / "x" / "ann.ipynb", tmp_path / "y" / "ann.ipynb"
    x.parent.mkdir(), y.parent.mkdir()
    x.write_bytes(REFERENCE), y.write_bytes(WRONG)
    out = tmp_path / "out"
    assert autograder.grade("tiny", [x], out=out, root=course, gradebook=False).rows[0]["status"] == "ok"
    failed = autograder.grade("tiny", [y], out=out, root=course, engine=FailsOnce("ann"), gradebook=False)
    assert failed.rows[0]["status"] == "grader-error"
    again = autograder.grade("tiny", [x], out=out, root=course, gradebook=False)
    assert again.already_done == 0
    assert (again.rows[0]["status"], float(again.rows[0]["score"]), again.rows[0]["sha256"]) == \
        ("ok", 3.0, hashlib.sha256(REFERENCE).hexdigest())


@root_only
def test_a_run_with_the_gradebook_records_what_a_run_without_it_graded(course, tmp_path):
    """Graded with --no-gradebook, then with the gradebook: the second run grades again, so the
    gradebook and autograded/ hold the student (not skipped as done)."""
    import autograder
    (tmp_path / "ann.ipynb").write_bytes(REFERENCE)
    out = tmp_path / "out"
    autograder.grade("tiny", [tmp_path / "ann.ipynb"], out=out, root=course, gradebook=False)
    again = autograder.grade("tiny", [tmp_path / "ann.ipynb"], out=out, root=course)
    assert again.already_done == 0 and (course / "autograded" / "ann" / "tiny" / "tiny.ipynb").is_file()
    third = autograder.grade("tiny", [tmp_path / "ann.ipynb"], out=out, root=course)
    assert third.already_done == 1


def test_the_api_refuses_two_submission_values_of_one_student(course, tmp_path):
    import autograder
    (tmp_path / "sam.ipynb").write_bytes(REFERENCE)
    subs = discover([str(tmp_path / "sam.ipynb")], "tiny") * 2
    with pytest.raises(autograder.GradingError, match="more than one submission for sam"):
        autograder.grade("tiny", subs, out=tmp_path / "out", root=course, gradebook=False)
    assert not (tmp_path / "out").exists()


def test_the_same_file_reached_twice_is_one_submission(course, tmp_path):
    """A file given on its own and inside its folder is one student, not a collision."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "sam.ipynb").write_bytes(REFERENCE)
    paths = [str(tmp_path / "in" / "sam.ipynb"), str(tmp_path / "in"), str(tmp_path / "in" / "sam.ipynb")]
    [sub] = discover(paths, "tiny")
    assert sub.problem is None and sub.data == REFERENCE


def test_a_collision_never_writes_placeholder_bytes_over_a_kept_submission(course, tmp_path):
    """sam was graded; a later run finds two different sam notebooks: both are kept as attempts and
    the submission kept before is not replaced by empty bytes."""
    from autograder import records
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    (tmp_path / "a" / "sam.ipynb").write_bytes(REFERENCE)
    (tmp_path / "b" / "sam.ipynb").write_bytes(WRONG)
    out = tmp_path / "out"
    [first] = discover([str(tmp_path / "a")], "tiny")
    records.keep_submitted(out, first)
    [clash] = discover([str(tmp_path / "a"), str(tmp_path / "b")], "tiny")
    assert clash.problem_status == "duplicate-id"
    records.keep_submitted(out, clash)
    kept = out / "students" / "sam" / "submitted"
    assert (kept / "sam.ipynb").read_bytes() == REFERENCE
    assert sorted(p.read_bytes() for p in kept.glob("attempt-*")) == sorted([REFERENCE, WRONG])


class Watching:
    """The local engine, noting the reply bytes of each transcript that reaches the trusted process."""

    def __init__(self):
        from autograder.engine import Local
        self.local, self.sizes = Local(1), []

    def __getattr__(self, name):
        return getattr(self.local, name)

    def run(self, calls, tasks):
        for task, transcript in self.local.run(calls, tasks):
            self.sizes.append(sum(len(e[-1]) for e in transcript["events"] if e[0] in ("executed", "reply")))
            yield task, transcript


@root_only
def test_replies_together_stay_within_the_transcript_budget(course, tmp_path):
    import autograder
    from autograder.sandbox import Limits
    big = "import numpy as np\n\ndef {}(*args):\n    return np.zeros(150_000)\n"  # ~1.6 MB a value, ~3.2 MB a reply
    (tmp_path / "hog.ipynb").write_bytes(submission(SOURCE, solutions={f: big.format(f) for f in ("scale", "total")}))
    limits, engine = Limits(max_transcript=6 << 20), Watching()
    summary = autograder.grade("tiny", [tmp_path / "hog.ipynb"], out=tmp_path / "out", root=course, engine=engine,
                               limits=limits, gradebook=False)
    [row] = summary.rows
    assert (row["status"], float(row["score"])) == ("output-limit", 0.0)
    assert f"more than {6 << 20} bytes of replies in all" in row["message"]
    assert len(engine.sizes) == 1 and 3 << 20 < engine.sizes[0] <= 6 << 20  # the first reply kept, no more


def test_score_checks_the_transcript_budget_again(course, tmp_path):
    """Whoever read the replies (a worker of a cluster), the trusted process holds them to the budget."""
    from autograder.channel import encode
    from autograder.sandbox import Limits
    from autograder.scoring import calls, score
    a = load_assignment("tiny", course)
    drawn = draw(a, seed=1)
    (tmp_path / "ann.ipynb").write_bytes(REFERENCE)
    [sub] = discover([tmp_path / "ann.ipynb"], "tiny")
    reply = encode({"output": {"result": np.zeros(100_000), "error": None}})  # ~1.1 MB
    ids = [c for c, *_ in calls(a, drawn)]
    events = [["executed", 0.1, encode({"cell_errors": []})], *(["reply", c, 0.1, reply] for c in ids)]
    result = score(sub, a, drawn, {"events": events, "output": b""}, Limits(max_transcript=len(reply) * 2 + 100))
    assert result.status == "output-limit" and "bytes of replies in all" in result.message
    statuses = {c["case"]: c["status"] for t in result.tests for c in t["cases"]}
    assert [statuses[c] for c in ids[2:]] == ["output-limit"] * (len(ids) - 2)  # the third reply on
    assert [statuses[c] for c in ids[:2]] == ["fail"] * 2  # judged: zeros are not the answer
