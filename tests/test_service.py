"""The submission service, in-process (starlette's TestClient): feedback in seconds for its owner only,
policy, bad input that costs nothing, CSRF, the queue's exactly-once results, the gradebook."""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grading"))
from submissions import FIXTURE_COURSE, WRONG_TINY, submission  # noqa: E402

from starlette.testclient import TestClient  # noqa: E402

from autograder.service import config as service_config  # noqa: E402
from autograder.service.app import create_app  # noqa: E402
from autograder.service.runner import Runner, wait_idle  # noqa: E402
from autograder.service.store import Store, dead_owner, owner_name  # noqa: E402

pytestmark = pytest.mark.service

SOURCE = FIXTURE_COURSE / "solutions" / "tiny" / "tiny.ipynb"
RIGHT = submission(SOURCE, reference=True)
WRONG = submission(SOURCE, solutions=WRONG_TINY)
ANN, BOB, PROF = ({"Authorization": f"token tok-{who}"} for who in ("ann", "bob", "prof"))


def make_course(tmp_path: Path, toml: str = "") -> Path:
    course = tmp_path / "course"
    shutil.copytree(FIXTURE_COURSE, course)
    (course / "service.toml").write_text(toml)
    return course


def make_app(course: Path, **kw):
    app = create_app(service_config.load(course), **kw)
    store = app.service.store
    store.add_token("tok-ann", "ann")
    store.add_token("tok-bob", "bob")
    store.add_token("tok-prof", "prof", "instructor")
    return app


@pytest.fixture
def course(tmp_path):
    return make_course(tmp_path)


def submit(client, data, headers=ANN, assignment="tiny"):
    return client.post(f"/api/submit?assignment={assignment}", content=data, headers=headers)


def graded(client, attempt_id, headers=ANN) -> dict:
    r = client.get(f"/api/attempts/{attempt_id}?wait=60", headers=headers)
    assert r.status_code == 200 and r.json()["state"] == "graded", r.text
    return r.json()


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def log_in(client, token: str):
    r = client.post("/login", data={"token": token, "csrf": csrf_of(client.get("/").text)}, follow_redirects=False)
    assert r.status_code == 303, r.text


def rows(store: Store) -> int:
    return len(store.attempts())


# --------------------------------------------------------------------------- feedback, to its owner only
def test_feedback_names_the_mistake_for_its_owner_only(course):
    with TestClient(make_app(course)) as client:
        r = submit(client, WRONG)
        assert r.status_code == 202 and r.json()["state"] == "queued"
        wrong = graded(client, r.json()["id"])
        assert (wrong["score"], wrong["max_score"], wrong["status"]) == (0.0, 3.0, "ok")
        scale = next(t for t in wrong["tests"] if t["grade_id"] == "test_scale")
        assert any("added k instead of multiplying" in f for f in scale["failures"])
        right = graded(client, submit(client, RIGHT).json()["id"])
        assert right["score"] == 3.0 and all(t["passed"] for t in right["tests"])

        # bob: the same 404 as for an attempt that does not exist, on the API and on the page
        assert client.get(f"/api/attempts/{wrong['id']}", headers=BOB).status_code == 404
        assert client.get("/api/attempts/99999", headers=BOB).status_code == 404
        assert client.get("/api/attempts", headers=BOB).json() == []
        log_in(client, "tok-bob")
        page = client.get(f"/attempts/{wrong['id']}")
        assert page.status_code == 404 and "added k" not in page.text
        assert "None yet." in client.get("/").text

        log_in(client, "tok-ann")
        page = client.get(f"/attempts/{wrong['id']}").text
        assert "added k instead of multiplying" in page and "0 / 3" in page.replace("&nbsp;", " ")


def test_feedback_never_shows_hidden_inputs_or_test_source(course):
    """What the student receives holds verdicts and messages, not the hidden cases' code, their seed
    or the drawn inputs."""
    cases_source = (course / "solutions" / "tiny" / "cases.py").read_text()
    hidden_lines = [line.strip() for line in cases_source.splitlines() if len(line.strip()) > 25]
    with TestClient(make_app(course)) as client:
        attempt = graded(client, submit(client, WRONG).json()["id"])
        page = client.get(f"/api/attempts/{attempt['id']}", headers=ANN).text
        log_in(client, "tok-ann")
        page += client.get(f"/attempts/{attempt['id']}").text
    stored = json.loads(Store(f"sqlite:///{course / 'service' / 'service.sqlite'}").attempt(attempt["id"]).result)
    assert "seed" not in json.dumps(attempt) and str(stored["seed"]) not in json.dumps(attempt["tests"])
    assert not [line for line in hidden_lines if line in page]


# --------------------------------------------------------------------------- bad input costs nothing
def test_bad_uploads_get_a_clear_answer_and_cost_nothing(tmp_path):
    course = make_course(tmp_path, "[assignments.tiny]\nattempts_total = 1\n")
    other = nb_of_another_assignment()
    with TestClient(make_app(course, start_grader=False)) as client:
        store = client.app.service.store
        cases = [
            (submit(client, RIGHT, headers={}), 401, "token"),
            (submit(client, RIGHT, headers={"Authorization": "token forged"}), 401, "token"),
            (submit(client, RIGHT, assignment="nope"), 404, "no assignment 'nope'"),
            (submit(client, b"\x00not json"), 400, "not a valid Jupyter notebook"),
            (submit(client, json.dumps({"cells": "x"}).encode()), 400, "not a valid Jupyter notebook"),
            (submit(client, other), 400, "belong to another assignment"),
            (submit(client, b"{" + b" " * (9 << 20) + b"}"), 413, "larger than 8 MiB"),
        ]
        for response, status, text in cases:
            assert response.status_code == status, (status, response.text)
            assert text in response.text
        assert rows(store) == 0
        assert submit(client, RIGHT).status_code == 202  # the one attempt allowed is still there
        over = submit(client, RIGHT)
        assert over.status_code == 429 and "all 1 attempts" in over.json()["error"]
        assert rows(store) == 1


def nb_of_another_assignment() -> bytes:
    nb = json.loads(RIGHT)
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader")
        if meta and "grade_id" in meta:
            meta["grade_id"] = "other_" + meta["grade_id"]
    return json.dumps(nb).encode()


def test_an_upload_without_content_length_is_cut_at_the_cap(course):
    with TestClient(make_app(course, start_grader=False)) as client:
        chunks = (b"x" * (1 << 20) for _ in range(12))  # streamed: no Content-Length
        r = client.post("/api/submit?assignment=tiny", content=chunks, headers=ANN)
        assert r.status_code == 413 and rows(client.app.service.store) == 0


def test_forms_need_the_session_csrf_token(course):
    with TestClient(make_app(course, start_grader=False)) as client:
        r = client.post("/login", data={"token": "tok-ann", "csrf": "guess"})
        assert r.status_code == 403 and "ann" not in r.text.split("<header>")[1].split("</header>")[0]
        log_in(client, "tok-ann")
        files = {"notebook": ("tiny.ipynb", RIGHT, "application/json")}
        for token in (None, "guess"):
            data = {"assignment": "tiny", **({"csrf": token} if token else {})}
            r = client.post("/submit", data=data, files=files)
            assert r.status_code == 403 and "form expired" in r.text
        assert rows(client.app.service.store) == 0
        data = {"assignment": "tiny", "csrf": csrf_of(client.get("/").text)}
        r = client.post("/submit", data=data, files=files, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/attempts/")
        assert rows(client.app.service.store) == 1


def test_pages_forbid_scripts_and_framing(course):
    with TestClient(make_app(course, start_grader=False)) as client:
        headers = client.get("/").headers
    assert "script-src" not in headers["content-security-policy"]
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"


# --------------------------------------------------------------------------- policy
def test_deadline_extension_and_late_policy(tmp_path):
    past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)).isoformat(timespec="seconds")
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)).isoformat(timespec="seconds")
    course = make_course(tmp_path, f'[assignments.tiny]\ndeadline = {past}\nlate = "refuse"\n'
                                   f'[assignments.tiny.extensions]\nbob = {future}\n')
    with TestClient(make_app(course, start_grader=False)) as client:
        r = submit(client, RIGHT)
        assert r.status_code == 403 and "deadline" in r.json()["error"]
        ok = submit(client, RIGHT, headers=BOB)  # his extension
        assert ok.status_code == 202 and ok.json()["late"] is False
        assert rows(client.app.service.store) == 1

    course2 = make_course(tmp_path / "2", f'[assignments.tiny]\ndeadline = {past}\nlate = "accept"\n')
    with TestClient(make_app(course2)) as client:
        late = graded(client, submit(client, RIGHT).json()["id"])
        assert late["late"] is True and late["score"] == 3.0
        assert wait_idle(client.app.service.store, 30)
        wait_for(lambda: (course2 / "grades" / "tiny" / "grades.csv").exists())
    row = next(csv.DictReader(open(course2 / "grades" / "tiny" / "grades.csv")))
    assert float(row["seconds_late"]) > 7000  # two hours: nbgrader's lateness, from our receipt time


def test_attempt_limits_hold_under_parallel_uploads(tmp_path):
    course = make_course(tmp_path, "[assignments.tiny]\nattempts_total = 3\n")
    with TestClient(make_app(course, start_grader=False)) as client:
        with ThreadPoolExecutor(10) as pool:
            codes = sorted(pool.map(lambda _: submit(client, RIGHT).status_code, range(10)))
        assert codes == [202] * 3 + [429] * 7
        assert rows(client.app.service.store) == 3


@pytest.mark.parametrize("rule, counted", [("last", 0.0), ("best", 3.0)])
def test_the_counting_attempt_goes_to_the_gradebook(tmp_path, rule, counted):
    course = make_course(tmp_path, f'[assignments.tiny]\ncounts = "{rule}"\n')
    with TestClient(make_app(course)) as client:
        graded(client, submit(client, RIGHT).json()["id"])
        last = graded(client, submit(client, WRONG).json()["id"])
        wait_for(lambda: gradebook_score(course, "ann") == counted)
        export = list(csv.DictReader(io.StringIO(client.get("/instructor/attempts.csv", headers=PROF).text)))
    assert [(r["attempt"], r["score"], r["counts"]) for r in export] == \
        [("1", "3", str(int(rule == "best"))), (str(last["id"]), "0", str(int(rule == "last")))]
    autograded = course / "autograded" / "ann" / "tiny" / "tiny.ipynb"
    assert autograded.exists()  # what nbgrader generate_feedback reads


def gradebook_score(course: Path, student: str) -> float | None:
    path = course / "gradebook.db"
    if not path.exists():
        return None
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT SUM(grade.auto_score) FROM grade JOIN submitted_notebook ON grade.notebook_id = "
                         "submitted_notebook.id JOIN submitted_assignment ON submitted_notebook.assignment_id = "
                         "submitted_assignment.id JOIN student ON submitted_assignment.student_id = student.id "
                         "WHERE student.id = ?", (student,)).fetchone()
    return row[0]


def wait_for(condition, timeout: float = 60.0) -> None:
    import time
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


# --------------------------------------------------------------------------- the queue: exactly once
def test_a_result_is_recorded_only_under_the_claiming_lease(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.sqlite'}")
    att = store.accept("ann", "tiny", "tiny.ipynb", RIGHT, lambda *_: False)
    assert store.attempt(att.id, with_data=True).data == RIGHT
    assert store.attempt(att.id).sha256 == hashlib.sha256(RIGHT).hexdigest()
    first, second = owner_name(), owner_name()
    assert [a.id for a in store.claim(first, 10)] == [att.id]
    assert store.claim(second, 10) == []
    done = dict(status="ok", score=1.0, max_score=3.0, result="{}", feedback="")
    assert store.finish(att.id, second, **done) is False
    assert store.finish(att.id, first, **done) is True
    assert store.finish(att.id, first, **done) is False  # once
    assert store.attempt(att.id).state == "graded"


def test_attempts_of_a_dead_grader_are_graded_again_once(course):
    """A grader that died holding leases (here: a lease of a pid that is gone): a new runner puts
    them back in the queue and grades each once."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    with TestClient(make_app(course, start_grader=False)) as client:
        ids = [submit(client, RIGHT).json()["id"], submit(client, WRONG, headers=BOB).json()["id"]]
        store = client.app.service.store
        import socket
        assert len(store.claim(f"{socket.gethostname()}/{gone}/dead", 10)) == 2
        runner = Runner(store, client.app.service.config)
        assert dead_owner(runner.owner, 900)(f"{socket.gethostname()}/{gone}/dead", None)
        runner.start()
        try:
            assert wait_idle(store, 60)
        finally:
            runner.stop()
            runner.join(30)
        assert [(a.state, a.score) for a in map(store.attempt, ids)] == [("graded", 3.0), ("graded", 0.0)]
        assert runner.graded == 2


# --------------------------------------------------------------------------- instructors
def test_instructor_page_shows_where_the_class_is_stuck(course):
    with TestClient(make_app(course)) as client:
        graded(client, submit(client, WRONG).json()["id"])
        graded(client, submit(client, RIGHT, headers=BOB).json()["id"], headers=BOB)
        log_in(client, "tok-ann")
        assert client.get("/instructor").status_code == 404
        assert client.get("/instructor/attempts.csv").status_code == 404
        log_in(client, "tok-prof")
        page = client.get("/instructor").text
    assert "ann" in page and "bob" in page
    rates = re.findall(r"<code>([\w-]+)</code></td><td>(\d+) % of (\d+)", page)
    assert rates and rates[0][1:] == ("50", "2")  # every case: ann failed it, bob passed
    assert {r[1] for r in rates} == {"50"}


# --------------------------------------------------------------------------- setting it up
def test_service_toml_mistakes_name_the_key(tmp_path):
    for toml, words in [('[assignments.tiny]\nlate = "maybe"\n', "late is"),
                        ("[assignments.tiny]\nattempts = 3\n", "unknown key 'attempts'"),
                        ("[assignments.tiny]\ndeadline = 2026-12-01T10:00:00\n", "time zone"),
                        ("[assignments.nope]\n", "no such assignment"),
                        ("[assignments\n", "service.toml")]:
        course = make_course(tmp_path / str(abs(hash(toml))), toml)
        with pytest.raises(service_config.ConfigError, match=re.escape(words)):
            service_config.load(course)
        r = subprocess.run([sys.executable, "-m", "autograder", "serve", "--course", str(course)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and words in r.stderr


def test_tokens_from_a_roster(course, tmp_path):
    (tmp_path / "roster.csv").write_text("student_id,role\n张伟,student\nprof_li,instructor\n", encoding="utf-8")
    out = tmp_path / "tokens.csv"
    cmd = [sys.executable, "-m", "autograder", "tokens", str(tmp_path / "roster.csv"), "--course", str(course),
           "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    issued = list(csv.DictReader(open(out, encoding="utf-8")))
    assert [(t["student_id"], t["role"]) for t in issued] == [("张伟", "student"), ("prof_li", "instructor")]
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    db = (course / "service" / "service.sqlite").read_bytes()
    assert all(t["token"].encode() not in db for t in issued)  # only hashes are kept
    store = Store(f"sqlite:///{course / 'service' / 'service.sqlite'}")
    assert store.user_for_token(issued[0]["token"]) == ("张伟", "student")
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "never overwritten" in again.stderr


# --------------------------------------------------------------------------- what attacks taught
def test_the_api_ignores_the_session_cookie(course):
    """Another site can make a logged-in student's browser send the cookie: the API wants a token."""
    with TestClient(make_app(course, start_grader=False)) as client:
        log_in(client, "tok-ann")
        assert client.get("/").status_code == 200 and "Log out" in client.get("/").text
        r = client.post("/api/submit?assignment=tiny", content=RIGHT)
        assert r.status_code == 401 and client.get("/api/attempts").status_code == 401
        assert rows(client.app.service.store) == 0


def test_a_new_token_ends_the_old_one_and_its_sessions(course, tmp_path):
    with TestClient(make_app(course, start_grader=False)) as client:
        log_in(client, "tok-ann")
        assert "Log out" in client.get("/").text
        client.app.service.store.replace_token("tok-ann-2", "ann")
        assert submit(client, RIGHT).status_code == 401
        assert "Log out" not in client.get("/").text  # the session made with the old token is over
        assert submit(client, RIGHT, headers={"Authorization": "token tok-ann-2"}).status_code == 202


def test_wait_must_be_a_number_of_seconds(course):
    with TestClient(make_app(course, start_grader=False)) as client:
        attempt = submit(client, RIGHT).json()["id"]
        for wait in ("nan", "inf", "x"):
            assert client.get(f"/api/attempts/{attempt}?wait={wait}", headers=ANN).status_code == 400
        r = client.get(f"/api/attempts/{attempt}?wait=-5", headers=ANN)
        assert r.status_code == 200 and r.json()["state"] == "queued"


LEAKY = {"scale": "def scale(x, k):\n    print('LEAK-OUT', repr(x))\n    raise ValueError('LEAK-MSG ' + repr(k))\n",
         "total": "def total(x):\n    raise ValueError('LEAK-MSG ' + repr(x))\n"}


def test_what_the_hidden_cases_were_given_never_reaches_the_student(course):
    """Printed during the cases' calls, or put in an exception's message: not in the feedback. The
    visible case's message is shown (its inputs are public)."""
    nb = submission(SOURCE, solutions=LEAKY, before=["print('from the notebook itself')"])
    with TestClient(make_app(course)) as client:
        result = graded(client, submit(client, nb).json()["id"])
    text = json.dumps(result)
    assert "from the notebook itself" in result["feedback_html"]
    assert "LEAK-OUT" not in text
    failures = {f.split(":")[0]: f for t in result["tests"] for f in t["failures"]}
    assert "LEAK-MSG" in failures["scale-visible"]
    hidden = {case: f for case, f in failures.items() if "hidden" in case}
    assert hidden and all("LEAK" not in f and "ValueError" not in f and "not shown for a hidden case" in f
                          for f in hidden.values())  # which exception it raised is its choice too


def test_stored_outputs_and_foreign_metadata_are_dropped_unread():
    from autograder.scoring import parse
    from autograder.submissions import Submission
    nb = json.loads(RIGHT)
    nb["metadata"]["padding"] = ["x" * 100] * 1000
    for cell in nb["cells"]:
        cell["metadata"]["padding"] = {"deep": [[1, 2]] * 100}
        if cell["cell_type"] == "code":
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "y" * 1000}] * 50
    parsed = parse(Submission("ann", "tiny.ipynb", json.dumps(nb).encode(), "t"))
    assert "padding" not in parsed.metadata
    assert all(set(c.metadata) <= {"nbgrader"} for c in parsed.cells)
    assert all(c.outputs == [] for c in parsed.cells if c.cell_type == "code")
    original = json.loads(RIGHT)["cells"]
    assert [c.source for c in parsed.cells] == ["".join(c["source"]) for c in original]


def test_one_students_slow_attempts_never_hold_every_lane(course):
    """Two lanes; mallory queues three slow attempts, then ann submits: ann is graded while mallory's
    first is still running, because a student's attempts are graded one at a time."""
    slow = submission(SOURCE, reference=True, before=["import time\ntime.sleep(4)"])
    with TestClient(make_app(course)) as client:
        client.app.service.store.add_token("tok-mallory", "mallory")
        mallory = {"Authorization": "token tok-mallory"}
        first = [submit(client, slow, headers=mallory).json()["id"] for _ in range(3)]
        ann = graded(client, submit(client, RIGHT).json()["id"])
        store = client.app.service.store
        assert store.attempt(first[1]).state == "queued" and store.attempt(first[2]).state == "queued"
        assert ann["score"] == 3.0
        assert [graded(client, i, headers=mallory)["score"] for i in first] == [3.0] * 3
        assert sorted(map(lambda i: store.attempt(i).graded_at, first)) == [store.attempt(i).graded_at for i in first]


# --------------------------------------------------------------------------- the second attack round
SHAPE_ORACLE = {"scale": "def scale(x, k):\n    return np.empty((0, 4242, 5353))\n",
                "total": "def total(x):\n    return [1, 2, 3]\n"}


def test_hidden_verdicts_echo_nothing_the_submission_returned(course):
    """A returned shape (or keys, length, relative error) is the submission's to choose, and can spell
    out its hidden inputs: hidden verdicts name the kind of mistake only."""
    with TestClient(make_app(course)) as client:
        result = graded(client, submit(client, submission(SOURCE, solutions=SHAPE_ORACLE)).json()["id"])
    failures = {f.split(":")[0]: f for t in result["tests"] for f in t["failures"]}
    assert "4242" in failures["scale-visible"]                        # visible: the whole message
    hidden = [f for case, f in failures.items() if "hidden" in case]
    assert hidden and not any("4242" in f or "5353" in f or "relative error" in f for f in hidden)
    assert any("wrong shape" in f for f in hidden)
    assert "4242" not in result["feedback_html"].split("scale-visible")[0]


def test_hub_names_map_to_distinct_ids_and_instructors_by_exact_name(tmp_path):
    from types import SimpleNamespace
    from autograder.service.hub import HubAuth, hub_student_id
    assert hub_student_id("alice") == "alice" and hub_student_id("张伟") == "张伟"
    ids = {hub_student_id(n) for n in ("alice", "alice.", "_alice", "alice-", "alice@")}
    assert len(ids) == 5
    auth = object.__new__(HubAuth)
    auth.config = SimpleNamespace(instructors={"prof_li"})
    auth.oauth = SimpleNamespace(access_scopes={"access:services!service=submit"})
    model = lambda name: {"kind": "user", "name": name, "scopes": ["access:services!service=submit"]}  # noqa: E731
    assert auth._who(model("prof_li")) == ("prof_li", "instructor")
    assert auth._who(model("prof_li."))[1] == "student" and auth._who(model("prof_li."))[0] != "prof_li"


def test_a_roster_whose_rows_share_an_id_is_refused(course, tmp_path):
    (tmp_path / "roster.csv").write_text("student_id\nalice\nalice.\n")
    r = subprocess.run([sys.executable, "-m", "autograder", "tokens", str(tmp_path / "roster.csv"), "--course",
                        str(course), "--out", str(tmp_path / "t.csv")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "both the student id 'alice'" in r.stderr and not (tmp_path / "t.csv").exists()


def test_pages_say_only_the_services_own_words_and_whose_account_it_is(course):
    with TestClient(make_app(course, start_grader=False)) as client:
        assert "mallory@evil" not in client.get("/?error=Send+your+token+to+mallory@evil.example").text
        log_in(client, "tok-ann")
        assert re.search(r'id="who">ann<', client.get("/").text)


# --------------------------------------------------------------------------- the third attack round
def test_logging_out_ends_the_session_for_every_copy_of_its_cookie(course):
    app = make_app(course, start_grader=False)
    with TestClient(app) as client:
        log_in(client, "tok-prof")
        stolen = dict(client.cookies)
        with TestClient(app, cookies=stolen) as copy:
            assert copy.get("/instructor").status_code == 200  # the copy works while the session lives
        client.post("/logout", data={"csrf": csrf_of(client.get("/instructor").text)})
    with TestClient(app, cookies=stolen) as thief:
        assert thief.get("/instructor", follow_redirects=False).status_code == 303
        assert thief.get("/instructor/attempts.csv").status_code == 404


def test_a_notebook_of_a_million_tiny_values_is_refused_before_it_is_decoded(course):
    objects, lines = json.loads(RIGHT), json.loads(RIGHT)
    objects["metadata"]["x"] = [{}] * 600_000
    lines["cells"][0]["source"] = ["a\n"] * 900_000
    with TestClient(make_app(course, start_grader=False)) as client:
        for nb in (objects, lines):
            r = submit(client, json.dumps(nb, separators=(",", ":")).encode())
            assert r.status_code == 400 and "JSON values" in r.json()["error"]
        assert rows(client.app.service.store) == 0


def test_a_stalled_upload_holds_one_slot_for_a_bounded_time(course, monkeypatch):
    import anyio
    import autograder.service.app as app_module
    from autograder.service.store import Refusal
    monkeypatch.setattr(app_module, "UPLOAD_SECONDS", 0.5)
    service = make_app(course, start_grader=False).service

    async def scenario():
        order = []

        async def ann(tag, hold):
            async with service.upload_slot(("ann", "student")):
                order.append(f"{tag} in")
                await anyio.sleep(hold)
                order.append(f"{tag} out")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(ann, "first", 0.3)
            await anyio.sleep(0.05)
            tasks.start_soon(ann, "second", 0)  # waits for her first
            await anyio.sleep(0.05)
            async with service.upload_slot(("bob", "student")):  # others go on meanwhile
                order.append("bob")
        assert order == ["first in", "bob", "first out", "second in", "second out"]
        with pytest.raises(Refusal) as slow:
            async with service.upload_slot(("ann", "student")):
                await anyio.sleep(5)
        assert slow.value.status == 408 and "nothing was recorded" in str(slow.value)
        async with service.upload_slot(("ann", "student")):  # the slot is free again
            pass

    anyio.run(scenario)
