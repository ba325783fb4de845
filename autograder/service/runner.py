"""The service's grader: takes queued attempts from the store, grades them on warm sandboxes, records
each result under its lease, and gives the counting attempt to nbgrader's gradebook.

A thread beside the web app runs `workers` lanes; each lane takes one attempt at a time (never two
of one student at once) and grades it on its assignment's :class:`~autograder.api.Grader`, which
stays open: an attempt costs its own grading (a fraction of a second for these assignments), not a
sandbox start, and a slow attempt holds one lane, never the others.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import queue
import threading
import time
import traceback

from autograder import records
from autograder.api import Grader, GradingError
from autograder.course import Course
from autograder.sandbox import Limits, Refused
from autograder.scoring import Rejected, Result, parse
from autograder.service.config import Config
from autograder.service.store import Attempt, Store, dead_owner, owner_name
from autograder.submissions import Submission

FEEDBACK_OUTPUT = 5000  # characters of a notebook's output kept with each attempt (the feedback shows as many)
STALE_SECONDS = 900  # a lease older than this, held on another machine, is taken over
SWEEP_SECONDS = 30


def submission(att: Attempt) -> Submission:
    return Submission(att.student, att.filename, att.data, f"service attempt {att.id}",
                      submitted_at=att.received_at, time_source="service receipt")


class Runner(threading.Thread):
    def __init__(self, store: Store, config: Config, engine="local"):
        super().__init__(name="grader", daemon=True)
        self.store, self.config, self.engine = store, config, engine
        self.owner = owner_name()
        self.wake, self.stopping = threading.Event(), threading.Event()
        self.graders: dict[str, Grader] = {}
        self.graders_lock = threading.Lock()
        self.course = Course(config.root)
        self.problem: str | None = None  # why grading is stalled, for the instructor page
        self.graded = 0
        # nbgrader's records are written by a thread of their own: opening the gradebook takes
        # seconds, and a student waiting for feedback should not wait for it
        self.books: queue.Queue = queue.Queue()
        self.bookkeeper = threading.Thread(target=self._keep_books, name="gradebook", daemon=True)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def run(self) -> None:
        self.bookkeeper.start()
        try:
            self._rebook()
        except Exception:  # noqa: BLE001 -- grading goes on; the instructor page says what failed
            self.problem = f"could not check nbgrader's gradebook: {traceback.format_exc(limit=2)}"
        dead = dead_owner(self.owner, STALE_SECONDS)
        lanes = [threading.Thread(target=self._lane, name=f"grader-lane-{i}", daemon=True)
                 for i in range(max(1, self.config.workers))]
        for lane in lanes:
            lane.start()
        try:
            while not self.stopping.wait(SWEEP_SECONDS):
                self.store.requeue(dead)  # attempts of a grader that died: graded again, once
                self.wake.set()
        finally:
            for lane in lanes:
                lane.join()
            for g in self.graders.values():
                g.close()
            self.books.put(None)
            self.bookkeeper.join(60)

    def _lane(self) -> None:
        while not self.stopping.is_set():
            try:
                claimed = self.store.claim(self.owner, 1)
            except Exception:  # noqa: BLE001 -- e.g. the database briefly away: said, and retried
                self.problem = f"cannot read the queue: {traceback.format_exc(limit=2)}"
                self.stopping.wait(5.0)
                continue
            if not claimed:
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            att = claimed[0]
            try:
                self._grade(att)
            except Exception:  # noqa: BLE001 -- a lane never dies: said, and the attempt graded later
                self.problem = f"grading attempt {att.id} ({att.assignment}) failed: {traceback.format_exc(limit=3)}"
                self.store.release(att.id, self.owner)
                self.stopping.wait(5.0)

    def grader(self, name: str) -> Grader:
        with self.graders_lock:
            if name not in self.graders:
                self.graders[name] = Grader(
                    self.course.assignment(name), log_dir=self.config.state / "logs" / name,
                    engine=self.engine, workers=self.config.workers,
                    limits=Limits(timeout=self.config.timeout), draw_every=self.config.redraw,
                    language=self.config.language)
            return self.graders[name]

    def _keep_books(self) -> None:
        stop = False
        while not stop:
            items = [self.books.get()]
            while True:  # everything waiting: one gradebook session per assignment
                try:
                    items.append(self.books.get_nowait())
                except queue.Empty:
                    break
            stop = None in items
            pending: dict[str, tuple] = {}
            for item in filter(None, items):
                a, finished = item
                pending.setdefault(a.name, (a, []))[1].extend(finished)
            for a, finished in pending.values():
                self._to_gradebook(a, finished)

    def _rebook(self) -> None:
        """Counting attempts whose nbgrader records name another attempt (a service killed after the
        result was recorded, before the gradebook thread wrote it): given to the gradebook thread now.
        ``grades/<a>/students/<id>/results.json``, written after the gradebook, tells which attempt
        the records hold (its bytes' hash and the time it was graded)."""
        mark = lambda r: (r.get("sha256"), r.get("graded_at"))  # noqa: E731
        seen = {(att.student, att.assignment) for att in self.store.attempts(state="graded")}
        for student, name in sorted(seen):
            counting = self.store.counting(student, name, self.config.policy(name).counts)
            if counting is None:
                continue
            record = json.loads(counting.result)
            path = records.student_dir(self.config.root / "grades" / name, student) / "results.json"
            try:
                if mark(json.loads(path.read_bytes())) == mark(record):
                    continue
            except (OSError, ValueError):
                pass
            att = self.store.attempt(counting.id, with_data=True)
            sub = submission(att)
            result = Result(**{k: record[k] for k in Result.__dataclass_fields__ if k in record})
            try:
                nb = parse(sub)
            except Rejected:
                nb = None
            self.books.put((self.course.assignment(name), [(att, sub, result, nb)]))

    def _grade(self, att: Attempt) -> None:
        try:
            grader = self.grader(att.assignment)
        except (Refused, GradingError, OSError) as exc:  # the attempt waits, queued, for a grader that can
            self.problem = f"cannot grade {att.assignment}: {exc}"
            self.store.release(att.id, self.owner)
            self.stopping.wait(5.0)
            return
        [(sub, result, nb)] = grader.results([submission(att)])
        if self._record(att, result):
            self.books.put((grader.a, [(att, sub, result, nb)]))
        self.problem = None

    def _record(self, att: Attempt, result: Result) -> bool:
        record = result.as_record()
        record["attempt"] = att.id
        record["late"] = att.late
        # what a student's notebook printed or raised is kept short here: every attempt is stored
        record["output"] = record.get("output", "")[:FEEDBACK_OUTPUT]
        record["cell_errors"] = [{**e, "error": {**e["error"], "message": e["error"]["message"][:300]}}
                                 for e in record.get("cell_errors", [])[:10]]
        cases = {c["case"]: bool(c["passed"]) for t in record["tests"] for c in t["cases"]}
        done = self.store.finish(att.id, self.owner, status=result.status, score=result.score,
                                 max_score=result.max_score,
                                 result=json.dumps(record, default=float, ensure_ascii=True),
                                 feedback=records.feedback_body(record), cases=json.dumps(cases))
        self.graded += done
        return done

    def _to_gradebook(self, a, finished) -> None:
        """nbgrader's records (gradebook, autograded/, grades/<a>/) follow each student's counting
        attempt, so ``nbgrader export``, formgrader and feedback keep working."""
        policy = self.config.policy(a.name)
        todo = []
        for att, sub, result, nb in finished:
            counting = self.store.counting(att.student, a.name, policy.counts)
            if counting is not None and counting.id == att.id:
                todo.append((sub, result, nb))
        if not todo:
            return
        out = a.root / "grades" / a.name
        out.mkdir(parents=True, exist_ok=True)
        try:
            with open(out / ".lock", "a+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # an instructor's `autograder grade` run finishes first
                recorder = records.Recorder(out, a, gradebook=True)
                try:
                    for sub, result, nb in todo:
                        self._due_date(recorder, a.name, sub.student_id, policy)
                        recorder.save(sub, result, nb)
                finally:
                    recorder.close()
                records.write_csv(out)
        except Exception:  # noqa: BLE001 -- the attempts' results are recorded; the gradebook is retried next time
            self.problem = f"could not update nbgrader's gradebook for {a.name}: {traceback.format_exc(limit=2)}"

    @staticmethod
    def _due_date(recorder: records.Recorder, assignment: str, student: str, policy) -> None:
        """The policy's due date and this student's extension, in the gradebook, so that nbgrader's
        late flags and late-penalty plugin judge the counting attempt as nbgrader would."""
        if recorder.gradebook is None or policy.deadline is None:
            return
        gb = recorder.gradebook.gb
        naive = lambda t: t.astimezone(dt.timezone.utc).replace(tzinfo=None)  # noqa: E731
        gb.update_or_create_assignment(assignment, duedate=naive(policy.deadline))
        gb.update_or_create_student(student)
        due = policy.due(student)
        if due != policy.deadline:
            gb.update_or_create_submission(assignment, student, extension=due - policy.deadline)


def wait_idle(store: Store, timeout: float) -> bool:
    """True once nothing is queued or being graded (tests and benchmarks)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if store.queued() == 0:
            return True
        time.sleep(0.1)
    return False


__all__ = ["Runner", "submission", "wait_idle"]
