"""What grading leaves behind: results, feedback, grades.csv, the journal and nbgrader's gradebook.

Per submission, in ``OUT/students/<student>/`` (apart from the grader's own files in ``OUT``): ``submitted/<name>`` (the bytes as received),
``results.json`` (points and message per test) and ``feedback.html``; a line in ``OUT/.journal``
(so a killed run resumes without regrading); and in the course's nbgrader area the gradebook
scores plus ``autograded/<student>/<assignment>/<notebook>.ipynb``, so that ``nbgrader
generate_feedback``, ``export`` and formgrader see the same grades. Test cells in that notebook are
the released versions (hidden tests removed), with the grader's message as their output.
"""
from __future__ import annotations

import copy
import csv
import datetime as dt
import functools
import html
import json
import os
import sys
import warnings
from pathlib import Path

import nbformat

from autograder import messages
from autograder.channel import clean_text
from autograder.course import nbgrader_config
from autograder.messages import Msg
from autograder.submissions import Submission, content_address, student_id

# score/max_score: the autograded points this grader decides. manual_*: the hand-graded points (e.g.
# a written answer) from nbgrader's gradebook, empty until graded in formgrader. late_penalty: what
# nbgrader's late-penalty plugin took (gradebook). total: score + manual - penalty, as `nbgrader export`.
CSV_FIELDS = ["student_id", "assignment", "score", "max_score", "status", "message", "sha256",
              "submitted_at", "graded_at", "manual_score", "manual_max_score", "seconds_late",
              "late_penalty", "total_score", "total_max_score"]
UNSANDBOXED = ("Graded WITHOUT the sandbox (--allow-unsandboxed): the submission ran with the "
               "grader's own permissions.")


def student_dir(out: Path, student_id: str) -> Path:
    """A student's folder: under OUT/students/, where no id can meet the grader's own files."""
    return out / "students" / student_id


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- journal
# A result the grader or its engine caused (the submission may be fine): never done, a rerun regrades it.
NOT_FINAL = frozenset({"grader-error"})


class Journal:
    """Append-only record of finished submissions, one line each: ``{"key", "student_id", "sha256"}``
    with the content address ``assignment/student/sha256``, so a rerun skips what is done. Only
    results the submission itself decided are done (not those of :data:`NOT_FINAL`)."""

    def __init__(self, out: Path, gradebook: bool = True):
        self.path, self.gradebook = out / ".journal", gradebook
        self.done: dict[str, tuple[str, bool]] = {}   # student -> (sha256, recorded in the gradebook)
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.done[entry["student_id"]] = (entry["sha256"], entry.get("gradebook") is True)
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a kill

    def is_done(self, sub: Submission, out: Path) -> bool:
        """Journaled (in the gradebook too, when this run writes one), and the student's recorded
        result is this submission's own and final (a later failure of another version, or a kill
        between the two writes, leaves it otherwise)."""
        sha, in_gradebook = self.done.get(sub.student_id, (None, False))
        if sha != sub.sha256 or (self.gradebook and not in_gradebook):
            return False
        try:
            recorded = json.loads((student_dir(out, sub.student_id) / "results.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(recorded, dict) and recorded.get("sha256") == sub.sha256 \
            and recorded.get("status") not in NOT_FINAL

    def add(self, result: dict) -> None:
        if result.get("status") in NOT_FINAL:
            self.done.pop(result["student_id"], None)
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": content_address(result["assignment"], result["student_id"], result["sha256"]),
                                 "student_id": result["student_id"], "sha256": result["sha256"],
                                 "gradebook": self.gradebook}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.done[result["student_id"]] = (result["sha256"], self.gradebook)


# --------------------------------------------------------------------------- files per submission
def keep_submitted(out: Path, sub: Submission) -> None:
    """The submitted bytes (and earlier attempts found with them), unchanged, before anything else."""
    folder = student_dir(out, sub.student_id) / "submitted"
    folder.mkdir(parents=True, exist_ok=True)
    if sub.problem_status != "duplicate-id":   # its bytes are a placeholder; the real ones follow
        _atomic_write(folder / (student_id(Path(sub.filename).stem) + ".ipynb"), sub.data)
    for n, (name, data, _) in enumerate(sub.earlier, 1):
        _atomic_write(folder / f"attempt-{n}-{student_id(Path(name).stem)}.ipynb", data)


FEEDBACK_CSS = """body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;width:100%} td,th{padding:.3em .6em;border-bottom:1px solid #ddd;
vertical-align:top;overflow-wrap:anywhere} td:nth-child(2),th:nth-child(2){white-space:nowrap}
td ul{margin:0;padding-left:1.2em} tr.pass td:first-child{color:#176}
tr.fail td:first-child{color:#a22} .warn{background:#fee;padding:.5em} pre{background:#f6f6f6;
padding:.5em;white-space:pre-wrap}"""


def feedback_language(result: dict, language: str | None = None) -> str:
    """The feedback's language: `language` when given, else the one its messages were made in (English
    if that is one the autograder no longer has)."""
    if language is not None:
        return messages.check_language(language)
    try:
        return messages.check_language(result.get("language") or messages.DEFAULT)
    except messages.UnknownLanguage:
        return messages.DEFAULT


def feedback_html(result: dict, language: str | None = None, assignment: Path | None = None) -> str:
    """A whole page (see :func:`feedback_body`)."""
    lang = feedback_language(result, language)
    with messages.using(lang):
        title = Msg("Feedback: {assignment}", assignment=result["assignment"])
    return f"""<!DOCTYPE html>
<html lang="{lang.replace('_', '-')}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>
<style>{FEEDBACK_CSS}</style></head><body>
<h1>{html.escape(result['assignment'])} — {html.escape(result['student_id'])}</h1>
{feedback_body(result, lang, assignment)}</body></html>
"""


def feedback_body(result: dict, language: str | None = None, assignment: Path | None = None) -> str:
    """The feedback itself, every value from the result escaped: points, each test cell's verdict with
    the failed cases' messages, errors while running, the start of the notebook's output.

    In `language` (default: the one the result's messages were made in); in another one, each message
    is written again from its template and fields, the assignment's mistakes from the catalog beside
    its cases (`assignment`: its source folder, solutions/<a>/)."""
    lang = feedback_language(result, language)
    with messages.using(lang, assignment):
        return _feedback_body(result, lang != feedback_language(result))


def _case_message(case: dict, again: bool) -> str:
    """A case's message as recorded, or made again in the language in use."""
    data = case.get("message_data")
    if again and data is not None:
        try:
            return clean_text(messages.from_data(data), 500)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            pass  # a record written otherwise: its message as it is
    return case["message"] or case["status"]


def _feedback_body(result: dict, again: bool) -> str:
    e = html.escape
    rows = []
    for t in result["tests"]:
        notes = "".join(f"<li><code>{e(c['case'])}</code>: {e(_case_message(c, again))}</li>"
                        for c in t["cases"] if not c["passed"])
        rows.append(f"<tr class=\"{'pass' if t['passed'] else 'fail'}\"><td>{e(t['grade_id'])}</td>"
                    f"<td>{t['points']:g} / {t['max_points']:g}</td>"
                    f"<td>{e(Msg('passed')) if t['passed'] else '<ul>' + notes + '</ul>'}</td></tr>")
    warning = "" if result.get("sandbox", {}).get("enabled", True) else f"<p class=\"warn\">{e(Msg(UNSANDBOXED))}</p>"
    status = "" if result["status"] == "ok" else \
        f"<p><strong>{e(Msg('Status: {status}', status=result['status']))}</strong> — {e(result.get('message') or '')}</p>"
    errors = "".join(f"<li>{e(Msg('cell {number}', number=c['cell']))}: {e(c['error']['__error__'])}: "
                     f"{e(c['error']['message'][:300])}</li>" for c in result.get("cell_errors", []))
    errors = f"<h2>{e(Msg('Errors while running your notebook'))}</h2><ul>{errors}</ul>" if errors else ""
    output = result.get("output") or ""
    heading = Msg("Your notebook's output (first part)")
    output = f"<h2>{e(heading)}</h2><pre>{e(output[:5000])}</pre>" if output.strip() else ""
    return f"""{warning}{_points_html(result)}{status}
<table><tr><th>{e(Msg('Test'))}</th><th>{e(Msg('Points'))}</th><th>{e(Msg('Result'))}</th></tr>{''.join(rows)}</table>
{errors}{output}"""


def _points_html(result: dict) -> str:
    """Autograded points, hand-graded points and the late penalty, each on its own line. Templates
    hold markup-free text; fields are escaped here (the <strong> around points is ours)."""
    e = html.escape
    strong = lambda text: f"<strong>{text}</strong>"  # noqa: E731
    lines = [Msg("Score: {points} in the autograded tests (graded {time})",
                 points=strong(f"{result['score']:g} / {result['max_score']:g}"), time=e(result["graded_at"]))]
    nb = result.get("nbgrader") or {}
    if nb.get("manual_max_score"):
        manual = nb.get("manual_score")
        lines.append(Msg("Hand-graded answers: {points}", points=strong(f"{manual:g} / {nb['manual_max_score']:g}"))
                     if manual is not None else
                     Msg("Hand-graded answers: not graded yet (out of {points}; your instructor grades them by hand)",
                         points=f"{nb['manual_max_score']:g}"))
    if nb.get("seconds_late"):
        lines.append(Msg("Submitted {duration} after the deadline ({due} UTC): late penalty {penalty}",
                         duration=e(_duration(nb["seconds_late"])), due=e(nb.get("duedate") or ""),
                         penalty=strong(f"&minus;{nb.get('late_penalty') or 0:g}")))
    total = total_points(result)
    points = strong(f"{total[0]:g} / {total[1]:g}")
    lines.append(Msg("Total: {points} so far", points=points)
                 if nb.get("manual_max_score") and nb.get("manual_score") is None else Msg("Total: {points}", points=points))
    return f"<ul class=\"points\">{''.join(f'<li>{line}</li>' for line in lines)}</ul>"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    units = {"day": (Msg("{n} day", n=days), Msg("{n} days", n=days)),
             "hour": (Msg("{n} hour", n=hours), Msg("{n} hours", n=hours)),
             "minute": (Msg("{n} minute", n=minutes), Msg("{n} minutes", n=minutes)),
             "second": (Msg("{n} second", n=secs), Msg("{n} seconds", n=secs))}
    parts = [units[unit][n != 1] for n, unit in ((days, "day"), (hours, "hour"), (minutes, "minute"), (secs, "second"))
             if n]
    if len(parts) >= 2:
        return Msg("{larger}, {smaller}", larger=parts[0], smaller=parts[1])
    return parts[0] if parts else Msg("{n} seconds", n=0)


def total_points(result: dict) -> tuple[float, float]:
    """(score, max) as `nbgrader export` counts them: autograded + hand-graded - late penalty."""
    nb = result.get("nbgrader") or {}
    score = float(result.get("score") or 0) + float(nb.get("manual_score") or 0)
    score = max(0.0, score - float(nb.get("late_penalty") or 0))
    return score, float(result.get("max_score") or 0) + float(nb.get("manual_max_score") or 0)


# --------------------------------------------------------------------------- nbgrader
def gradebook_path(root: Path) -> Path:
    return Path(root) / "gradebook.db"


class Gradebook:
    """The course's nbgrader gradebook, written the way ``nbgrader autograde`` writes it."""

    def __init__(self, assignment):
        from nbgrader.api import Gradebook as NbGradebook
        # nbgrader runs the `alembic` script of its environment: make sure it is found
        bindir = str(Path(sys.executable).parent)
        if bindir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = os.pathsep.join([bindir, os.environ.get("PATH", "")])
        self.a = assignment
        self.url = f"sqlite:///{gradebook_path(assignment.root)}"
        warnings.filterwarnings("ignore", module="nbgrader.api")  # SQLAlchemy autoflush chatter
        self.gb = NbGradebook(self.url)
        self.notebook = assignment.source.stem
        self._ensure_assignment()

    def _ensure_assignment(self) -> None:
        """Save the source notebook's cells as ``nbgrader generate_assignment`` does, if missing."""
        from nbgrader.api import MissingEntry
        try:
            nb = self.gb.find_notebook(self.notebook, self.a.name)
            if {c.name for c in nb.grade_cells} >= {c.grade_id for c in self.a.cells}:
                return
        except MissingEntry:
            pass
        from nbgrader.preprocessors import ClearSolutions, ComputeChecksums, SaveCells
        nb = copy.deepcopy(self.a.notebook)
        resources = {"nbgrader": {"notebook": self.notebook, "assignment": self.a.name,
                                  "db_url": self.url}, "language": "python"}
        self.gb.update_or_create_assignment(self.a.name)
        for pp in (ClearSolutions(), ComputeChecksums(), SaveCells()):
            nb, resources = pp.preprocess(nb, resources)

    def record(self, result: dict, sub_nb=None) -> dict:
        """What ``nbgrader autograde`` records, from our verdicts: the student, the submission with its
        own time (so late flags and late-penalty plugins judge when the student submitted, not when
        grading ran; a per-student extension in the gradebook is kept), each test cell's auto score,
        the hand-graded cells (0 when left unanswered, else waiting for a grader), the "No response."
        comments, and the configured late-penalty plugin's penalty. Returns what the gradebook now
        holds for this student (hand-graded points, lateness, penalty) for results.json."""
        from nbgrader.api import TaskCell
        student = result["student_id"]
        self.gb.update_or_create_student(student)
        when = dt.datetime.fromisoformat(result.get("submitted_at") or result["graded_at"])
        when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
        submission = self.gb.update_or_create_submission(self.a.name, student, timestamp=when)
        ours = {t["grade_id"]: t for t in result["tests"]}
        answered = _answered_cells(sub_nb, self.a)
        notebook = self.gb.find_submission_notebook(self.notebook, self.a.name, student)
        for grade in notebook.grades:
            if grade.name in ours:
                grade.auto_score = ours[grade.name]["points"]
            else:  # graded by hand: as nbgrader's determine_grade, 0 when the answer is untouched
                grade.auto_score = None if grade.name in answered else 0.0
            # nbgrader's rule: an earlier manual grade, or no auto score, needs a grader's look
            grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
        for comment in notebook.comments:
            untouched = comment.name not in answered and not isinstance(comment.cell, TaskCell)
            comment.auto_comment = "No response." if untouched else None
        self.gb.db.commit()
        self._late_penalty(submission, notebook, student)
        return self.state(student, set(ours))

    def state(self, student: str, autograded: set) -> dict:
        """What the gradebook holds now for this student: time, due date (with the student's
        extension), lateness, the late penalty and the hand-graded points (None while any of them is
        still waiting for a grader)."""
        submission = self.gb.find_submission(self.a.name, student)
        notebook = self.gb.find_submission_notebook(self.notebook, self.a.name, student)
        manual = [g for g in notebook.grades if g.name not in autograded]
        pending = any(g.manual_score is None and g.needs_manual_grade for g in manual)
        return {"timestamp": submission.timestamp.isoformat() + "+00:00" if submission.timestamp else None,
                "duedate": submission.duedate.isoformat() if submission.duedate else None,
                "extension_seconds": submission.extension.total_seconds() if submission.extension else None,
                "seconds_late": submission.total_seconds_late,
                "late_penalty": notebook.late_submission_penalty,
                "manual_max_score": sum(g.max_score for g in manual),
                "manual_score": None if pending else sum(g.score or 0.0 for g in manual)}

    def _late_penalty(self, submission, notebook, student: str) -> float | None:
        """nbgrader's AssignLatePenalties, with the plugin configured for the course."""
        notebook.late_submission_penalty = None
        seconds = submission.total_seconds_late
        if seconds > 0:
            penalty = self.plugin.late_submission_penalty(student, notebook.score, seconds)
            if penalty is not None:
                penalty = min(max(float(penalty), 0.0), notebook.score)
                notebook.late_submission_penalty = penalty
        self.gb.db.commit()
        return notebook.late_submission_penalty

    @functools.cached_property
    def plugin(self):
        from nbgrader.preprocessors import AssignLatePenalties
        pp = AssignLatePenalties(config=nbgrader_config(self.a.root))
        pp.init_plugin()
        return pp.plugin_inst

    def close(self) -> None:
        self.gb.close()


def _answered_cells(sub_nb, assignment) -> set:
    """grade_ids of the submission's solution/task cells that differ from the released stub."""
    if sub_nb is None:
        return set()
    stubs = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in assignment.stubs.cells}
    return {gid for c in sub_nb.cells
            if (gid := c.get("metadata", {}).get("nbgrader", {}).get("grade_id")) in stubs
            and isinstance(c.get("source"), str) and c.source != stubs[gid]}


def autograded_notebook(sub_nb, assignment, result: dict):
    """The submission with every test cell replaced by its released version and our verdict.

    Nothing the submission stored is rendered in an instructor's browser: its outputs and attachments
    are dropped and raw HTML in its markdown is shown as text."""
    with messages.using(feedback_language(result)):
        return _autograded_notebook(sub_nb, assignment, result)


def _autograded_notebook(sub_nb, assignment, result: dict):
    released = assignment.released
    tests = {t["grade_id"]: t for t in result["tests"]}
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in released.cells}
    nb = copy.deepcopy(sub_nb) if sub_nb is not None else copy.deepcopy(released)
    seen = set()
    for i, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        gid = meta.get("grade_id") if isinstance(meta, dict) else None
        if gid in tests and gid not in seen:
            nb.cells[i] = _verdict_cell(by_id[gid], tests[gid])
            seen.add(gid)
            continue
        _defuse(cell)
        # as nbgrader's OverwriteCells: a known cell's nbgrader metadata comes from the source, once;
        # an unknown or repeated one is plain content (else generate_feedback/formgrader stop on it).
        # Nothing else of the student's metadata is kept.
        cell.metadata = nbformat.NotebookNode()
        if isinstance(gid, str) and gid in by_id and gid not in seen and gid not in tests:
            cell.metadata["nbgrader"] = copy.deepcopy(by_id[gid].metadata["nbgrader"])
            seen.add(gid)
    nb.cells += [_verdict_cell(by_id[g], t) for g, t in tests.items() if g not in seen]
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")}
    return nb


MARKUP = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "[": "&#91;", "]": "&#93;"})


def _defuse(cell) -> None:
    """A student's cell as inert text: no outputs or attachments; in markdown no HTML and no links
    (brackets become entities, so no `[x](javascript:...)` survives)."""
    cell.pop("attachments", None)
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    elif cell.cell_type in ("markdown", "raw"):
        cell.source = cell.source.translate(MARKUP)


def _verdict_cell(cell, test: dict):
    cell = copy.deepcopy(cell)
    lines = [f"{c['case']}: {Msg('passed') if c['passed'] else c['message'] or c['status']}" for c in test["cases"]]
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout" if test["passed"] else "stderr",
                                           text="\n".join(lines) + "\n")]
    cell.execution_count = None
    return cell


# --------------------------------------------------------------------------- the recorder
class Recorder:
    """Writes everything for one finished submission; used from the main thread only."""

    def __init__(self, out: Path, assignment, gradebook: bool = True):
        self.out, self.a = out, assignment
        self.journal = Journal(out, gradebook)
        self.gradebook = Gradebook(assignment) if gradebook else None

    def save(self, sub: Submission, result, sub_nb=None) -> None:
        """Everything for one submission's :class:`~autograder.scoring.Result` (scored already); a
        failure here is that student's recorded error."""
        result = result.as_record()
        try:
            self._save(sub, result, sub_nb)
        except Exception as exc:  # noqa: BLE001 -- one student's record never stops the run
            error = {**{k: result.get(k) for k in ("student_id", "assignment", "sha256", "submitted_at",
                                                  "max_score", "graded_at")},
                     "score": 0.0, "status": "grader-error", "tests": [],
                     "message": clean_text(f"could not record this submission ({type(exc).__name__}: {exc})")}
            folder = student_dir(self.out, sub.student_id)
            folder.mkdir(parents=True, exist_ok=True)
            _atomic_write(folder / "results.json", json.dumps(error, indent=1, ensure_ascii=True).encode())
            self.journal.add(error)

    def _save(self, sub: Submission, result: dict, sub_nb) -> None:
        folder = student_dir(self.out, sub.student_id)
        folder.mkdir(parents=True, exist_ok=True)
        if self.gradebook is not None:
            # what `nbgrader autograde` leaves: autograded/<student>/<assignment>/ with the notebook and
            # nbgrader's own files exactly as submitted (release/fetch_feedback find the student's
            # feedback through submission_secret.txt), files read-only as nbgrader sets them
            target = self.a.root / "autograded" / sub.student_id / self.a.name
            target.mkdir(parents=True, exist_ok=True)
            files = dict(sub.nbgrader_files)
            if "timestamp.txt" not in files:  # no nbgrader submit: the best evidence we have
                when = dt.datetime.fromisoformat(result.get("submitted_at") or result["graded_at"])
                files["timestamp.txt"] = when.astimezone(dt.timezone.utc).strftime(
                    "%Y-%m-%d %H:%M:%S.%f %Z").encode()
            files[f"{self.a.source.stem}.ipynb"] = nbformat.writes(
                autograded_notebook(sub_nb, self.a, result)).encode()
            for name, data in files.items():
                _atomic_write(target / name, data)
                os.chmod(target / name, 0o444)
            result["nbgrader"] = self.gradebook.record(result, sub_nb)
        _keep_earlier_result(folder, result["sha256"])
        _atomic_write(folder / "results.json",
                      json.dumps(result, indent=1, default=float, ensure_ascii=True).encode())
        _atomic_write(folder / "feedback.html", feedback_html(result).encode())
        self.journal.add(result)

    def close(self) -> None:
        if self.gradebook is not None:
            self.gradebook.close()


def give_to_course_owner(root: Path, paths) -> None:
    """Run as root (``sudo``) on a course someone else owns, hand what we wrote inside the course back
    to that owner, so nbgrader's own commands, run as the instructor, can update and remove it."""
    root = Path(root).resolve()
    try:
        owner = root.stat()
    except OSError:
        return
    if os.geteuid() != 0 or owner.st_uid == 0:
        return
    for top in paths:
        top = Path(top)
        if top.is_symlink() or not top.exists() or not top.resolve().is_relative_to(root):
            continue
        # every folder between the course and `top` that we may have made, then all below it
        for parent in [*reversed(top.relative_to(root).parents[:-1]), top.relative_to(root)]:
            here = root / parent
            if here.stat().st_uid == 0:
                os.chown(here, owner.st_uid, owner.st_gid, follow_symlinks=False)
        for folder, dirs, files in os.walk(top):
            for name in [".", *dirs, *files]:
                path = os.path.join(folder, name)
                if os.lstat(path).st_uid == 0:
                    os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)
    if gradebook_path(root).exists() and gradebook_path(root).stat().st_uid == 0:
        os.chown(gradebook_path(root), owner.st_uid, owner.st_gid, follow_symlinks=False)


def refresh(out: Path, assignment, language: str | None = None) -> int:
    """After hand grading in formgrader (or a changed due date/extension): each student's results.json
    and feedback.html take the gradebook's hand-graded points and late penalty; the feedback is written
    in `language` (default: its messages' own). Returns how many."""
    gradebook, n = Gradebook(assignment), 0
    try:
        for path in sorted((out / "students").glob("*/results.json")):
            try:
                result = json.loads(path.read_text(encoding="utf-8"))
                result["nbgrader"] = gradebook.state(result["student_id"], {t["grade_id"] for t in result["tests"]})
            except Exception:  # noqa: BLE001 -- not in the gradebook (e.g. --no-gradebook): left as it is
                continue
            _atomic_write(path, json.dumps(result, indent=1, default=float, ensure_ascii=True).encode())
            _atomic_write(path.with_name("feedback.html"),
                          feedback_html(result, language, assignment.source.parent).encode())
            n += 1
    finally:
        gradebook.close()
    return n


def _keep_earlier_result(folder: Path, sha256: str) -> None:
    """A different, earlier submission's results move to attempts/<sha>/ instead of being overwritten."""
    previous = folder / "results.json"
    try:
        old_sha = json.loads(previous.read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError, AttributeError):
        return
    if old_sha and old_sha != sha256:
        keep = folder / "attempts" / str(old_sha)[:16]
        keep.mkdir(parents=True, exist_ok=True)
        for name in ("results.json", "feedback.html"):
            if (folder / name).exists():
                os.replace(folder / name, keep / name)


def write_csv(out: Path) -> list[dict]:
    """grades.csv from every results.json under `out` (this run's and earlier ones); a results file
    that cannot be read becomes a row saying so."""
    rows = []
    for path in sorted((out / "students").glob("*/results.json")):
        try:
            r = json.loads(path.read_text(encoding="utf-8"))
            row = {k: r.get(k) for k in CSV_FIELDS}
            row["score"], row["max_score"] = float(row["score"]), float(row["max_score"] or 0)
            nb = r.get("nbgrader") or {}
            row.update({k: nb.get(k) for k in ("manual_score", "manual_max_score", "seconds_late", "late_penalty")})
            row["total_score"], row["total_max_score"] = total_points(r)
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            row = {k: None for k in CSV_FIELDS} | {"student_id": path.parent.name, "score": 0.0,
                                                  "max_score": 0.0, "status": "grader-error",
                                                  "message": f"results.json unreadable ({type(exc).__name__})"}
        rows.append({k: clean_text(v, 500) if isinstance(v, str) else v for k, v in row.items()})
    tmp = out / ".grades.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.15g}" if isinstance(v, float) else v for k, v in row.items()})
    os.replace(tmp, out / "grades.csv")
    return rows
