"""``python -m autograder grade ASSIGNMENT PATH... [--out DIR] [--workers N] [--force] ...``

Exit status: 0 when every submission has a recorded result (errors included); 2 when grading could
not happen at all (unknown assignment, unreadable PATH, sandbox unavailable).
"""
from __future__ import annotations

import argparse
import fcntl
import os
import sys
import time
from pathlib import Path

from autograder import lms, records
from autograder.case import REPO_ROOT
from autograder.grade import UnknownAssignment, grade_all, load_assignment
from autograder.inputs import InputError, discover
from autograder.sandbox import Limits, Refused


def default_root() -> Path:
    """The course: the current directory if it has solutions/, else this repository."""
    return Path.cwd() if (Path.cwd() / "solutions").is_dir() else REPO_ROOT


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m autograder", description="The course's hardened autograder.")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grade", help="grade submissions of one assignment")
    g.add_argument("assignment", help="an assignment id under solutions/ (e.g. optimizers)")
    g.add_argument("paths", nargs="+", metavar="PATH",
                   help=".ipynb files, submitted/ folders (DIR/<student>/[<assignment>/]*.ipynb) or LMS .zip files")
    g.add_argument("--out", type=Path, help="output folder (default: grades/<assignment>)")
    g.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="submissions graded at once (default: cores)")
    g.add_argument("--force", action="store_true", help="regrade submissions already graded")
    g.add_argument("--allow-unsandboxed", action="store_true",
                   help="grade even where the sandbox cannot be set up (said in every feedback)")
    g.add_argument("--root", type=Path, default=None, help="course folder holding solutions/ (default: here or the repository)")
    d = Limits()
    g.add_argument("--timeout", type=float, default=d.timeout, help=f"wall seconds per submission (default {d.timeout:g})")
    g.add_argument("--memory", type=int, default=d.memory_mb, help=f"MiB of memory per submission, all its processes together (default {d.memory_mb})")
    g.add_argument("--max-procs", type=int, default=d.max_procs, help=f"processes+threads per submission, all together (default {d.max_procs})")
    g.add_argument("--max-output", type=int, default=d.max_output, help=f"bytes a submission may print (default {d.max_output})")
    g.add_argument("--no-gradebook", action="store_true", help="do not write nbgrader's gradebook and autograded/ notebooks")
    g.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)  # reproduce a run (tests)
    g.add_argument("--lms-column", default=None,
                   help="grade column in canvas.csv, e.g. 'Optimizers (123456)' (default: the assignment id)")
    e = sub.add_parser("export", help="after hand grading: refresh feedback, grades.csv, canvas.csv and "
                                      "moodle.csv from nbgrader's gradebook")
    e.add_argument("assignment", help="an assignment id under solutions/")
    e.add_argument("--out", type=Path, help="the grading run's output folder (default: grades/<assignment>)")
    e.add_argument("--root", type=Path, default=None, help="course folder holding solutions/")
    e.add_argument("--lms-column", default=None, help="grade column in canvas.csv (default: the assignment id)")
    return p


class Progress:
    """A one-line bar on a terminal; silent otherwise."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.stream = total, 0, stream
        self.tty = stream.isatty()
        self.start = time.monotonic()

    def __call__(self, result: dict) -> None:
        self.done += 1
        if self.tty and self.total:
            width = 30
            filled = width * self.done // self.total
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                              f"{result['student_id'][:20]:<20}")
            self.stream.flush()

    def close(self) -> None:
        if self.tty and self.total:
            self.stream.write("\n")


def grade(args) -> int:
    root = (args.root or default_root()).resolve()
    try:
        assignment = load_assignment(args.assignment, root)
        subs = discover(args.paths, args.assignment)
    except (UnknownAssignment, InputError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = (args.out or root / "grades" / args.assignment).resolve()
    out.mkdir(parents=True, exist_ok=True)
    lock = open(out / ".lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"error: another grading run is writing to {out}; wait for it to finish or choose "
              f"another --out", file=sys.stderr)
        return 2
    limits = Limits(timeout=args.timeout, memory_mb=args.memory, max_procs=args.max_procs,
                    max_output=args.max_output)
    try:
        recorder = records.Recorder(out, assignment, gradebook=not args.no_gradebook)
    except Exception as exc:  # noqa: BLE001 -- e.g. gradebook.db locked or corrupt
        print(f"error: nbgrader's gradebook ({records.gradebook_path(root)}) cannot be opened: "
              f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}; close other nbgrader tools "
              f"using it, or pass --no-gradebook", file=sys.stderr)
        return 2
    for sub in subs:  # the bytes as received, before anything can go wrong
        try:
            records.keep_submitted(out, sub)
        except OSError as exc:  # e.g. a full disk: said, and that student is still graded
            print(f"warning: could not keep the bytes of {sub.student_id}: {exc}", file=sys.stderr)
    todo = [s for s in subs if args.force or not recorder.journal.is_done(s, out)]
    progress = Progress(len(todo))
    clock = {"start": time.monotonic()}
    try:
        grade_all(assignment, todo, recorder, workers=max(1, args.workers), limits=limits,
                  sandbox=True, progress=progress,
                  seed=args.seed, clock=clock)
    except Refused as exc:
        progress.close()
        if not args.allow_unsandboxed:
            print(f"error: {exc} (--allow-unsandboxed grades anyway, and says so in every feedback)",
                  file=sys.stderr)
            return 2
        print(f"warning: {exc}\nwarning: {records.UNSANDBOXED}", file=sys.stderr)
        grade_all(assignment, todo, recorder, workers=max(1, args.workers), limits=limits,
                  sandbox=False, progress=progress, clock=clock)
    finally:
        progress.close()
        recorder.close()
    rows = records.write_csv(out)
    lms.write_lms(out, args.assignment, root, args.lms_column)
    records.give_to_course_owner(root, [out, *(root / "autograded" / s.student_id / args.assignment for s in subs)])
    mine = {s.student_id for s in subs}
    rows = [r for r in rows if r["student_id"] in mine]
    errors = sum(r["status"] != "ok" for r in rows)
    earlier = sum(len(s.earlier) for s in subs)
    mean = sum(float(r["score"]) for r in rows) / len(rows) if rows else 0.0
    print(f"{args.assignment}: {len(rows)} submissions ({len(todo)} graded now, {len(subs) - len(todo)} "
          f"already done), {errors} with errors, mean score {mean:.2f} / {assignment.max_score:g}; "
          f"start-up {clock.get('ready', clock['start']) - clock['start']:.1f} s, grading "
          f"{time.monotonic() - clock.get('ready', clock['start']):.1f} s; results in {out}"
          + (f"; {earlier} earlier attempts kept in students/<id>/submitted/" if earlier else ""))
    return 0


def export(args) -> int:
    root = (args.root or default_root()).resolve()
    try:
        assignment = load_assignment(args.assignment, root)
    except UnknownAssignment as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = (args.out or root / "grades" / args.assignment).resolve()
    if not (out / "students").is_dir():
        print(f"error: no grading results in {out}", file=sys.stderr)
        return 2
    n = records.refresh(out, assignment)
    rows = records.write_csv(out)
    files = lms.write_lms(out, args.assignment, root, args.lms_column)
    records.give_to_course_owner(root, [out])
    print(f"{args.assignment}: {n} of {len(rows)} students refreshed from the gradebook; "
          f"{out / 'grades.csv'}, " + ", ".join(str(f) for f in files))
    return 0


def main(argv=None) -> int:
    """``autograder grade ...`` (the console script) or ``python -P -m autograder grade ...``."""
    args = parser().parse_args(argv)
    if args.command == "grade":
        return grade(args)
    if args.command == "export":
        return export(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
