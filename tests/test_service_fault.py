"""The submission service killed with -9 under load, then restarted on the same course and database.

Twenty students submit three attempts each, right and wrong notebooks, through the API; the service
process is killed while attempts are being graded, and started again. Then: every attempt the client
saw acknowledged (HTTP 202) is in the store, graded once with the score its notebook earns; attempts
the store took but whose answer never arrived are graded too; nothing is left queued or grading;
nbgrader's gradebook holds each student's counting attempt; and once the second service is stopped
normally, no sandbox process of either service is left on the machine.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grading"))
from submissions import FIXTURE_COURSE, WRONG_TINY, submission  # noqa: E402

pytestmark = [pytest.mark.service,
              pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")]

STUDENTS, ATTEMPTS = 20, 3
SOURCE = FIXTURE_COURSE / "solutions" / "tiny" / "tiny.ipynb"
NOTEBOOKS = {"right": submission(SOURCE, reference=True), "wrong": submission(SOURCE, solutions=WRONG_TINY)}
EXPECTED = {hashlib.sha256(NOTEBOOKS["right"]).hexdigest(): 3.0,  # the fixture's 3 points, all or none
            hashlib.sha256(NOTEBOOKS["wrong"]).hexdigest(): 0.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zygotes_of(pids: set[int]) -> list[int]:
    """Processes running autograder.zygote (zygotes and the sandboxed processes they fork) whose
    service is one of `pids`: by their parent, or by AUTOGRADER_PARENT once that parent is gone."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            if b"autograder.zygote" not in cmd:
                continue
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):  # ended meanwhile
            continue
        try:  # unreadable once a process has made itself non-dumpable (the sandboxed ones)
            env = dict(kv.split(b"=", 1) for kv in (proc / "environ").read_bytes().split(b"\0") if b"=" in kv)
        except OSError:
            env = {}
        if ppid in pids or int(env.get(b"AUTOGRADER_PARENT", b"0")) in pids:
            found.append(int(proc.name))
    return found


class Service:
    """`python -m autograder serve` on loopback; every process it started is ended at teardown."""

    def __init__(self, course: Path, log: Path):
        self.course, self.log, self.port = course, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        with open(self.log, "a") as log:
            proc = subprocess.Popen([sys.executable, "-m", "autograder", "serve", "--course", str(self.course),
                                     "--port", str(self.port)], cwd=self.course.parent,
                                    stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            assert proc.poll() is None, f"the service exited: {self.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        pytest.fail(f"the service did not answer within 60 s: {self.log.read_text()[-3000:]}")

    def close(self) -> None:
        pids = {p.pid for p in self.procs}
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for pid in zygotes_of(pids):  # only ours, even when the test failed half-way
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def service(tmp_path):
    course = tmp_path / "course"
    shutil.copytree(FIXTURE_COURSE, course)
    (course / "service.toml").write_text(
        f"[service]\nworkers = 2\n\n[assignments.tiny]\nattempts_total = {ATTEMPTS}\ncounts = \"last\"\n")
    (tmp_path / "roster.csv").write_text("student_id\n" + "".join(f"s{i:02d}\n" for i in range(STUDENTS)))
    subprocess.run([sys.executable, "-m", "autograder", "tokens", str(tmp_path / "roster.csv"), "--course",
                    str(course), "--out", str(tmp_path / "tokens.csv")], cwd=tmp_path, check=True,
                   capture_output=True, timeout=60)
    svc = Service(course, tmp_path / "service.log")
    svc.tokens = {line.split(",")[0]: line.split(",")[2]
                  for line in (tmp_path / "tokens.csv").read_text().split()[1:]}
    yield svc
    svc.close()


def kind(student: int, k: int) -> str:
    return "right" if (student + k) % 2 else "wrong"


def test_kill_9_under_load_loses_nothing_and_grades_once(service):
    first = service.start()
    acked: dict[int, str] = {}  # attempt id -> student, for every 202 the client received
    lock, cut = threading.Lock(), threading.Event()

    def student(i: int) -> None:
        name = f"s{i:02d}"
        headers = {"Authorization": f"token {service.tokens[name]}"}
        with httpx.Client(base_url=service.url, headers=headers, timeout=20) as client:
            for k in range(ATTEMPTS):
                try:
                    r = client.post("/api/submit", params={"assignment": "tiny"}, content=NOTEBOOKS[kind(i, k)])
                    assert r.status_code == 202, r.text
                    with lock:
                        acked[r.json()["id"]] = name
                    client.get(f"/api/attempts/{r.json()['id']}", params={"wait": 30})
                except httpx.HTTPError:  # the service is gone: this student stops here
                    cut.set()
                    return

    db = service.course / "service" / "service.sqlite"

    def mid_grading() -> bool:
        """A few students done (their last attempt graded just now: its gradebook record may still be
        on its way), others being graded right now."""
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            grading = c.execute("SELECT count(*) FROM attempts WHERE state = 'grading'").fetchone()[0]
            done = c.execute("SELECT count(*) FROM (SELECT student FROM attempts WHERE state = 'graded' "
                             "GROUP BY student HAVING count(*) = ?)", (ATTEMPTS,)).fetchone()[0]
        return done >= 3 and grading > 0

    with ThreadPoolExecutor(STUDENTS) as pool:
        futures = [pool.submit(student, i) for i in range(STUDENTS)]
        end = time.monotonic() + 60
        while time.monotonic() < end and not mid_grading():
            time.sleep(0.01)
        zygotes_first = zygotes_of({first.pid})
        first.send_signal(signal.SIGKILL)  # mid-load: attempts queued, being graded, being uploaded
        first.wait(10)
        for f in futures:
            f.result(timeout=60)
    assert zygotes_first, "the first service never started its sandboxes"
    assert cut.is_set(), "the load finished before the kill: nothing was tested"

    second = service.start()
    # the students whose answers were cut off submit the rest of their attempts
    expected_kind: dict[str, str] = {}
    for i in range(STUDENTS):
        name = f"s{i:02d}"
        headers = {"Authorization": f"token {service.tokens[name]}"}
        held = len(httpx.get(f"{service.url}/api/attempts", headers=headers, timeout=20).json())
        for k in range(held, ATTEMPTS):
            r = httpx.post(f"{service.url}/api/submit", params={"assignment": "tiny"},
                           content=NOTEBOOKS[kind(i, k)], headers=headers, timeout=20)
            assert r.status_code == 202, r.text
            acked[r.json()["id"]] = name
        over = httpx.post(f"{service.url}/api/submit", params={"assignment": "tiny"},
                          content=NOTEBOOKS["right"], headers=headers, timeout=20)
        assert over.status_code == 429, "the attempt limit must hold across the restart"

    end = time.monotonic() + 60
    while httpx.get(f"{service.url}/healthz", timeout=10).json()["queued"] and time.monotonic() < end:
        time.sleep(0.2)

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        rows = {r[0]: r[1:] for r in c.execute(
            "SELECT id, student, state, score, sha256, result FROM attempts")}
    assert set(acked) <= set(rows), f"acknowledged but lost: {sorted(set(acked) - set(rows))}"
    assert len(rows) == STUDENTS * ATTEMPTS  # acknowledged or not, every student's attempts are there
    for attempt, (name, state, score, sha, result) in rows.items():
        assert state == "graded", (attempt, state)
        assert acked.get(attempt, name) == name
        assert score == EXPECTED[sha], (attempt, score)
        assert json.loads(result)["attempt"] == attempt  # the one result recorded is this attempt's

    # nbgrader's gradebook follows each student's counting attempt (the last one)
    from nbgrader.api import Gradebook, MissingEntry
    last = {}
    for attempt, (name, *_rest) in sorted(rows.items()):
        last[name] = rows[attempt][3]
    end, wrong = time.monotonic() + 30, None
    while time.monotonic() < end:
        with Gradebook(f"sqlite:///{service.course / 'gradebook.db'}") as gb:
            try:
                book = {s.student.id: s.score for s in gb.find_assignment("tiny").submissions}
            except MissingEntry:  # not written yet
                book = {}
        wrong = {n: (book.get(n), EXPECTED[sha]) for n, sha in last.items() if book.get(n) != EXPECTED[sha]}
        if not wrong:
            break
        time.sleep(0.5)
    assert not wrong, f"gradebook score != counting attempt's score: {wrong}"

    second.send_signal(signal.SIGTERM)
    assert second.wait(30) in (0, -signal.SIGTERM)  # uvicorn ends by the signal it caught, after shutdown
    end = time.monotonic() + 10
    while zygotes_of({first.pid, second.pid}) and time.monotonic() < end:
        time.sleep(0.1)
    assert zygotes_of({first.pid, second.pid}) == [], "sandbox processes outlived their service"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        assert c.execute("SELECT count(*) FROM attempts WHERE state != 'graded'").fetchone()[0] == 0
