"""Grading throughput: stock `nbgrader autograde` versus `python -m autograder grade`, same machine, same run.

For each assignment with a source notebook under solutions/, N copies of the reference solution are
submitted into a temporary nbgrader course; stock nbgrader autogrades them (one kernel per notebook,
one after another) and this grader grades them (sandbox on, --workers = cores). Prints seconds per
submission for both and the ratio (target: >= 10x). This grader pays a fixed start-up per run (its
imports, the workers' imports, the reference outputs), which its summary line reports; the last
columns give that start-up and the steady-state ratio (stock's s/sub against this grader's seconds
after start-up per submission).

    python benchmarks/grading_throughput.py [--copies N] [--assignments a b ...] [--workers W]
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = """c = get_config()
c.CourseDirectory.root = {root!r}
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "__pycache__", "cases.py", "reference.py"]
c.ExecutePreprocessor.timeout = 600
"""


def timed(cmd, cwd, env) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def course(tmp: Path, assignment: str, copies: int) -> Path:
    root = tmp / assignment
    shutil.copytree(ROOT / "solutions" / assignment, root / "solutions" / assignment)
    (root / "nbgrader_config.py").write_text(CONFIG.format(root=str(root)))
    reference = ROOT / "solutions" / assignment / f"{assignment}.ipynb"
    for i in range(copies):
        folder = root / "submitted" / f"student{i:03d}" / assignment
        folder.mkdir(parents=True)
        shutil.copyfile(reference, folder / f"{assignment}.ipynb")
    return root


def scores(path: Path, key: str) -> list[float]:
    return [float(r[key]) for r in csv.DictReader(open(path))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--copies", type=int, default=30)  # a class-sized run: start-up is a fixed cost
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--assignments", nargs="*",
                   default=sorted(d.name for d in (ROOT / "solutions").iterdir()
                                  if (d / f"{d.name}.ipynb").is_file() and (d / "cases.py").is_file()))
    args = p.parse_args()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    print(f"{args.copies} copies of each reference solution; this grader with --workers {args.workers}; "
          f"{os.cpu_count()} cores")
    print(f"{'assignment':<16}{'nbgrader s/sub':>16}{'autograder s/sub':>18}{'speed-up':>10}"
          f"{'start-up s':>12}{'steady speed-up':>17}")
    with tempfile.TemporaryDirectory() as tmp:
        for a in args.assignments:
            root = course(Path(tmp), a, args.copies)
            timed([BIN / "nbgrader", "generate_assignment", a, "--force"], root, env)
            stock, _ = timed([BIN / "nbgrader", "autograde", a], root, env)
            ours, summary = timed([sys.executable, "-m", "autograder", "grade", a, "submitted", "--out",
                                   str(root / "ours"), "--workers", str(args.workers), "--root", str(root)], root, env)
            grades = root / "ours" / "grades.csv"
            if scores(grades, "score") != scores(grades, "max_score"):
                print(f"{a}: NOT every copy of the reference got full marks: see {grades}")
            startup = float(re.search(r"start-up ([0-9.]+) s", summary)[1])
            s, o, steady = stock / args.copies, ours / args.copies, max(ours - startup, 1e-3) / args.copies
            print(f"{a:<16}{s:>16.2f}{o:>18.2f}{s / o:>9.1f}x{startup:>12.1f}{s / steady:>16.1f}x", flush=True)


if __name__ == "__main__":
    main()
