"""Students and runs that cannot meet, inputs that cannot lie, and a grader that fails cleanly.

On the small fixture course `tiny` (two functions, 3 points): state left by one submission is gone
for the next; concurrent runs neither see nor kill each other; after `kill -9` of the grader nothing
of it is left; hostile input files (symlinks, LMS exports) are read safely; a locked gradebook or a
student folder full of look-alike modules gives a clear refusal. Needs root (namespaces, cgroups).
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grading"))
from submissions import FIXTURE_COURSE, WRONG_TINY, submission  # noqa: E402

from autograder.submissions import discover  # noqa: E402
from autograder.sandbox import FIRST_UID, UID_COUNT  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")
SOURCE = FIXTURE_COURSE / "solutions" / "tiny" / "tiny.ipynb"
REFERENCE = submission(SOURCE, reference=True)
GRADE = [sys.executable, "-P", "-m", "autograder", "grade", "tiny"]
SHM_KEY = 4711


@pytest.fixture
def course(tmp_path):
    shutil.copytree(FIXTURE_COURSE, tmp_path / "course")
    return tmp_path / "course"


def grade(course, out, *paths, extra=(), **kw):
    return subprocess.run([*GRADE, *map(str, paths), "--out", str(out), "--root", str(course), *extra],
                          capture_output=True, text=True, timeout=300, **kw)


def rows(out):
    return {r["student_id"]: r for r in csv.DictReader(open(out / "grades.csv", encoding="utf-8"))}


def result(out, sid):
    return json.loads((out / "students" / sid / "results.json").read_text(encoding="utf-8"))


def leftovers(grader_pid=None):
    """Processes of the sandbox uids or of zygotes, and cgroups of `grader_pid`'s run."""
    procs = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            uid = int(next(l for l in status.read_text().splitlines() if l.startswith("Uid:")).split()[1])
            cmd = (status.parent / "cmdline").read_bytes()
        except (OSError, StopIteration, ValueError):
            continue
        if FIRST_UID <= uid < FIRST_UID + UID_COUNT or b"autograder.zygote" in cmd:
            procs.append(int(status.parent.name))
    groups = [p for p in Path("/sys/fs/cgroup").glob("*/autograder/*") if p.is_dir()
              and (grader_pid is None or p.name.startswith(f"{grader_pid}-"))]
    return procs, groups


# --------------------------------------------------------------------------- class 5: no state crosses
WRITER = (f"import ctypes, os\nsecret = 'STUDENT-A-SECRET-' + 'x1y2z3'\n"
          f"libc = ctypes.CDLL(None, use_errno=True)\n"
          f"print('SHMGET', libc.shmget({SHM_KEY}, 1 << 30, 0o1666))\n"
          "print('ADDKEY', libc.syscall(248, b'user', b'ag-share', secret.encode(), len(secret), -4))\n"
          "import fcntl\ntry:\n    fcntl.flock(open(os.__file__), fcntl.LOCK_EX); print('FLOCK held')\n"
          "except OSError:\n    print('FLOCK refused')\n"
          "print('INOTIFY', libc.inotify_init())\n"
          "for d in ('/tmp', '/dev/shm'):\n"
          "    try:\n        open(d + '/left-by-a', 'w').write(secret)\n    except OSError as e:\n"
          "        print('NOWRITE', d, e)\n")
READER = (f"import ctypes, gc, os, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n"
          f"print('SHM', 'FOUND' if libc.shmget({SHM_KEY}, 0, 0) >= 0 else 'ABSENT')\n"
          "hits = [o for o in gc.get_objects() if isinstance(o, str) and 'STUDENT-A-SECRET-x1' in o]\n"
          "hits += [k for k in sys.modules if 'secret' in k]\n"
          "print('HEAP', len(hits))\n"
          "print('USERNS', libc.unshare(0x10000000), 'MOUNT', libc.mount(b'none', b'/tmp', b'tmpfs', 0, None))\n"
          "print('KEYCTL', libc.syscall(250, 10, -4, b'user', b'ag-share', 0))\n"
          "print('FILES', sorted(os.listdir('/tmp') + os.listdir('/dev/shm')))\n")


def test_nothing_of_one_submission_reaches_the_next(course, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a_writer.ipynb").write_bytes(submission(SOURCE, reference=True, before=[WRITER]))
    (inbox / "b_reader.ipynb").write_bytes(submission(SOURCE, reference=True, before=[READER]))
    proc = grade(course, tmp_path / "out", inbox, extra=["--workers", "1"])  # same zygote, in this order
    assert proc.returncode == 0, proc.stderr
    writer, reader = result(tmp_path / "out", "a_writer")["output"], result(tmp_path / "out", "b_reader")["output"]
    assert "SHMGET -1" not in writer and "NOWRITE" not in writer, writer  # A did create them
    assert "ADDKEY -1" in writer and "KEYCTL -1" in reader  # kernel keyrings: refused, they outlive namespaces
    assert "FLOCK refused" in writer and "INOTIFY -1" in writer  # no signals through shared inodes
    assert "SHM ABSENT" in reader and "HEAP 0" in reader and "left-by-a" not in reader, reader
    assert "USERNS -1 MOUNT -1" in reader  # no namespace of its own to regain capabilities in
    keys = [line.split()[0] for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]]
    assert str(SHM_KEY) not in keys  # the segment died with A's IPC namespace


# --------------------------------------------------------------------------- class 7: runs cannot meet
KILLER = ("import os, signal, time\n"
          "for _ in range(3):\n    if os.fork() == 0:\n        os.setsid()\n"
          "        for _ in range(200):\n            [os.kill(p, signal.SIGKILL) for p in range(2, 400) if p != os.getpid()]\n"
          "            try:\n                os.kill(-1, signal.SIGKILL)\n            except OSError:\n                pass\n"
          "            time.sleep(0.05)\n        os._exit(0)\n"
          "time.sleep(6)")


def test_concurrent_runs_neither_see_nor_kill_each_other(course, tmp_path):
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir(), good.mkdir()
    for i in range(2):
        (bad / f"killer{i}.ipynb").write_bytes(submission(SOURCE, solutions=WRONG_TINY, before=[KILLER]))
    for i in range(4):
        (good / f"honest{i}.ipynb").write_bytes(submission(SOURCE, reference=True, before=["import time\ntime.sleep(1)"]))
    first = subprocess.Popen([*GRADE, str(bad), "--out", str(tmp_path / "out-bad"), "--root", str(course),
                              "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)  # the killers are running
    second = grade(course, tmp_path / "out-good", good, extra=["--workers", "1"])
    _, first_err = first.communicate(timeout=300)
    assert second.returncode == 0 and first.returncode == 0, (second.stderr, first_err)
    assert {k: (v["score"], v["status"]) for k, v in rows(tmp_path / "out-good").items()} == \
        {f"honest{i}": ("3", "ok") for i in range(4)}
    assert leftovers() == ([], [])


def test_two_api_runs_in_one_process_keep_their_cgroups_apart(course, tmp_path):
    """Runs of one process (API calls in threads, runs on one Dask worker) share its pid: the end of
    one never touches the other's submission, and their cgroups never share a name."""
    import threading

    import autograder
    slow, quick = tmp_path / "slow", tmp_path / "quick"
    slow.mkdir(), quick.mkdir()
    (slow / "sam.ipynb").write_bytes(submission(SOURCE, reference=True, before=["import time\ntime.sleep(6)"]))
    (quick / "quin.ipynb").write_bytes(REFERENCE)
    got = {}

    def run(name, inbox):
        got[name] = autograder.grade("tiny", [inbox], out=tmp_path / f"out-{name}", root=course, workers=1,
                                     gradebook=False)

    first = threading.Thread(target=run, args=("slow", slow))
    first.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not leftovers(os.getpid())[1]:
        time.sleep(0.05)
    mine = leftovers(os.getpid())[1]
    assert mine, "the slow submission never started"
    run("quick", quick)  # starts, grades and cleans up while the slow one still runs
    assert all(p.exists() for p in mine), "the quick run's clean-up removed the slow run's cgroup"
    first.join(120)
    assert [(r["student_id"], r["status"], float(r["score"])) for r in got["slow"].rows] == [("sam", "ok", 3.0)]
    assert [(r["student_id"], r["status"], float(r["score"])) for r in got["quick"].rows] == [("quin", "ok", 3.0)]
    assert leftovers(os.getpid())[1] == []


def test_kill_9_of_the_grader_leaves_nothing_behind(course, tmp_path):
    nb = tmp_path / "sleeper.ipynb"
    nb.write_bytes(submission(SOURCE, reference=True, before=[
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\ntime.sleep(600)"]))
    proc = subprocess.Popen([*GRADE, str(nb), "--out", str(tmp_path / "out"), "--root", str(course)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not leftovers(proc.pid)[1]:
        time.sleep(0.2)
    assert leftovers(proc.pid)[1], "the submission never started"
    zygotes = [pid for pid in leftovers()[0] if b"autograder.zygote" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    for pid in zygotes:  # no input path, output path or setting on any sandboxed command line
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        assert cmdline[-4:-1] == [b"-I", b"-m", b"autograder.zygote"] and cmdline[-1].isdigit(), cmdline
    assert zygotes
    time.sleep(1)
    proc.kill()  # SIGKILL: nothing of the grader runs its clean-up
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and leftovers(proc.pid) != ([], []):
        time.sleep(0.2)
    assert leftovers(proc.pid) == ([], [])


def test_two_runs_on_one_out_folder_are_refused(course, tmp_path):
    nb = tmp_path / "sleeper.ipynb"
    nb.write_bytes(submission(SOURCE, reference=True, before=["import time\ntime.sleep(8)"]))
    first = subprocess.Popen([*GRADE, str(nb), "--out", str(tmp_path / "out"), "--root", str(course)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    second = grade(course, tmp_path / "out", nb)
    first.communicate(timeout=120)
    assert second.returncode == 2 and "another grading run is writing to" in second.stderr
    assert first.returncode == 0
    journal = (tmp_path / "out" / ".journal").read_text().splitlines()
    assert len(journal) == 1  # graded once


# --------------------------------------------------------------------------- class 10: inputs
def test_symlinks_are_never_followed(course, tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "mallory" / "tiny").mkdir(parents=True)
    (inbox / "mallory" / "tiny" / "tiny.ipynb").symlink_to(SOURCE)  # the solution
    (inbox / "eve").symlink_to(course / "solutions")  # a whole folder
    (inbox / "trent").mkdir()
    (inbox / "trent" / "tiny.ipynb").symlink_to("/etc/shadow")
    (inbox / "honest").mkdir()
    (inbox / "honest" / "tiny.ipynb").write_bytes(REFERENCE)
    proc = grade(course, tmp_path / "out", inbox)
    assert proc.returncode == 0, proc.stderr
    got = rows(tmp_path / "out")
    assert set(got) == {"mallory", "trent", "honest"}  # the symlinked folder is not a student
    assert got["honest"]["score"] == "3"
    for sid in ("mallory", "trent"):
        assert (got[sid]["score"], got[sid]["status"]) == ("0", "invalid-notebook")
        assert "symbolic link" in got[sid]["message"]
        kept = tmp_path / "out" / "students" / sid / "submitted" / "tiny.ipynb"
        assert kept.read_bytes() == b""  # nothing of the target was copied
    direct = grade(course, tmp_path / "out2", inbox / "trent" / "tiny.ipynb")
    assert direct.returncode == 2 and "symbolic link" in direct.stderr


def test_lms_identities_keep_numeric_ids_unicode_names_and_attempts(tmp_path):
    with zipfile.ZipFile(tmp_path / "moodle.zip", "w") as z:
        z.writestr("张伟_1201_assignsubmission_file_/tiny.ipynb", b"zhang")
        z.writestr("Ann Lee_1202_assignsubmission_file_/tiny.ipynb", b"ann-1202")
        z.writestr("Ann Lee_1207_assignsubmission_file_/tiny.ipynb", b"ann-1207")  # another Ann Lee
        z.writestr(zipfile.ZipInfo("Ann Lee_1202" + " -" * 60 + "_1305_assignsubmission_file_/tiny.ipynb",
                                   (2030, 1, 1, 0, 0, 0)), b"impostor")  # a name made to look like another
    with zipfile.ZipFile(tmp_path / "canvas.zip", "w") as z:
        z.writestr(zipfile.ZipInfo("bob_3001_9001_tiny.ipynb", (2026, 11, 1, 10, 0, 0)), b"bob-first")
        z.writestr(zipfile.ZipInfo("bob_LATE_3001_9002_tiny.ipynb", (2026, 11, 2, 10, 0, 0)), b"bob-late")
    subs = {s.student_id: s for s in discover([tmp_path / "moodle.zip", tmp_path / "canvas.zip"], "tiny")}
    impostor = next(k for k in subs if k.endswith("_1305"))
    assert set(subs) == {"张伟_1201", "Ann_Lee_1202", "Ann_Lee_1207", "bob_3001", impostor}
    assert subs[impostor].data == b"impostor" and not subs["Ann_Lee_1202"].earlier
    assert subs["Ann_Lee_1202"].data == b"ann-1202" and subs["Ann_Lee_1207"].data == b"ann-1207"
    bob = subs["bob_3001"]
    assert bob.data == b"bob-late" and [e[1] for e in bob.earlier] == [b"bob-first"]
    assert bob.submitted_at == "2026-11-02T10:00:00+00:00" and bob.time_source == "LMS zip entry time"


def test_an_lms_student_keeps_every_attempt(course, tmp_path):
    with zipfile.ZipFile(tmp_path / "canvas.zip", "w") as z:
        z.writestr(zipfile.ZipInfo("李娜_77_1_tiny.ipynb", (2026, 11, 1, 9, 0, 0)), REFERENCE)
        z.writestr(zipfile.ZipInfo("李娜_LATE_77_2_tiny.ipynb", (2026, 11, 3, 9, 0, 0)),
                   submission(SOURCE, solutions=WRONG_TINY))
    proc = grade(course, tmp_path / "out", tmp_path / "canvas.zip")
    assert proc.returncode == 0, proc.stderr
    assert rows(tmp_path / "out")["李娜_77"]["score"] == "0"  # the last submission counts ...
    kept = tmp_path / "out" / "students" / "李娜_77" / "submitted"
    assert (kept / "attempt-1-李娜_77_1_tiny.ipynb").read_bytes() == REFERENCE  # ... and the first is kept
    assert "1 earlier attempts kept" in proc.stdout


# --------------------------------------------------------------------------- class 12: clean refusals
def test_a_locked_gradebook_is_a_clear_refusal(course, tmp_path):
    nb = tmp_path / "ann.ipynb"
    nb.write_bytes(REFERENCE)
    assert grade(course, tmp_path / "warm", nb).returncode == 0  # creates gradebook.db
    db = sqlite3.connect(course / "gradebook.db", timeout=0.1)
    db.execute("BEGIN EXCLUSIVE")
    try:
        proc = grade(course, tmp_path / "out", nb)
    finally:
        db.rollback()
        db.close()
    assert proc.returncode == 2, proc.stderr
    assert "gradebook" in proc.stderr and "Traceback" not in proc.stderr


def test_a_student_folder_cannot_inject_modules_into_the_grader(course, tmp_path):
    folder = tmp_path / "submitted"
    (folder / "autograder").mkdir(parents=True)
    (folder / "autograder" / "__init__.py").write_text(f"open({str(tmp_path / 'PWNED')!r}, 'w')\n")
    (folder / "numpy.py").write_text(f"open({str(tmp_path / 'PWNED')!r}, 'w')\n")
    (folder / "ann.ipynb").write_bytes(REFERENCE)
    script = Path(sys.executable).with_name("autograder")
    proc = subprocess.run([str(script), "grade", "tiny", "ann.ipynb", "--out", str(tmp_path / "out"),
                           "--root", str(course)], cwd=folder, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "PWNED").exists()
    assert rows(tmp_path / "out")["ann"]["score"] == "3"


def test_refuses_without_a_cgroup_naming_the_layer(course, tmp_path):
    nb = tmp_path / "ann.ipynb"
    nb.write_bytes(REFERENCE)
    proc = grade(course, tmp_path / "out", nb, env=dict(os.environ, AUTOGRADER_CGROUP="/nonexistent/cg"))
    assert proc.returncode == 2 and "the cgroup layer is missing" in proc.stderr, proc.stderr


def test_hostile_input_files_are_each_one_students_error(course, tmp_path):
    """Odd dates, a corrupt member, a zip bomb, names too long, a forged timestamp, 3000 cells:
    each is recorded against its student and everyone else is graded."""
    wrong = submission(SOURCE, solutions=WRONG_TINY)
    with zipfile.ZipFile(tmp_path / "moodle.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("Bad Date_1_assignsubmission_file_/tiny.ipynb", (2026, 13, 40, 0, 0, 0)), wrong)
        z.writestr("Good One_2_assignsubmission_file_/tiny.ipynb", REFERENCE)
        z.writestr("Crc Broken_3_assignsubmission_file_/tiny.ipynb", b"A" * 5000)
        for i in range(40):  # 40 x 16 MiB that compress to almost nothing
            z.writestr(f"Bomb Er_4_assignsubmission_file_/try{i:02d}.ipynb", b"\0" * (16 << 20))
    data = bytearray((tmp_path / "moodle.zip").read_bytes())
    at = data.index(b"Crc Broken_3_assignsubmission_file_/tiny.ipynb") + 60  # inside its compressed data
    data[at] ^= 0xFF
    (tmp_path / "moodle.zip").write_bytes(bytes(data))
    folder = tmp_path / "submitted"
    for name, nb, stamp in [("alice", REFERENCE, "2026-11-01 10:00:00.000000 UTC"),
                            ("mallory", REFERENCE, "0001-01-01 00:00:00+05:00")]:
        (folder / name / "tiny").mkdir(parents=True)
        (folder / name / "tiny" / "tiny.ipynb").write_bytes(nb)
        (folder / name / "tiny" / "timestamp.txt").write_text(stamp)
    long_name = tmp_path / ("\U00020000" * 62 + ".ipynb")  # 254 bytes: a legal name, not a legal id
    long_name.write_bytes(REFERENCE)
    many = nbformat_cells(3000)
    (tmp_path / "many.ipynb").write_bytes(many)
    proc = grade(course, tmp_path / "out", tmp_path / "moodle.zip", folder, long_name, tmp_path / "many.ipynb",
                 extra=["--no-gradebook"])
    assert proc.returncode == 0, proc.stderr
    got = rows(tmp_path / "out")
    assert got["Good_One_2"]["score"] == "3" and got["alice"]["score"] == "3"
    assert got["Bad_Date_1"]["status"] == "ok"  # graded; its impossible date is no evidence
    assert result(tmp_path / "out", "Bad_Date_1")["submitted_at"] is None
    assert got["Crc_Broken_3"]["status"] == "invalid-notebook" and "cannot be read" in got["Crc_Broken_3"]["message"]
    assert got["mallory"]["score"] == "3"
    assert result(tmp_path / "out", "mallory")["submitted_at_source"] == "file mtime"  # not the forged year 1
    assert result(tmp_path / "out", "alice")["submitted_at"] == "2026-11-01T10:00:00+00:00"
    long_id = next(k for k in got if k.startswith("\U00020000"))
    assert got[long_id]["score"] == "3" and len(long_id.encode()) <= 96
    assert got["many"]["status"] == "invalid-notebook"
    bomb = tmp_path / "out" / "students" / "Bomb_Er_4" / "submitted"
    assert len(list(bomb.iterdir())) <= 6  # the last attempt and at most five earlier ones


def nbformat_cells(n: int) -> bytes:
    import nbformat
    return nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("x") for _ in range(n)])).encode()
