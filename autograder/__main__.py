"""``python -m autograder grade ASSIGNMENT PATH... [--out DIR] [--workers N] [--engine local|tcp://...]``

A thin shell over :func:`autograder.api.grade`. Exit status: 0 when every submission has a recorded
result (errors included); 2 when grading could not happen at all (unknown assignment, unreadable PATH,
sandbox unavailable, no Dask worker with sandbox slots).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from autograder import lms, messages, records
from autograder.api import GradingError, grade as grade_api
from autograder.course import Course, UnknownAssignment, default_root
from autograder.sandbox import Limits, Refused


LANGUAGE_HELP = (f"the feedback's language: {', '.join(messages.languages())} (default: c.Autograder.language "
                 f"in the course's nbgrader_config.py, else en)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m autograder", description="The course's hardened autograder.")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grade", help="grade submissions of one assignment")
    g.add_argument("assignment", help="an assignment id under solutions/ (e.g. optimizers)")
    g.add_argument("paths", nargs="+", metavar="PATH",
                   help=".ipynb files, submitted/ folders (DIR/<student>/[<assignment>/]*.ipynb) or LMS .zip files")
    g.add_argument("--out", type=Path, help="output folder (default: grades/<assignment>)")
    g.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="submissions graded at once by the local engine (default: cores)")
    g.add_argument("--engine", default="local", metavar="local|ADDRESS",
                   help="'local' (default: sandboxes on this machine) or a Dask scheduler's address, e.g. "
                        "tcp://scheduler:8786, whose workers advertise --resources sandbox=K (see README)")
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
    g.add_argument("--language", default=None, help=LANGUAGE_HELP)
    e = sub.add_parser("export", help="after hand grading: refresh feedback, grades.csv, canvas.csv and "
                                      "moodle.csv from nbgrader's gradebook")
    e.add_argument("assignment", help="an assignment id under solutions/")
    e.add_argument("--out", type=Path, help="the grading run's output folder (default: grades/<assignment>)")
    e.add_argument("--root", type=Path, default=None, help="course folder holding solutions/")
    e.add_argument("--lms-column", default=None, help="grade column in canvas.csv (default: the assignment id)")
    e.add_argument("--language", default=None, help=LANGUAGE_HELP)
    s = sub.add_parser("serve", help="the submission service: students submit and get graded feedback in "
                                     "seconds (see README)")
    s.add_argument("--course", type=Path, default=None, help="course folder holding solutions/ (default: here)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8800, help="port (default 8800)")
    s.add_argument("--db", default=None, metavar="URL",
                   help="database URL (default: sqlite in COURSE/service/; postgresql+psycopg://... for several machines)")
    s.add_argument("--engine", default="local", metavar="local|ADDRESS", help="as for grade")
    s.add_argument("--hub", action="store_true",
                   help="run as a JupyterHub service: students log in through the Hub (JUPYTERHUB_* settings from the Hub)")
    s.add_argument("--language", default=None, help=LANGUAGE_HELP + "; then service.toml's [service] language")
    t = sub.add_parser("tokens", help="make a login token for each student of a roster, for the submission service")
    t.add_argument("roster", type=Path, help="CSV with a student_id column (and optionally role: student|instructor)")
    t.add_argument("--course", type=Path, default=None, help="course folder (default: here)")
    t.add_argument("--db", default=None, metavar="URL", help="the service's database URL (default: as serve)")
    t.add_argument("--out", type=Path, required=True, help="CSV file to write the tokens to (hand them out; "
                                                           "the service keeps only their hashes)")
    return p


def serve(args) -> int:
    from autograder.service import config as service_config
    try:
        cfg = service_config.load((args.course or default_root()), db=args.db, language=args.language)
    except service_config.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import uvicorn
    from autograder.service.app import create_app
    auth = None
    if args.hub:
        from autograder.service.hub import HubAuth, HubConfigError
        try:
            auth = HubAuth(cfg)
        except HubConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    app = create_app(cfg, auth=auth, engine=args.engine)
    print(f"Serving {cfg.root} on http://{args.host}:{args.port}{getattr(auth, 'prefix', '/')} (database {cfg.db.split('://')[0]})", flush=True)
    # No cap on connections (a cap is what idle half-open connections would fill): each costs a file
    # descriptor, so the limit on those is raised as far as allowed; uploads in memory are bounded by
    # the app. Behind a reverse proxy, let it time out slow clients (e.g. nginx client_header_timeout).
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else max(soft, 65536), hard))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5)
    return 0


def tokens(args) -> int:
    from autograder.service import config as service_config
    from autograder.service.auth import issue_tokens
    from autograder.service.store import Store
    try:
        cfg = service_config.load((args.course or default_root()), db=args.db)
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except service_config.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileExistsError:
        print(f"error: {args.out} exists; tokens are never overwritten", file=sys.stderr)
        return 2
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as out:
            n = issue_tokens(Store(cfg.db), args.roster, out)
    except (OSError, ValueError) as exc:
        os.unlink(args.out)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{n} tokens written to {args.out}; hand each student theirs")
    return 0


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
    limits = Limits(timeout=args.timeout, memory_mb=args.memory, max_procs=args.max_procs,
                    max_output=args.max_output)
    progress = None
    try:
        root = (args.root or default_root()).resolve()
        language = messages.course_language(root, args.language)  # UnknownLanguage is a ValueError
        course = Course(root)
        assignment = course.assignment(args.assignment)
    except (UnknownAssignment, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def counting(result, done: int, total: int) -> None:
        nonlocal progress
        progress = progress or Progress(total)
        progress({"student_id": result.student_id})

    try:
        summary = grade_api(assignment, args.paths, out=args.out, engine=args.engine, limits=limits,
                            workers=max(1, args.workers), force=args.force,
                            allow_unsandboxed=args.allow_unsandboxed, gradebook=not args.no_gradebook,
                            lms_column=args.lms_column, seed=args.seed, progress=counting, language=language)
    except GradingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Refused as exc:
        print(f"error: {exc} (--allow-unsandboxed grades anyway, and says so in every feedback)",
              file=sys.stderr)
        return 2
    finally:
        if progress is not None:
            progress.close()
    print(summary.line())
    return 0


def export(args) -> int:
    root = (args.root or default_root()).resolve()
    try:
        language = messages.course_language(root, args.language)
        assignment = Course(root).assignment(args.assignment)
    except (UnknownAssignment, messages.UnknownLanguage) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = (args.out or root / "grades" / args.assignment).resolve()
    if not (out / "students").is_dir():
        print(f"error: no grading results in {out}", file=sys.stderr)
        return 2
    n = records.refresh(out, assignment, language)
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
    if args.command == "serve":
        return serve(args)
    if args.command == "tokens":
        return tokens(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
