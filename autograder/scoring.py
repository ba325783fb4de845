"""Scoring, in the one trusted process: what a sandbox handed back becomes a :class:`Result`.

The trusted process reads the test cells from the SOURCE notebook, draws hidden inputs once per run
(:func:`autograder.course.draw`), and sends (driver, inputs) calls with the submission's cells to a
sandbox, on this machine or on a Dask worker (:mod:`autograder.engine`). What comes back is a
transcript of plain data: the submission's replies as the undecoded bytes of the bounded channel.
:func:`score` decodes them here, size-checked, and judges them against the expected outputs, which
never leave this process. A submission never influences which tests run, how many points they carry,
or how they are compared; :meth:`Result.score_cells` is the one place where points are decided.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field

import nbformat

from autograder.case import Case
from autograder.judges import hidden_case
from autograder.messages import Msg, language
from autograder.channel import clean_text, decode, is_error
from autograder.course import Assignment, Draw
from autograder.submissions import Submission, content_address
from autograder.sandbox import Limits, Run, memory_error

STATUSES_WITHOUT_POINTS = ("invalid-notebook", "wrong-assignment")


# --------------------------------------------------------------------------- the result
@dataclass
class Result:
    """One submission's graded result (``results.json`` is :meth:`as_record`)."""

    student_id: str
    assignment: str
    submitted_file: str
    origin: str
    sha256: str
    submitted_at: str | None
    submitted_at_source: str | None
    earlier_attempts: int
    seed: int
    status: str = "ok"
    message: str | None = None
    score: float = 0.0
    max_score: float = 0.0
    tests: list[dict] = field(default_factory=list)
    graded_at: str = ""
    cell_errors: list[dict] = field(default_factory=list)
    output: str = ""
    output_bytes: int = 0
    seconds_executing: float | None = None
    seconds_per_case: dict[str, float] = field(default_factory=dict)
    sandbox: dict = field(default_factory=dict)
    language: str = "en"  # of the messages (autograder.messages); the feedback's labels follow it

    @classmethod
    def of(cls, sub: Submission, assignment: Assignment, seed: int) -> "Result":
        return cls(sub.student_id, assignment.name, sub.filename, sub.origin, sub.sha256, sub.submitted_at,
                   sub.time_source, len(sub.earlier), seed, max_score=assignment.max_score)

    @property
    def key(self) -> str:
        """The content address of what was graded: assignment/student/sha256."""
        return content_address(self.assignment, self.student_id, self.sha256)

    def score_cells(self, assignment: Assignment, outcomes: dict[str, dict], status: str,
                    message: str | None) -> "Result":
        """Points per test cell: all its cases passed, else 0 (nbgrader's rule). The only scoring rule.
        Messages become text in the language in use, each with its template and fields
        (``message_data``) to be written again in another language."""
        self.tests, self.score = [], 0.0
        for cell in assignment.cells:
            cases = [_as_text({"case": c, **outcomes.get(c, {"passed": False, "status": status,
                                                              "message": message or Msg("not run")})})
                     for c in cell.case_ids]
            passed = all(c["passed"] for c in cases) and status not in STATUSES_WITHOUT_POINTS
            points = cell.points if passed else 0.0
            self.score += points
            self.tests.append({"grade_id": cell.grade_id, "points": points, "max_points": cell.points,
                               "passed": passed, "cases": cases})
        self.status, self.message, self.max_score = status, None if message is None else str(message), assignment.max_score
        self.language = language()
        self.graded_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        return self

    def as_record(self) -> dict:
        record = asdict(self)
        if self.seconds_executing is None:
            del record["seconds_executing"]
        return record


def _as_text(outcome: dict) -> dict:
    message = outcome.get("message")
    if isinstance(message, Msg):
        outcome["message_data"] = message.as_data()
        outcome["message"] = clean_text(message, 500)
    return outcome


# --------------------------------------------------------------------------- reading a submission
class Rejected(Exception):
    """A submission graded without running it: `status` names why."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


MAX_CELLS = 2000
NBGRADER_KEYS = {"grade", "solution", "locked", "task", "grade_id", "points", "schema_version", "checksum", "cell_type"}


def parse(sub: Submission) -> nbformat.NotebookNode:
    """The submitted notebook, read only when small: at most 16 MiB (submissions.py) and MAX_CELLS cells."""
    if sub.problem:
        raise Rejected(sub.problem_status, sub.problem)
    try:
        raw = json.loads(sub.data.decode("utf-8"))
        if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list) or len(raw["cells"]) > MAX_CELLS:
            raise ValueError(f"not a notebook of at most {MAX_CELLS} cells")
        for cell in raw["cells"]:  # stored outputs are never graded nor shown: dropped unread, so a
            if isinstance(cell, dict):  # notebook padded with them costs no more to read than its code
                cell.pop("attachments", None)
                if "outputs" in cell:
                    cell["outputs"] = []
                if isinstance(cell.get("metadata"), dict):  # of its metadata only nbgrader's is read
                    nbg = cell["metadata"].get("nbgrader")
                    cell["metadata"] = {"nbgrader": _scalars(nbg, NBGRADER_KEYS)} if isinstance(nbg, dict) else {}
        if isinstance(raw.get("metadata"), dict):
            raw["metadata"] = {k: _scalars(v) for k, v in raw["metadata"].items()
                               if k in ("kernelspec", "language_info") and isinstance(v, dict)}
        nb = nbformat.reads(json.dumps(raw), as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # noqa: BLE001 -- any parse failure is the submission's problem
        raise Rejected("invalid-notebook", Msg("not a valid Jupyter notebook ({error})", error=type(exc).__name__)) from None
    return nb


def _scalars(d: dict, keys=None) -> dict:
    return {k: v for k, v in d.items() if (keys is None or k in keys)
            and (v is None or isinstance(v, (str, int, float, bool)))}


def runnable_cells(nb, assignment: Assignment) -> list[tuple[int, str]]:
    """The submission's code cells minus test cells (those come from the source, never from here).

    Cells after the last test cell are left out: as nbgrader runs a notebook top to bottom, nothing
    there can change an autograded score (typically a slow demo for a written answer).
    """
    test_ids = {c.grade_id for c in assignment.cells}
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    if set(ids) - {None} and not set(ids) & assignment.grade_ids:
        raise Rejected("wrong-assignment",
                       Msg("this notebook's cells belong to another assignment, not {assignment}",
                           assignment=repr(assignment.name)))
    last = max((i for i, gid in enumerate(ids) if gid in test_ids), default=len(ids))
    out = []
    for index, cell in enumerate(nb.cells[:last]):
        meta = cell.metadata.get("nbgrader", {})
        is_test = (meta.get("grade") and not meta.get("solution")) or meta.get("grade_id") in test_ids
        if cell.cell_type == "code" and not is_test and isinstance(cell.source, str):
            out.append((index, cell.source))
    return out


def calls(assignment: Assignment, drawn: Draw) -> list[tuple[str, str, dict, float]]:
    """(case id, driver, inputs, timeout) in the order the test cells name them: what a sandbox runs."""
    order = dict.fromkeys(c for cell in assignment.cells for c in cell.case_ids)
    return [(c, assignment.cases[c].driver, drawn.inputs[c], assignment.cases[c].timeout) for c in order]


# --------------------------------------------------------------------------- judging
def judge(case: Case, inputs, outputs, expected) -> Msg | None:
    """The case's judge, in this trusted process; a judge tripping on odd data is a failure."""
    with hidden_case(not case.visible):       # the error path's message obeys the hidden rule too
        try:
            return case.judge(inputs, outputs, expected)
        except Exception as exc:  # noqa: BLE001 -- malformed student output
            return Msg("returned data of an unexpected form ({error}: {message})", error=type(exc).__name__,
                       message=exc)


def credited(outcomes: dict[str, dict], cases: dict[str, Case]) -> dict[str, dict]:
    """A case that requires others (see Case.requires) passes only when they pass too."""
    out = dict(outcomes)
    for case_id, outcome in outcomes.items():
        missing = [r for r in cases[case_id].requires if not outcomes.get(r, {}).get("passed")]
        if outcome.get("passed") and missing:
            out[case_id] = {"passed": False, "status": "fail",
                            "message": Msg("not credited: how a function behaves (arguments left unchanged, "
                                           "errors raised) counts only together with its correct values, "
                                           "and {cases} did not pass", cases=", ".join(missing))}
    return out


def _outcome(case: Case, inputs, output, expected) -> dict:
    if is_error(output) and memory_error(output) or isinstance(output, dict) and memory_error(output.get("error")):
        return {"passed": False, "status": "memory", "message": Msg("memory limit exceeded")}
    if not case.visible:  # an exception's message is the student's text: it can carry hidden inputs
        output = _without_messages(output)
    if is_error(output):  # the driver itself failed (e.g. unsendable result)
        text = Msg("{error}: {message}", error=output["__error__"], message=output["message"]) if case.visible else \
            Msg("an exception while running the case (its type and message are not shown for a hidden case)")
        return {"passed": False, "status": "error", "message": text}
    verdict = judge(case, inputs, output, expected)
    return {"passed": verdict is None, "status": "pass" if verdict is None else "fail",
            "message": None if verdict is None else verdict if isinstance(verdict, Msg) else clean_text(verdict, 500)}


HIDDEN_MESSAGE = "(its message is not shown for a hidden case)"


def _without_messages(value):
    """`value` with the message of every error marker in it replaced (the type is kept)."""
    if is_error(value):
        return {**value, "message": HIDDEN_MESSAGE if value.get("message") else ""}
    if isinstance(value, dict):
        return {k: _without_messages(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_messages(v) for v in value]
    return value


def _cell_errors(value) -> list[dict]:
    """The child's report of cells that raised, kept only in the expected shape."""
    ok = lambda e: (isinstance(e, dict) and type(e.get("cell")) is int and is_error(e.get("error"))  # noqa: E731
                    and all(isinstance(v, str) for v in e["error"].values()))
    return [{"cell": e["cell"], "error": dict(e["error"])} for e in value if ok(e)][:50] \
        if isinstance(value, list) else []


class _Invalid(Exception):
    pass


def _decoded(raw, limits: Limits):
    """A reply's bytes as the channel decodes them, size-checked here whoever read them first."""
    if not isinstance(raw, bytes) or len(raw) > limits.max_message:
        raise _Invalid(Msg("sent a reply the grader does not understand"))
    try:
        return decode(raw, limits.max_message)
    except ValueError as exc:
        raise _Invalid(Msg("sent something that is not plain data ({error})", error=exc)) from None


def _seconds(value) -> float:
    return round(float(value), 3) if isinstance(value, (int, float)) else 0.0


# --------------------------------------------------------------------------- scoring
def reject(sub: Submission, assignment: Assignment, drawn: Draw, exc: Rejected) -> Result:
    return Result.of(sub, assignment, drawn.seed).score_cells(assignment, {}, exc.status,
                                                               exc.args[0] if isinstance(exc.args[0], Msg) else str(exc))


def failed(sub: Submission, assignment: Assignment, drawn: Draw, status: str, message: str) -> Result:
    return Result.of(sub, assignment, drawn.seed).score_cells(assignment, {}, status, clean_text(message))


def score(sub: Submission, assignment: Assignment, drawn: Draw, transcript: dict, limits: Limits) -> Result:
    """Replay a sandbox's transcript (see :func:`autograder.engine.execute`): decode each reply,
    judge it against the expected outputs, and score the cells."""
    result = Result.of(sub, assignment, drawn.seed)
    pending = [c for c, *_ in calls(assignment, drawn)]
    outcomes: dict[str, dict] = {}
    status, message = "ok", None

    def fail_rest(case_status: str, text: str) -> None:
        for case_id in pending:
            outcomes[case_id] = {"passed": False, "status": case_status, "message": text}
        pending.clear()

    def problem(case_status: str, text: str) -> None:
        nonlocal status, message
        if status == "ok":
            status, message = case_status, text

    used = 0  # the transcript's reply bytes: checked again here, whoever read them first
    for event in transcript["events"]:
        kind = event[0]
        if kind in ("executed", "reply"):
            used += len(event[-1]) if isinstance(event[-1], bytes) else 0
            if used > limits.max_transcript:
                event = ["stopped", "output-limit", Msg("sent more than {count} bytes of replies in all (the "
                                                        "limit per submission)", count=limits.max_transcript)]
                kind = "stopped"
        if kind == "executed":  # ["executed", seconds, info bytes]
            result.seconds_executing = _seconds(event[1])
            try:
                info = _decoded(event[2], limits)
            except _Invalid as exc:
                info = None
                problem("invalid-reply", Msg("{problem} while executing the notebook", problem=exc.args[0]))
            result.cell_errors = _cell_errors(info.get("cell_errors") if isinstance(info, dict) else None)
        elif kind == "reply" and pending:  # ["reply", case id, seconds, reply bytes]
            case_id = pending.pop(0)
            case = assignment.cases[case_id]
            result.seconds_per_case[case_id] = _seconds(event[2])
            try:
                reply = _decoded(event[3], limits)
                if not isinstance(reply, dict) or "output" not in reply:
                    raise _Invalid(Msg("sent a reply the grader does not understand"))
            except _Invalid as exc:
                text = Msg("{problem} while running {case}", problem=exc.args[0], case=case_id)
                outcomes[case_id] = {"passed": False, "status": "invalid-reply", "message": text}
                problem("invalid-reply", text)
                continue
            outcomes[case_id] = _outcome(case, drawn.inputs[case_id], reply["output"], drawn.expected[case_id])
            if outcomes[case_id]["status"] == "memory":
                problem("memory", Msg("memory limit exceeded"))
        elif kind == "error":  # ["error", executed, status, text]: a limit hit or the process died
            case_status, text = clean_text(event[2], 40), clean_text(event[3], 500)
            if not event[1]:
                fail_rest(case_status, Msg("not run: {why}", why=text))  # the notebook itself never finished
            elif pending:
                outcomes[pending.pop(0)] = {"passed": False, "status": case_status, "message": text}
            problem(case_status, text)
        elif kind == "closed":  # ["closed", how the process ended]
            if status == "crashed" and message and not message.endswith(")"):
                message = f"{message} ({clean_text(event[1], 200)})"
        elif kind == "stopped":  # ["stopped", status, text]: the transcript's budget is used up
            case_status = clean_text(event[1], 40)
            text = event[2] if isinstance(event[2], Msg) else clean_text(event[2], 500)
            fail_rest(case_status, Msg("not run: {why}", why=text))
            problem(case_status, text)
            break
        elif kind == "timeout":
            fail_rest("timeout", Msg("not run: the submission's time limit was used up"))
            problem("timeout", Msg("time limit exceeded"))
    if pending:  # a transcript that stops early: never credit what did not run
        fail_rest("grader-error", Msg("not run: the grading engine returned no reply for it"))
        problem("grader-error", Msg("the grading engine's transcript ended early"))
    output = transcript.get("output", b"")
    result.output = clean_text(output[:Run.OUTPUT_KEPT].decode("utf-8", "replace")
                               if isinstance(output, bytes) else "", Run.OUTPUT_KEPT)
    result.output_bytes = int(transcript.get("output_bytes") or 0)
    return result.score_cells(assignment, credited(outcomes, assignment.cases), status, message)
