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

from autograder.channel import clean_text
from autograder.inputs import Submission, student_id

CSV_FIELDS = ["student_id", "assignment", "score", "max_score", "status", "message", "sha256",
              "submitted_at", "graded_at"]
UNSANDBOXED = ("Graded WITHOUT the sandbox (--allow-unsandboxed): the submission ran with the "
               "grader's own permissions.")


# --------------------------------------------------------------------------- the result record
def new_result(sub: Submission, assignment) -> dict:
    return {"student_id": sub.student_id, "assignment": assignment.name, "submitted_file": sub.filename,
            "origin": sub.origin, "sha256": sub.sha256, "submitted_at": sub.submitted_at,
            "submitted_at_source": sub.time_source, "earlier_attempts": len(sub.earlier),
            "seed": assignment.seed, "cell_errors": [], "output": "", "output_bytes": 0}


def student_dir(out: Path, student_id: str) -> Path:
    """A student's folder: under OUT/students/, where no id can meet the grader's own files."""
    return out / "students" / student_id


def finish(result: dict, assignment, outcomes: dict, status: str, message: str | None) -> dict:
    """Points per test cell: all its cases passed, else 0 (nbgrader's rule)."""
    tests, score = [], 0.0
    for cell in assignment.cells:
        cases = [{"case": c, **outcomes.get(c, {"passed": False, "status": status,
                                                  "message": message or "not run"})}
                 for c in cell.case_ids]
        passed = all(c["passed"] for c in cases)
        points = cell.points if passed else 0.0
        score += points
        tests.append({"grade_id": cell.grade_id, "points": points, "max_points": cell.points,
                      "passed": passed, "cases": cases})
    if status in ("invalid-notebook", "wrong-assignment"):
        score = 0.0
        for t in tests:
            t["points"], t["passed"] = 0.0, False
    result.update(status=status, message=message, score=score, max_score=assignment.max_score,
                  tests=tests, graded_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    return result


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- journal
class Journal:
    """Append-only record of finished submissions: ``{"student_id", "sha256"}`` per line."""

    def __init__(self, out: Path):
        self.path = out / ".journal"
        self.done: dict[str, str] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.done[entry["student_id"]] = entry["sha256"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a kill

    def is_done(self, sub: Submission, out: Path) -> bool:
        return self.done.get(sub.student_id) == sub.sha256 and \
            (student_dir(out, sub.student_id) / "results.json").exists()

    def add(self, result: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"student_id": result["student_id"], "sha256": result["sha256"]}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.done[result["student_id"]] = result["sha256"]


# --------------------------------------------------------------------------- files per submission
def keep_submitted(out: Path, sub: Submission) -> None:
    """The submitted bytes (and earlier attempts found with them), unchanged, before anything else."""
    folder = student_dir(out, sub.student_id) / "submitted"
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(folder / (student_id(Path(sub.filename).stem) + ".ipynb"), sub.data)
    for n, (name, data, _) in enumerate(sub.earlier, 1):
        _atomic_write(folder / f"attempt-{n}-{student_id(Path(name).stem)}.ipynb", data)


def feedback_html(result: dict) -> str:
    e = html.escape
    rows = []
    for t in result["tests"]:
        notes = "".join(f"<li><code>{e(c['case'])}</code>: {e(c['message'] or c['status'])}</li>"
                        for c in t["cases"] if not c["passed"])
        rows.append(f"<tr class=\"{'pass' if t['passed'] else 'fail'}\"><td>{e(t['grade_id'])}</td>"
                    f"<td>{t['points']:g} / {t['max_points']:g}</td>"
                    f"<td>{'passed' if t['passed'] else '<ul>' + notes + '</ul>'}</td></tr>")
    warning = "" if result.get("sandbox", {}).get("enabled", True) else f"<p class=\"warn\">{e(UNSANDBOXED)}</p>"
    status = "" if result["status"] == "ok" else \
        f"<p><strong>Status: {e(result['status'])}</strong> — {e(result.get('message') or '')}</p>"
    errors = "".join(f"<li>cell {c['cell']}: {e(c['error']['__error__'])}: {e(c['error']['message'][:300])}</li>"
                     for c in result.get("cell_errors", []))
    errors = f"<h2>Errors while running your notebook</h2><ul>{errors}</ul>" if errors else ""
    output = result.get("output") or ""
    output = f"<h2>Your notebook's output (first part)</h2><pre>{e(output[:5000])}</pre>" if output.strip() else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Feedback: {e(result['assignment'])}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}} td,th{{padding:.3em .6em;
border-bottom:1px solid #ddd;vertical-align:top}} tr.pass td:first-child{{color:#176}}
tr.fail td:first-child{{color:#a22}} .warn{{background:#fee;padding:.5em}} pre{{background:#f6f6f6;
padding:.5em;white-space:pre-wrap}}</style></head><body>
<h1>{e(result['assignment'])} — {e(result['student_id'])}</h1>
{warning}<p>Score: <strong>{result['score']:g} / {result['max_score']:g}</strong>
(graded {e(result['graded_at'])})</p>{status}
<table><tr><th>Test</th><th>Points</th><th>Result</th></tr>{''.join(rows)}</table>
{errors}{output}</body></html>
"""


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
        nb = nbformat.read(self.a.source, as_version=4)
        resources = {"nbgrader": {"notebook": self.notebook, "assignment": self.a.name,
                                  "db_url": self.url}, "language": "python"}
        self.gb.update_or_create_assignment(self.a.name)
        for pp in (ClearSolutions(), ComputeChecksums(), SaveCells()):
            nb, resources = pp.preprocess(nb, resources)

    def record(self, result: dict) -> None:
        """Scores as ``nbgrader autograde`` records them; the submission's own time, not the grading
        time, so late flags and late-penalty plugins judge the student by when they submitted."""
        student = result["student_id"]
        self.gb.update_or_create_student(student)
        when = dt.datetime.fromisoformat(result.get("submitted_at") or result["graded_at"])
        when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
        self.gb.update_or_create_submission(self.a.name, student, timestamp=when)
        for t in result["tests"]:
            grade = self.gb.find_grade(t["grade_id"], self.notebook, self.a.name, student)
            grade.auto_score = t["points"]
            grade.needs_manual_grade = False
        self.gb.db.commit()

    def close(self) -> None:
        self.gb.close()


@functools.lru_cache(maxsize=4)
def released_source(source: Path):
    """The source notebook with hidden tests removed, as nbgrader releases it."""
    from nbgrader.preprocessors import ClearHiddenTests
    released, _ = ClearHiddenTests().preprocess(nbformat.read(source, as_version=4), {})
    return released


def autograded_notebook(sub_nb, assignment, result: dict):
    """The submission with every test cell replaced by its released version and our verdict.

    Nothing the submission stored is rendered in an instructor's browser: its outputs and attachments
    are dropped and raw HTML in its markdown is shown as text."""
    released = released_source(assignment.source)
    tests = {t["grade_id"]: t for t in result["tests"]}
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in released.cells}
    nb = copy.deepcopy(sub_nb) if sub_nb is not None else copy.deepcopy(released)
    seen = set()
    for i, cell in enumerate(nb.cells):
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in tests:
            nb.cells[i] = _verdict_cell(by_id[gid], tests[gid])
            seen.add(gid)
        else:
            _defuse(cell, by_id)
    nb.cells += [_verdict_cell(by_id[g], t) for g, t in tests.items() if g not in seen]
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")}
    return nb


MARKUP = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "[": "&#91;", "]": "&#93;"})


def _defuse(cell, source_cells: dict) -> None:
    """A student's cell as inert text: no outputs or attachments; in markdown no HTML and no links
    (brackets become entities, so no `[x](javascript:...)` survives); metadata from the source only."""
    cell.pop("attachments", None)
    gid = cell.metadata.get("nbgrader", {}).get("grade_id")
    trusted = source_cells.get(gid) if gid is not None else None
    cell.metadata = {"nbgrader": copy.deepcopy(trusted.metadata["nbgrader"])} if trusted is not None else {}
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    elif cell.cell_type in ("markdown", "raw"):
        cell.source = cell.source.translate(MARKUP)


def _verdict_cell(cell, test: dict):
    cell = copy.deepcopy(cell)
    lines = [f"{c['case']}: {'passed' if c['passed'] else c['message'] or c['status']}" for c in test["cases"]]
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout" if test["passed"] else "stderr",
                                           text="\n".join(lines) + "\n")]
    cell.execution_count = None
    return cell


# --------------------------------------------------------------------------- the recorder
class Recorder:
    """Writes everything for one finished submission; used from the main thread only."""

    def __init__(self, out: Path, assignment, gradebook: bool = True):
        self.out, self.a = out, assignment
        self.journal = Journal(out)
        self.gradebook = Gradebook(assignment) if gradebook else None

    def save(self, sub: Submission, result: dict, sub_nb=None) -> None:
        """Everything for one submission; a failure here is that student's recorded error."""
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
        _keep_earlier_result(folder, result["sha256"])
        _atomic_write(folder / "results.json",
                      json.dumps(result, indent=1, default=float, ensure_ascii=True).encode())
        _atomic_write(folder / "feedback.html", feedback_html(result).encode())
        if self.gradebook is not None:
            target = self.a.root / "autograded" / sub.student_id / self.a.name
            target.mkdir(parents=True, exist_ok=True)
            nb = autograded_notebook(sub_nb, self.a, result)
            _atomic_write(target / f"{self.a.source.stem}.ipynb", nbformat.writes(nb).encode())
            when = dt.datetime.fromisoformat(result.get("submitted_at") or result["graded_at"])
            _atomic_write(target / "timestamp.txt",  # as nbgrader writes it; release_feedback needs it
                          when.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f %Z").encode())
            self.gradebook.record(result)
        self.journal.add(result)

    def close(self) -> None:
        if self.gradebook is not None:
            self.gradebook.close()


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
            writer.writerow({**row, "score": f"{row['score']:g}", "max_score": f"{row['max_score']:g}"})
    os.replace(tmp, out / "grades.csv")
    return rows
