"""Grading on a Dask cluster: two worker processes on loopback, each hosting the sandbox.

The same submissions get the same grades as on the local engine, and a worker killed mid-run loses
nothing: its task runs again elsewhere (or on the worker that replaces it, the run's calls made anew)
and every submission is recorded exactly once. Needs root.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grading"))
from submissions import FIXTURE_COURSE, WRONG_TINY, released, submission  # noqa: E402

from autograder.__main__ import main  # noqa: E402

distributed = pytest.importorskip("distributed")
ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ["optimizers", "classification", "backprop"]
pytestmark = [pytest.mark.dask, pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, resources={"sandbox": 1},
                                  dashboard_address=":0", host="127.0.0.1") as c:
        yield c


def rows(out: Path) -> dict[str, dict]:
    return {r["student_id"]: r for r in csv.DictReader(open(out / "grades.csv"))}


def graded_tests(out: Path, sid: str) -> list:
    result = json.loads((out / "students" / sid / "results.json").read_text())
    return [(t["grade_id"], t["points"], [(c["case"], c["status"]) for c in t["cases"]]) for t in result["tests"]]


def wrong(source: Path) -> bytes:
    """The reference with its first function left as the released stub: some points, not all."""
    stubs = released(source)
    first = next(c for c in stubs.cells if c.metadata.get("nbgrader", {}).get("solution")
                 and c.cell_type == "code" and "NotImplementedError" in c.source)
    return submission(source, reference=True, solutions={first.metadata.nbgrader.grade_id: first.source})


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_the_cluster_grades_as_the_local_engine(a, cluster, tmp_path):
    source = ROOT / "solutions" / a / f"{a}.ipynb"
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "reference.ipynb").write_bytes(source.read_bytes())
    (inbox / "blank.ipynb").write_bytes(submission(source))
    (inbox / "wrong.ipynb").write_bytes(wrong(source))
    common = ["grade", a, str(inbox), "--root", str(ROOT), "--no-gradebook", "--seed", "7"]
    assert main(common + ["--out", str(tmp_path / "local"), "--workers", "2"]) == 0
    assert main(common + ["--out", str(tmp_path / "dask"), "--engine", cluster.scheduler_address]) == 0
    local, dask = rows(tmp_path / "local"), rows(tmp_path / "dask")
    top = float(local["reference"]["max_score"])
    assert float(local["reference"]["score"]) == top > 0 and float(local["blank"]["score"]) == 0.0
    assert 0 < float(local["wrong"]["score"]) < top
    for sid in ("reference", "blank", "wrong"):
        assert {k: dask[sid][k] for k in ("score", "status", "message", "sha256")} == \
               {k: local[sid][k] for k in ("score", "status", "message", "sha256")}
        assert graded_tests(tmp_path / "dask", sid) == graded_tests(tmp_path / "local", sid)
    sandbox = json.loads((tmp_path / "dask" / "students" / "reference" / "results.json").read_text())["sandbox"]
    assert sandbox["enabled"] is True and sandbox["layers"]


def test_a_grader_kept_open_on_the_cluster_grades_each_call_with_its_own_draw(cluster, tmp_path):
    """The submission service keeps one engine open (api.Grader) and calls it again and again: each
    call's hidden inputs are its own, so a right notebook keeps full marks and a wrong one none."""
    from autograder.api import Grader
    from autograder.course import load_assignment
    from autograder.submissions import Submission
    source = FIXTURE_COURSE / "solutions" / "tiny" / "tiny.ipynb"
    right, wrong_ = submission(source, reference=True), submission(source, solutions=WRONG_TINY)
    with Grader(load_assignment("tiny", FIXTURE_COURSE), log_dir=tmp_path, engine=cluster.scheduler_address) as g:
        for _ in range(3):
            got = {sub.student_id: (r.score, r.status) for sub, r, _ in
                   g.results([Submission("ann", "tiny.ipynb", right, "t"), Submission("bob", "tiny.ipynb", wrong_, "t")])}
            assert got == {"ann": (3.0, "ok"), "bob": (0.0, "ok")}


SLOW = "import time\ntime.sleep(3)"  # long enough to be killed in the middle of it


def test_a_worker_killed_mid_run_loses_nothing_and_records_nothing_twice(tmp_path):
    from autograder.api import grade
    source = FIXTURE_COURSE / "solutions" / "tiny" / "tiny.ipynb"
    inbox = tmp_path / "in"
    inbox.mkdir()
    expected = {}
    for i in range(3):
        (inbox / f"ref{i}.ipynb").write_bytes(submission(source, reference=True, before=[SLOW]))
        (inbox / f"wrong{i}.ipynb").write_bytes(submission(source, solutions=WRONG_TINY, before=[SLOW]))
        expected |= {f"ref{i}": 3.0, f"wrong{i}": 0.0}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, resources={"sandbox": 1},
                                  dashboard_address=":0", host="127.0.0.1") as cl, distributed.Client(cl) as client:
        pids = client.run(os.getpid)
        killed = {}

        def kill_one_busy_worker():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                busy = {w: keys for w, keys in client.processing().items() if keys and w in pids}
                if busy:
                    time.sleep(1.0)  # inside its submission, not before it
                    worker, keys = next(iter(busy.items()))
                    killed.update(worker=worker, keys=list(keys))
                    os.kill(pids[worker], signal.SIGKILL)
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_one_busy_worker)
        killer.start()
        summary = grade("tiny", [inbox], out=tmp_path / "out", engine=client, root=FIXTURE_COURSE,
                        gradebook=False)
        killer.join()
    assert killed["keys"], "no worker was busy to be killed"
    assert len(summary.results) == 6
    assert {r.student_id: r.score for r in summary.results} == expected
    assert all(r.status == "ok" for r in summary.results)
    got = rows(tmp_path / "out")
    assert {s: float(r["score"]) for s, r in got.items()} == expected
    journal = [json.loads(line) for line in (tmp_path / "out" / ".journal").read_text().splitlines()]
    assert sorted(e["student_id"] for e in journal) == sorted(expected)  # each once
    assert all(e["key"] == f"tiny/{e['student_id']}/{e['sha256']}" for e in journal)
    lines = (tmp_path / "out" / "grades.csv").read_text().splitlines()
    assert len(lines) == 1 + len(expected)


def test_a_lost_only_worker_is_replaced_and_every_submission_graded_once(tmp_path):
    """The only worker (with the run's calls) dies mid-task; its nanny starts a fresh one, which
    makes the calls again and grades everything, each submission once."""
    from autograder.api import grade
    source = FIXTURE_COURSE / "solutions" / "tiny" / "tiny.ipynb"
    inbox = tmp_path / "in"
    inbox.mkdir()
    expected = {}
    for i in range(2):
        (inbox / f"ref{i}.ipynb").write_bytes(submission(source, reference=True, before=[SLOW]))
        (inbox / f"wrong{i}.ipynb").write_bytes(submission(source, solutions=WRONG_TINY, before=[SLOW]))
        expected |= {f"ref{i}": 3.0, f"wrong{i}": 0.0}
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, resources={"sandbox": 1},
                                  dashboard_address=":0", host="127.0.0.1") as cl, distributed.Client(cl) as client:
        pids, killed = client.run(os.getpid), []

        def kill_the_worker():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if any(client.processing().values()):
                    time.sleep(1.0)  # inside a submission
                    killed.extend(pids.values())
                    os.kill(next(iter(pids.values())), signal.SIGKILL)
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_the_worker)
        killer.start()
        summary = grade("tiny", [inbox], out=tmp_path / "out", engine=client, root=FIXTURE_COURSE, gradebook=False)
        killer.join()
    assert killed, "the worker was never busy"
    assert sorted((r.student_id, r.score, r.status) for r in summary.results) == \
        sorted((s, v, "ok") for s, v in expected.items())
    journal = [json.loads(line)["student_id"] for line in (tmp_path / "out" / ".journal").read_text().splitlines()]
    assert sorted(journal) == sorted(expected)  # each once


def _zygotes_of(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = int(next(l for l in status.read_text().splitlines() if l.startswith("PPid:")).split()[1])
            cmd = (status.parent / "cmdline").read_bytes()
        except (OSError, StopIteration, ValueError):
            continue
        if ppid == pid and b"autograder.zygote" in cmd:
            found.append(int(status.parent.name))
    return found


def test_kill_9_of_the_grader_ends_its_sandboxes_on_the_cluster(tmp_path):
    source = FIXTURE_COURSE / "solutions" / "tiny" / "tiny.ipynb"
    inbox = tmp_path / "in"
    inbox.mkdir()
    for i in range(3):
        (inbox / f"ref{i}.ipynb").write_bytes(submission(source, reference=True, before=[SLOW]))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, resources={"sandbox": 1},
                                  dashboard_address=":0", host="127.0.0.1") as cl, distributed.Client(cl) as client:
        [worker_pid] = client.run(os.getpid).values()
        grader = subprocess.Popen([sys.executable, "-m", "autograder", "grade", "tiny", str(inbox), "--out",
                                   str(tmp_path / "out"), "--root", str(FIXTURE_COURSE), "--no-gradebook",
                                   "--engine", cl.scheduler_address], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(client.processing().values()):
            time.sleep(0.05)
        assert _zygotes_of(worker_pid), "the run never started its sandbox"
        grader.kill()  # SIGKILL: nothing of the grader's clean-up runs
        grader.wait()
        plugins = lambda dask_worker: sorted(n for n in dask_worker.plugins if n.startswith("autograder"))  # noqa: E731
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (any(client.run(plugins).values()) or _zygotes_of(worker_pid)):
            time.sleep(0.2)
        assert not any(client.run(plugins).values()) and _zygotes_of(worker_pid) == []
        assert not [n for n in cl.scheduler.worker_plugins if n.startswith("autograder")]  # none for new workers


BROKEN = [sys.executable, str(Path(__file__).parent / "fixtures" / "grading" / "broken_worker.py")]


def _grading_inbox(tmp_path: Path) -> Path:
    source = FIXTURE_COURSE / "solutions" / "tiny" / "tiny.ipynb"
    inbox = tmp_path / "in"
    inbox.mkdir()
    for i in range(4):
        (inbox / f"ref{i}.ipynb").write_bytes(submission(source, reference=True))
    return inbox


def test_a_worker_without_a_sandbox_refuses_and_the_others_grade(tmp_path, monkeypatch):
    from autograder.api import grade
    from autograder.sandbox import Worker
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, resources={"sandbox": 1},
                                  dashboard_address=":0") as cl, distributed.Client(cl) as client:
        refusing = next(iter(cl.workers.values()))
        launch = Worker.launch

        def broken_on_one(self):  # that worker's host lacks a layer: its zygote refuses
            if str(self.log).startswith(refusing.local_directory):
                self.command = BROKEN
            launch(self)
        monkeypatch.setattr(Worker, "launch", broken_on_one)
        warnings = []
        summary = grade("tiny", [_grading_inbox(tmp_path)], out=tmp_path / "out", engine=client,
                        root=FIXTURE_COURSE, gradebook=False, warn=warnings.append)
    assert sorted((r.student_id, r.score, r.status) for r in summary.results) == \
           [(f"ref{i}", 3.0, "ok") for i in range(4)]
    [said] = warnings
    assert refusing.address in said and "Refusing to grade" in said and "the namespace layer is missing" in said


def test_no_worker_with_a_sandbox_refuses_as_the_cli_does(tmp_path, monkeypatch, capsys):
    from autograder.sandbox import Worker
    monkeypatch.setattr(Worker, "command", BROKEN)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, resources={"sandbox": 1},
                                  dashboard_address=":0") as cl:
        code = main(["grade", "tiny", str(_grading_inbox(tmp_path)), "--out", str(tmp_path / "out"),
                     "--root", str(FIXTURE_COURSE), "--no-gradebook", "--engine", cl.scheduler_address])
    err = capsys.readouterr().err
    assert code == 2 and "Refusing to grade" in err and "the namespace layer is missing" in err
    assert not list((tmp_path / "out").glob("students/*/results.json"))


def test_an_unreachable_scheduler_is_a_clear_refusal_not_a_traceback(tmp_path, monkeypatch, capsys):
    from autograder import cluster
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "2s")
    code = main(["grade", "tiny", str(_grading_inbox(tmp_path)), "--out", str(tmp_path / "out"),
                 "--root", str(FIXTURE_COURSE), "--no-gradebook", "--engine", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and "tcp://127.0.0.1:9 could not start this run" in err and "Traceback" not in err
    assert not list((tmp_path / "out").glob("students/*/results.json"))


def test_a_refusal_ends_with_its_run_and_a_later_run_uses_the_worker_again(tmp_path, monkeypatch):
    from autograder.api import grade
    from autograder.sandbox import Worker
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, resources={"sandbox": 1},
                                  dashboard_address=":0") as cl, distributed.Client(cl) as client:
        refusing = next(iter(cl.workers.values()))
        launch, broken, launched_there = Worker.launch, [True], []

        def broken_once(self):  # a transient failure: only the first run's zygote on that worker refuses
            if str(self.log).startswith(refusing.local_directory):
                launched_there.append(broken[0])
                if broken[0]:
                    self.command = BROKEN
            launch(self)
        monkeypatch.setattr(Worker, "launch", broken_once)
        warnings = []
        first = grade("tiny", [_grading_inbox(tmp_path)], out=tmp_path / "out1", engine=client,
                      root=FIXTURE_COURSE, gradebook=False, warn=warnings.append)
        assert len(warnings) == 1 and refusing.address in warnings[0] and len(first.results) == 4
        assert [dict(w.resources) for w in cl.scheduler.workers.values()] == [{"sandbox": 1}] * 2  # given back
        broken[0], warnings = False, []
        (tmp_path / "again").mkdir()
        second = grade("tiny", [_grading_inbox(tmp_path / "again")], out=tmp_path / "out2", engine=client,
                       root=FIXTURE_COURSE, gradebook=False, warn=warnings.append)
    assert warnings == [] and sorted((r.score, r.status) for r in second.results) == [(3.0, "ok")] * 4
    assert launched_there == [True, False]  # the second run built its sandbox on that worker again
