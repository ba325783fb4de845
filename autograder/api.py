"""One grading API: ``autograder.grade(assignment, submissions, *, out, engine, limits) -> Summary``.

The command line (``autograder grade``), a service or a notebook call this one function. It keeps each
submission's bytes before anything else, skips what the journal says is done, runs the rest on an
engine (``"local"``: pre-warmed sandboxes on this machine; a Dask scheduler's address or a
``distributed.Client``: sandboxes on the cluster's workers), scores every transcript here as it
arrives, records it, and writes grades.csv and the LMS files.
"""
from __future__ import annotations

import fcntl
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from autograder import lms, messages, records
from autograder.course import Assignment, Course, Draw, UnknownAssignment, default_root, draw
from autograder.engine import Local, SandboxSpec, Task
from autograder.scoring import Rejected, Result, calls, failed, parse, reject, runnable_cells, score
from autograder.submissions import InputError, Submission, content_address, discover
from autograder.sandbox import Limits, Refused


class GradingError(Exception):
    """Grading could not happen at all (unknown assignment, unreadable input, output folder busy, ...)."""


@dataclass
class Summary:
    """What one grading run did; `rows` are grades.csv's rows of this run's students."""

    assignment: str
    out: Path
    max_score: float
    results: list[Result] = field(default_factory=list)  # graded in this run
    rows: list[dict] = field(default_factory=list)
    already_done: int = 0
    earlier_attempts: int = 0
    startup_seconds: float = 0.0
    grading_seconds: float = 0.0
    engine: str = "local"
    unsandboxed: str | None = None  # why the sandbox was left out (allow_unsandboxed), else None

    @property
    def errors(self) -> int:
        return sum(r["status"] != "ok" for r in self.rows)

    @property
    def mean(self) -> float:
        return sum(float(r["score"]) for r in self.rows) / len(self.rows) if self.rows else 0.0

    def line(self) -> str:
        return (f"{self.assignment}: {len(self.rows)} submissions ({len(self.results)} graded now, "
                f"{self.already_done} already done), {self.errors} with errors, mean score "
                f"{self.mean:.2f} / {self.max_score:g}; start-up {self.startup_seconds:.1f} s, grading "
                f"{self.grading_seconds:.1f} s; results in {self.out}"
                + (f"; {self.earlier_attempts} earlier attempts kept in students/<id>/submitted/"
                   if self.earlier_attempts else ""))


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def engine_for(engine, workers: int | None = None):
    """"local", a Dask scheduler's address ("tcp://host:8786", "tls://..."), a ``distributed.Client``,
    or an engine object already made."""
    if engine == "local" or engine is None:
        return Local(workers or os.cpu_count() or 1)
    if isinstance(engine, str):
        from autograder.cluster import Dask
        return Dask(engine)
    if type(engine).__module__.startswith("distributed"):  # a Client: no import of Dask otherwise
        from autograder.cluster import Dask
        return Dask(engine)
    return engine


def _assignment(name: str, root: Path | str | None) -> Assignment:
    root = Path(root).resolve() if root else default_root()
    try:
        return Course(root).assignment(name)
    except (UnknownAssignment, FileNotFoundError, ValueError) as exc:
        raise GradingError(str(exc)) from None


def grade(assignment: str | Assignment, submissions: Iterable[str | Path | Submission], *,
          out: Path | str | None = None, engine="local", limits: Limits | None = None,
          workers: int | None = None, root: Path | str | None = None, force: bool = False,
          allow_unsandboxed: bool = False, gradebook: bool = True, lms_column: str | None = None,
          seed: int | None = None, progress: Callable[[Result, int, int], None] | None = None,
          warn: Callable[[str], None] = _warn, language: str | None = None) -> Summary:
    """Grade `submissions` (paths as the CLI takes them, or :class:`Submission` values) of `assignment`.

    The feedback is in `language` (default: the course's, :func:`autograder.messages.course_language`).

    Raises :class:`GradingError` when grading cannot happen at all and :class:`Refused` when the
    sandbox cannot be built (unless `allow_unsandboxed`, which grades without it and says so in
    every feedback). Every submission otherwise ends with a recorded result."""
    limits = limits or Limits()
    a = assignment if isinstance(assignment, Assignment) else _assignment(assignment, root)
    root = a.root
    try:
        language = messages.course_language(root, language)
    except messages.UnknownLanguage as exc:
        raise GradingError(str(exc)) from None
    subs = list(submissions)
    if not all(isinstance(s, Submission) for s in subs):
        try:
            subs = discover(subs, a.name)
        except (InputError, FileNotFoundError) as exc:
            raise GradingError(str(exc)) from None
    repeated = sorted(sid for sid, n in Counter(s.student_id for s in subs).items() if n > 1)
    if repeated:   # discover() turns these into one duplicate-id each; Submission values come as given
        raise GradingError(f"more than one submission for {', '.join(repeated[:5])}: give one per student")
    out = Path(out or Path(root) / "grades" / a.name).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GradingError(f"another grading run is writing to {out}; wait for it to finish or "
                               f"choose another --out") from None
        try:
            recorder = records.Recorder(out, a, gradebook=gradebook)
        except Exception as exc:  # noqa: BLE001 -- e.g. gradebook.db locked or corrupt
            raise GradingError(
                f"nbgrader's gradebook ({records.gradebook_path(Path(root))}) cannot be opened: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}; close other nbgrader tools "
                f"using it, or pass --no-gradebook") from None
        for sub in subs:  # the bytes as received, before anything can go wrong
            try:
                records.keep_submitted(out, sub)
            except OSError as exc:  # e.g. a full disk: said, and that student is still graded
                warn(f"could not keep the bytes of {sub.student_id}: {exc}")
        todo = [s for s in subs if force or not recorder.journal.is_done(s, out)]
        summary = Summary(a.name, out, a.max_score, already_done=len(subs) - len(todo),
                          earlier_attempts=sum(len(s.earlier) for s in subs),
                          engine=engine if isinstance(engine, str) else type(engine).__name__)
        started = time.monotonic()
        try:
            with messages.using(language, a.source.parent):  # every message made while grading
                try:
                    ready = _run(a, todo, recorder, engine_for(engine, workers), SandboxSpec.of(a), limits,
                                 seed, progress, summary, warn)
                except Refused as exc:
                    if not allow_unsandboxed:
                        raise
                    summary.unsandboxed = str(exc)
                    warn(f"{exc}\nwarning: {records.UNSANDBOXED}")
                    ready = _run(a, todo, recorder, engine_for(engine, workers), SandboxSpec.of(a, sandbox=False),
                                 limits, seed, progress, summary, warn)
        finally:
            recorder.close()
        summary.startup_seconds = (ready or started) - started
        summary.grading_seconds = time.monotonic() - (ready or started)
        rows = records.write_csv(out)
        lms.write_lms(out, a.name, Path(root), lms_column)
        records.give_to_course_owner(Path(root), [out, *(Path(root) / "autograded" / s.student_id / a.name
                                                           for s in subs)])
        mine = {s.student_id for s in subs}
        summary.rows = [r for r in rows if r["student_id"] in mine]
        return summary


def _run(a: Assignment, todo: list[Submission], recorder: records.Recorder, engine, spec: SandboxSpec,
         limits: Limits, seed, progress, summary: Summary, warn=_warn) -> float | None:
    """Grade `todo` on `engine`; each result is scored and recorded as it arrives. Returns when the
    engine was ready (start-up done: what follows is the steady state)."""
    if not todo:
        return None
    try:
        engine.open(spec, limits, len(todo), recorder.out)  # sandboxes start while the inputs are drawn
        drawn = draw(a, seed)
        engine.ready()
        ready = time.monotonic()
        for where, why in getattr(engine, "refusals", {}).items():  # Dask workers without a sandbox
            warn(f"worker {where}: {why} Its share of the submissions goes to the other workers.")
        for sub, result, nb in _graded(a, todo, engine, spec, drawn, limits):
            recorder.save(sub, result, nb)
            summary.results.append(result)
            if progress is not None:  # (result, how many done, how many to grade in this run)
                progress(result, len(summary.results), len(todo))
        return ready
    finally:
        engine.close()


def _graded(a: Assignment, todo: list[Submission], engine, spec: SandboxSpec, drawn: Draw, limits: Limits):
    """(submission, scored Result, parsed notebook or None) for each of `todo`, as each finishes on
    an engine already open; one the engine loses ends as that student's error, never in silence."""
    sandbox = {"enabled": spec.sandbox, "layers": list(engine.layers), "limits": vars(limits)}
    by_key: dict[str, Submission] = {}

    def finished(sub: Submission, result: Result):
        result.sandbox = {**sandbox, "layers": result.sandbox.get("layers", sandbox["layers"])}
        try:
            return sub, result, parse(sub)
        except Rejected:
            return sub, result, None

    tasks = []
    for sub in todo:
        try:
            cells = runnable_cells(parse(sub), a)
        except Rejected as exc:  # graded without running it
            yield finished(sub, reject(sub, a, drawn, exc))
            continue
        key = content_address(a.name, sub.student_id, sub.sha256)
        by_key[key] = sub
        tasks.append(Task(key, cells))
    for task, transcript in engine.run(calls(a, drawn), tasks):
        sub = by_key.pop(task.key)
        yield finished(sub, _scored(sub, a, drawn, transcript, limits))
    for sub in by_key.values():
        yield finished(sub, failed(sub, a, drawn, "grader-error", "the grading engine returned no result"))


class Grader:
    """One assignment's engine kept open between calls, for a service that grades attempts as they
    arrive: the sandboxes start once, and each call pays only for its own grading.

    ``with Grader("optimizers", log_dir=...) as g: g.results(submissions)`` -> scored Results (inputs
    drawn fresh per call); nothing is written: the caller records them."""

    def __init__(self, assignment: str | Assignment, *, log_dir: Path | str, engine="local",
                 limits: Limits | None = None, workers: int | None = None, root: Path | str | None = None,
                 draw_every: float = 0.0, language: str | None = None):
        self.a = assignment if isinstance(assignment, Assignment) else _assignment(assignment, root)
        try:  # the feedback's language (default: the course's)
            self.language = messages.course_language(self.a.root, language)
        except messages.UnknownLanguage as exc:
            raise GradingError(str(exc)) from None
        # hidden inputs drawn afresh for each call, or at most every `draw_every` seconds (a service
        # grading attempts one at a time: drawing can cost seconds, grading a fraction of one)
        self.draw_every, self._drawn, self._draw_lock = draw_every, None, threading.Lock()
        self.limits = limits or Limits()
        self.spec = SandboxSpec.of(self.a)
        self.engine = engine_for(engine, workers)
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.engine.open(self.spec, self.limits, workers or os.cpu_count() or 1, log_dir)
        try:
            self.engine.ready()
        except BaseException:
            self.engine.close()
            raise

    def results(self, submissions: list[Submission], seed: int | None = None) -> list[tuple[Submission, Result, object]]:
        """(submission, Result, parsed notebook or None) for each submission, one per student."""
        repeated = sorted(sid for sid, n in Counter(s.student_id for s in submissions).items() if n > 1)
        if repeated:
            raise GradingError(f"more than one submission for {', '.join(repeated[:5])}: give one per student")
        drawn = self._draw(seed)
        with messages.using(self.language, self.a.source.parent):
            return list(_graded(self.a, submissions, self.engine, self.spec, drawn, self.limits))

    def _draw(self, seed: int | None) -> Draw:
        if seed is not None or self.draw_every <= 0:
            return draw(self.a, seed)
        with self._draw_lock:  # calls from several threads share one engine (and one draw)
            if self._drawn is None or time.monotonic() - self._drawn[0] > self.draw_every:
                self._drawn = (time.monotonic(), draw(self.a))
            return self._drawn[1]

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _scored(sub: Submission, a: Assignment, drawn: Draw, transcript, limits: Limits) -> Result:
    if isinstance(transcript, BaseException):
        return failed(sub, a, drawn, "grader-error", f"{type(transcript).__name__}: {transcript}")
    try:
        result = score(sub, a, drawn, transcript, limits)
    except Exception as exc:  # noqa: BLE001 -- a malformed transcript is that student's error
        return failed(sub, a, drawn, "grader-error", f"unreadable transcript ({type(exc).__name__}: {exc})")
    layers = transcript.get("layers")
    if isinstance(layers, list) and all(isinstance(x, str) for x in layers):
        result.sandbox = {"layers": layers[:20]}
    return result
