"""The submission service on PostgreSQL (a real server the tests start, see conftest): a student graded
end to end, and two service processes grading one shared queue, each attempt once."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grading"))
from submissions import FIXTURE_COURSE, WRONG_TINY, submission  # noqa: E402

from starlette.testclient import TestClient  # noqa: E402

from autograder.service import config as service_config  # noqa: E402
from autograder.service.app import create_app  # noqa: E402
from autograder.service.store import Store, attempts  # noqa: E402

pytestmark = pytest.mark.service

SOURCE = FIXTURE_COURSE / "solutions" / "tiny" / "tiny.ipynb"
RIGHT = submission(SOURCE, reference=True)
WRONG = submission(SOURCE, solutions=WRONG_TINY)


def make_course(tmp_path: Path, toml: str = "") -> Path:
    course = tmp_path / "course"
    shutil.copytree(FIXTURE_COURSE, course)
    (course / "service.toml").write_text(toml)
    return course


def test_a_student_is_graded_through_the_service_on_postgresql(tmp_path, postgres_url):
    course = make_course(tmp_path)
    app = create_app(service_config.load(course, db=postgres_url))
    app.service.store.add_token("tok-ann", "ann")
    ann = {"Authorization": "token tok-ann"}
    with TestClient(app) as client:
        r = client.post("/api/submit?assignment=tiny", content=RIGHT, headers=ann)
        assert r.status_code == 202, r.text
        attempt = r.json()
        for _ in range(3):  # the first attempt also starts the sandboxes: on a busy machine, more than 30 s
            attempt = client.get(f"/api/attempts/{attempt['id']}?wait=30", headers=ann).json()
            if attempt["state"] == "graded":
                break
    assert attempt["state"] == "graded", app.service.runner.problem
    assert (attempt["score"], attempt["max_score"], attempt["status"]) == (3.0, 3.0, "ok")
    assert all(t["passed"] for t in attempt["tests"])
    kept = Store(postgres_url).attempt(attempt["id"], with_data=True)  # in PostgreSQL, as received
    assert (kept.data, kept.state, kept.score) == (RIGHT, "graded", 3.0)
    assert not (course / "service" / "service.sqlite").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_services_share_one_postgresql_queue(tmp_path, postgres_url):
    """Two `autograder serve` processes on one database (as on two machines): 30 attempts sent to
    either are each graded once, with their own result, and none is lost."""
    course = make_course(tmp_path, "[service]\nworkers = 1\n")
    store = Store(postgres_url)
    students = [f"s{i}" for i in range(6)]
    for s in students:
        store.add_token(f"tok-{s}", s)
    servers, logs, ports = [], [], [free_port(), free_port()]
    try:
        for port in ports:
            log = open(tmp_path / f"serve-{port}.log", "wb")
            logs.append(log)
            servers.append(subprocess.Popen(
                [sys.executable, "-m", "autograder", "serve", "--db", postgres_url, "--course", str(course),
                 "--port", str(port)], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT))
        for port, server in zip(ports, servers):
            wait_until_up(f"http://127.0.0.1:{port}", server, tmp_path / f"serve-{port}.log")

        def send(i):  # student i % 6, to server i % 2; every third one wrong
            student, port = students[i % len(students)], ports[i % 2]
            r = httpx.post(f"http://127.0.0.1:{port}/api/submit?assignment=tiny", content=WRONG if i % 3 == 0 else RIGHT,
                           headers={"Authorization": f"token tok-{student}"}, timeout=30)
            assert r.status_code == 202, r.text
            return r.json()["id"], student, 0.0 if i % 3 == 0 else 3.0

        with ThreadPoolExecutor(6) as pool:
            sent = list(pool.map(send, range(30)))
        end = time.monotonic() + 90
        while store.queued() and time.monotonic() < end:
            time.sleep(0.5)
        assert store.queued() == 0, [(p, httpx.get(f"http://127.0.0.1:{p}/healthz").json()) for p in ports]
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        for log in logs:
            log.close()

    rows = {a.id: store.attempt(a.id) for a in store.attempts()}  # in full: summaries carry no result
    assert sorted(rows) == sorted(i for i, _, _ in sent)  # none lost, none extra
    for attempt_id, student, score in sent:
        att = rows[attempt_id]
        assert (att.student, att.state, att.status, att.score) == (student, "graded", "ok", score), attempt_id
        assert json.loads(att.result)["attempt"] == attempt_id  # its own result
    # every attempt was graded by one of the two (the lease is the grader's name: host/pid/start); which
    # of them took how many depends on timing, so it is printed, not asserted
    with store.engine.connect() as c:
        leases = c.execute(sa.select(attempts.c.lease)).scalars().all()
    takers = [int(lease.split("/")[1]) for lease in leases]
    assert set(takers) <= {s.pid for s in servers}
    print("attempts per grader:", {s.pid: takers.count(s.pid) for s in servers})


def wait_until_up(url: str, server: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if server.poll() is not None:
            pytest.fail(f"`autograder serve` exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"`autograder serve` did not answer in {timeout:.0f} s:\n{log.read_text()[-3000:]}")
