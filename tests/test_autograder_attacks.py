"""Attacks on the fixture assignment `tiny`, each a real submission notebook with a WRONG implementation: any point is a failure.

All submissions are graded in one run of ``python -m autograder grade`` (2 workers, as the CI
machine has 2 cores) together with an honest reference submission, which must still score full
marks: one submission never affects another. Needs root (namespaces, uid switch); elsewhere the
grader refuses, which tests/test_autograder_sandbox.py checks.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grading"))
from submissions import FIXTURE_COURSE, WRONG_TINY, submission  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")
SECRET = "SECRET-MARKER-4711"


class Listener:
    """A TCP server on loopback that records every connection."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.sendall(b"2.0\n")
            conn.close()

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


def wrong(**override):
    return {**WRONG_TINY, **override}


def attacks(course: Path, inbox: Path, out: Path, port: int, outside: Path) -> dict[str, bytes]:
    """student id -> submission bytes."""
    src = course / "solutions" / "tiny" / "tiny.ipynb"
    sub = lambda **kw: submission(src, **kw)  # noqa: E731
    ref = str(course / "solutions" / "tiny" / "reference.py")

    def drop_tests(nb):
        nb.cells = [c for c in nb.cells if not c.metadata.get("nbgrader", {}).get("grade")]

    def edit_tests(nb):
        for c in nb.cells:
            meta = c.metadata.get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution"):
                c.source, meta["points"] = "pass", 100

    def duplicate_and_split(nb):
        tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
        for c in tests:
            half = nbformat.v4.new_code_cell("check('scale-visible')", metadata=dict(c.metadata))
            nb.cells += [c, half, c]

    other_nb = inbox / "honest.ipynb"
    return {
        # a slow demo after the last test cell is not run: it cannot change an autograded score
        "honest": sub(reference=True, before=[f"# {SECRET}"], edit=lambda nb: nb.cells.append(
            nbformat.v4.new_code_cell("import time\ntime.sleep(1000)"))),
        "wrong": sub(solutions=wrong()),
        "patch_numpy": sub(solutions=wrong(), before=[
            "import numpy, numpy.testing\nnumpy.allclose = lambda *a, **k: True\n"
            "numpy.testing.assert_allclose = lambda *a, **k: None\nnumpy.array_equal = lambda *a, **k: True\n"
            "numpy.isclose = lambda *a, **k: numpy.array(True)"]),
        "patch_builtins": sub(solutions=wrong(), before=[
            "import builtins\nbuiltins.abs = lambda x: 0\nbuiltins.isinstance = lambda *a: True\n"
            "builtins.len = lambda x: 0\nbuiltins.AssertionError = type('Nope', (Exception,), {})"]),
        "redefine_helpers": sub(solutions=wrong(), before=[
            "import autograder.check, autograder.case, autograder.drivers\n"
            "def check(*a, **k): print('passed')\n"
            "autograder.check.check = check\nautograder.check.run_case = lambda *a, **k: None\n"
            "autograder.case.Close.__call__ = lambda *a, **k: None\n"
            "autograder.drivers.call = lambda ns, fn, args=(), kwargs=None: {'result': None, 'error': None}"]),
        "ipython_hooks": sub(solutions=wrong(), before=[
            "ip = get_ipython()\nip.input_transformers_post.append(lambda lines: [])\n"
            "ip.showtraceback = lambda *a, **k: None"]),
        "always_equal": sub(solutions=wrong(
            scale="class Yes(float):\n    def __eq__(self, o): return True\n    __ne__ = lambda s, o: False\n"
                  "    def __array__(self, *a, **k): return np.array(0.0)\n"
                  "def scale(x, k):\n    return Yes(0.0)\n",
            total="class Always(np.ndarray):\n    def __eq__(self, o): return np.ones(np.shape(o), bool)\n"
                  "    def __array_ufunc__(self, *a, **k): return np.zeros(())\n"
                  "def total(x):\n    return np.zeros(()).view(Always)\n")),
        "edited_tests": sub(solutions=wrong(), edit=edit_tests),
        "deleted_tests": sub(solutions=wrong(), edit=drop_tests),
        "duplicated_tests": sub(solutions=wrong(), edit=duplicate_and_split),
        "os_exit": sub(solutions=wrong(), before=["import os\nos._exit(0)"]),
        "sys_exit": sub(solutions=wrong(), before=["import sys\nsys.exit(0)", "raise SystemExit(0)"]),
        "sigkill_self": sub(solutions=wrong(), before=["import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"]),
        "exit_in_call": sub(solutions={"scale": "def scale(x, k):\n    return np.asarray(x) * k\n",
                                       "total": "def total(x):\n    import os\n    os._exit(3)\n"}),
        "infinite_call": sub(solutions=wrong(total="def total(x):\n    while True:\n        pass\n")),
        "infinite_cell": sub(solutions=wrong(), before=["while True:\n    pass"]),
        "fork_bomb": sub(solutions=wrong(), before=[
            "import os\nfor _ in range(10_000):\n    try:\n        os.fork()\n    except OSError:\n        pass"]),
        "huge_alloc": sub(solutions=wrong(scale="def scale(x, k):\n    return np.ones(50 * 2**30 // 8) * k\n")),
        "huge_output": sub(solutions=wrong(), before=["print('x' * 50_000_000)"]),
        "thief": sub(solutions=wrong(), before=[
            f"import glob, sqlite3\nstolen = []\n"
            f"for path in [{ref!r}, {str(other_nb)!r}, {str(out / 'students' / 'honest' / 'results.json')!r},"
            f" {str(course / 'gradebook.db')!r}, {str(course / 'solutions' / 'tiny' / 'cases.py')!r}]:\n"
            f"    try:\n        stolen.append(open(path).read())\n    except Exception as e:\n"
            f"        print('DENIED', path, type(e).__name__)\n"
            f"print(stolen)\nprint(glob.glob({str(inbox)!r} + '/*'), glob.glob({str(course)!r} + '/*'))\n"
            f"try:\n    exec(open({ref!r}).read(), globals())\nexcept Exception as e:\n    print('DENIED', e)\n"
            f"try:\n    db = sqlite3.connect({str(course / 'gradebook.db')!r})\n"
            f"    db.execute('UPDATE grade SET auto_score = 99, manual_score = 99'); db.commit()\n"
            f"except Exception as e:\n    print('DENIED sqlite', e)"]),
        "writer": sub(solutions=wrong(), before=[
            f"for path in [{str(outside)!r}, {str(out / 'students' / 'honest' / 'results.json')!r},"
            f" {str(course / 'solutions' / 'tiny' / 'cases.py')!r}, '/etc/escape.txt']:\n"
            f"    try:\n        open(path, 'w').write('PWNED')\n    except Exception as e:\n"
            f"        print('DENIED', path, type(e).__name__)"]),
        "network": sub(solutions=wrong(total=f"def total(x):\n    import socket\n"
                                             f"    s = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
                                             f"    return float(s.recv(10))\n"),
                       before=[f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)"
                               f"\nexcept OSError as e:\n    print('DENIED network', e)"]),
        "forbidden_static": sub(solutions=wrong(scale="import torch\ndef scale(x, k):\n"
                                                      "    return torch.as_tensor(x) * k\n")),
        "forbidden_dynamic": sub(solutions=wrong(scale="def scale(x, k):\n"
                                                       "    t = __import__('to' + 'rch')\n"
                                                       "    return t.as_tensor(x).numpy() * k\n")),
        "forged_frame": sub(solutions=wrong(total=(
            "def total(x):\n    import os, socket, struct, pickle\n"
            "    for fd in range(3, 64):\n        try:\n"
            "            s = socket.socket(fileno=os.dup(fd))\n"
            "            data = pickle.dumps({'output': {'result': 1.0}})\n"
            "            s.sendall(struct.pack('>I', len(data)) + data)\n"
            "        except OSError:\n            pass\n    import time; time.sleep(5)\n"))),
        "huge_reply": sub(solutions=wrong(total="def total(x):\n    return 'x' * 70_000_000\n")),
        "whoami": sub(solutions=wrong(), before=["import os\nprint('UID', os.getuid(), os.getgid(), os.getgroups())"]),
        "corrupt": b"\x00\x01 this is not json",
        "not_a_notebook": b'{"hello": "world"}',
        "wrong_assignment": nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
            "def scale(x, k):\n    return x * k\ndef total(x):\n    return float(x.sum())",
            metadata={"nbgrader": {"grade_id": "other_assignment_cell", "solution": True, "grade": False,
                                   "locked": False, "schema_version": 3}})])).encode(),
    }


def _uid_processes(uids) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            uid = int(next(l for l in status.read_text().splitlines() if l.startswith("Uid:")).split()[1])
        except (OSError, StopIteration, ValueError):
            continue
        if uid in uids:
            found.append(int(status.parent.name))
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attacks")
    course = tmp / "course"
    shutil.copytree(FIXTURE_COURSE, course)
    inbox, out, outside = tmp / "inbox", tmp / "out", tmp / "escape.txt"
    inbox.mkdir()
    listener = Listener()
    try:
        subs = attacks(course, inbox, out, listener.port, outside)
        for sid, data in subs.items():
            (inbox / f"{sid}.ipynb").write_bytes(data)
        cases_before = (course / "solutions" / "tiny" / "cases.py").read_bytes()
        proc = subprocess.run([sys.executable, "-m", "autograder", "grade", "tiny", str(inbox), "--out", str(out),
                               "--workers", "2", "--timeout", "10", "--root", str(course)],
                              capture_output=True, text=True, timeout=600)
    finally:
        listener.close()
    rows = {r["student_id"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    results = {sid: json.loads((out / "students" / sid / "results.json").read_text()) for sid in rows}
    return dict(proc=proc, rows=rows, results=results, subs=subs, out=out, course=course, outside=outside,
                listener=listener, cases_before=cases_before)


def test_run_succeeds_and_records_every_submission(graded):
    assert graded["proc"].returncode == 0, graded["proc"].stderr
    assert set(graded["rows"]) == set(graded["subs"])
    assert "submissions" in graded["proc"].stdout.splitlines()[-1]  # the one-line summary


def test_honest_submission_unaffected_by_the_others(graded):
    row = graded["rows"]["honest"]
    assert (row["score"], row["max_score"], row["status"]) == ("3", "3", "ok")


ZERO = ["wrong", "patch_numpy", "patch_builtins", "redefine_helpers", "ipython_hooks", "always_equal",
        "edited_tests", "deleted_tests", "duplicated_tests", "os_exit", "sys_exit", "sigkill_self",
        "infinite_call", "infinite_cell", "fork_bomb", "huge_alloc", "huge_output", "thief", "writer",
        "network", "forbidden_static", "forbidden_dynamic", "forged_frame", "corrupt", "not_a_notebook",
        "wrong_assignment", "huge_reply", "whoami"]


@pytest.mark.parametrize("student", ZERO)
def test_attack_earns_nothing(graded, student):
    row = graded["rows"][student]
    assert float(row["score"]) == 0.0, graded["results"][student]
    assert row["max_score"] == "3"  # the submission cannot change what the tests are worth


@pytest.mark.parametrize("student,status", [
    ("wrong", "ok"), ("os_exit", "crashed"), ("sigkill_self", "crashed"), ("infinite_call", "timeout"),
    ("infinite_cell", "timeout"), ("huge_alloc", "memory"), ("huge_output", "output-limit"),
    ("forbidden_static", "ok"), ("forbidden_dynamic", "ok"),
    ("corrupt", "invalid-notebook"), ("not_a_notebook", "invalid-notebook"),
    ("wrong_assignment", "wrong-assignment"), ("forged_frame", "invalid-reply"),
    ("huge_reply", "output-limit|timeout"),  # 70 MB takes its process longer to encode than the case's 2 s
])
def test_named_status(graded, student, status):
    assert graded["rows"][student]["status"] in status.split("|"), graded["results"][student]


def test_sys_exit_is_just_a_cell_error(graded):
    r = graded["results"]["sys_exit"]
    assert r["status"] == "ok" and r["tests"][0]["cases"][0]["message"].startswith("Likely mistake: added k")


def test_a_crash_in_one_function_keeps_the_points_of_the_others(graded):
    r = graded["results"]["exit_in_call"]
    assert r["status"] == "crashed" and float(r["score"]) == 2.0
    assert [t["passed"] for t in r["tests"]] == [True, False]


def test_wrong_answer_feedback_names_the_likely_mistake(graded):
    message = graded["results"]["wrong"]["tests"][0]["cases"][0]["message"]
    assert "Likely mistake: added k instead of multiplying" in message


def test_no_file_of_the_course_or_of_others_was_readable(graded):
    output = graded["results"]["thief"]["output"]
    assert SECRET not in output and "def scale" not in output and "CASES" not in output
    assert output.count("DENIED") >= 6, output
    assert "\n[]\n[] []\n" in output, output  # nothing read, both folders look empty


def test_gradebook_holds_the_true_scores(graded):
    db = sqlite3.connect(graded["course"] / "gradebook.db")
    rows = dict(db.execute(
        "SELECT student.id, SUM(grade.auto_score) FROM grade JOIN submitted_notebook ON grade.notebook_id ="
        " submitted_notebook.id JOIN submitted_assignment ON submitted_notebook.assignment_id ="
        " submitted_assignment.id JOIN student ON submitted_assignment.student_id = student.id GROUP BY student.id"))
    assert rows["honest"] == 3 and rows["thief"] == 0
    assert db.execute("SELECT COUNT(*) FROM grade WHERE manual_score IS NOT NULL").fetchone()[0] == 0


def test_nothing_was_written_outside_the_sandbox(graded):
    assert not graded["outside"].exists()
    assert not Path("/etc/escape.txt").exists()
    assert (graded["course"] / "solutions" / "tiny" / "cases.py").read_bytes() == graded["cases_before"]
    assert json.loads((graded["out"] / "students" / "honest" / "results.json").read_text())["score"] == 3


def test_submission_runs_as_an_unprivileged_user(graded):
    from autograder.sandbox import FIRST_UID, UID_COUNT
    line = next(l for l in graded["results"]["whoami"]["output"].splitlines() if l.startswith("UID"))
    uid, gid, groups = line.split(maxsplit=3)[1:]
    assert FIRST_UID <= int(uid) < FIRST_UID + UID_COUNT and gid == uid and groups == "[]"


def test_no_network(graded):
    assert graded["listener"].connections == 0
    assert "DENIED network" in graded["results"]["network"]["output"]


def test_no_process_of_a_submission_survives(graded):
    from autograder.sandbox import FIRST_UID, UID_COUNT
    assert _uid_processes(set(range(FIRST_UID, FIRST_UID + UID_COUNT))) == []


def test_submitted_bytes_kept_as_received(graded):
    for sid, data in graded["subs"].items():
        assert (graded["out"] / "students" / sid / "submitted" / f"{sid}.ipynb").read_bytes() == data


def test_feedback_has_no_hidden_test_source(graded):
    for sid in ("honest", "wrong"):
        page = (graded["out"] / "students" / sid / "feedback.html").read_text()
        assert "check(" not in page and "BEGIN HIDDEN" not in page
        assert "Score:" in page
