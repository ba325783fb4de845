"""Grading at scale: the local engine against a Dask cluster of 1 and 2 worker processes.

The same N submissions (copies of one assignment's reference solution, each under its own student id)
are graded by the local engine (--workers S) and by a loopback Dask LocalCluster of 1 and of 2 worker
processes with one sandbox slot each. Prints, per engine: start-up (the sandboxes' imports and the
reference outputs; for Dask, the cluster's own start is shown apart), steady-state grading seconds,
submissions per second, and seconds of sandbox time per submission. Then the Dask scheduling overhead
per task, measured with empty tasks that ask for a sandbox slot (one at a time: the round trip; many
at once: the scheduler's throughput), and the bytes a task carries. These are the figures behind the
README's projection ("Grading at scale"). Needs root (the sandbox).

    python benchmarks/grading_scale.py [--submissions 100] [--assignment backprop] [--slots 2]
"""
from __future__ import annotations

import argparse
import logging
import os
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path

from distributed import Client, LocalCluster, wait

from autograder import api, records
from autograder.api import grade
from autograder.course import Course, draw
from autograder.scoring import calls, parse, runnable_cells
from autograder.submissions import discover

ROOT = Path(__file__).resolve().parents[1]


def inbox(tmp: Path, assignment: str, n: int) -> Path:
    folder = tmp / "in"
    folder.mkdir()
    source = ROOT / "solutions" / assignment / f"{assignment}.ipynb"
    for i in range(n):
        shutil.copyfile(source, folder / f"student{i:04d}.ipynb")
    return folder


TRUSTED = {"seconds": 0.0}  # the trusted process's own work per result: scoring and recording


def timed(fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TRUSTED["seconds"] += time.perf_counter() - t
    return wrapper


api._scored = timed(api._scored)
records.Recorder.save = timed(records.Recorder.save)


def run(assignment: str, folder: Path, out: Path, engine, workers: int, root: Path = ROOT,
        gradebook: bool = False) -> tuple[float, float, int, float]:
    TRUSTED["seconds"] = 0.0
    s = grade(assignment, [folder], out=out, engine=engine, workers=workers, root=root, gradebook=gradebook)
    full = sum(float(r["score"]) == s.max_score for r in s.rows)
    return s.startup_seconds, s.grading_seconds, full, TRUSTED["seconds"] / len(s.rows)


def empty(_slot=None):
    return None


def overhead(client: Client, n: int) -> tuple[float, float]:
    """(round trip of one empty task, seconds per empty task when n are submitted at once)."""
    rounds = []
    for i in range(30):
        t = time.perf_counter()
        client.submit(empty, i, resources={"sandbox": 1}, pure=False).result()
        rounds.append(time.perf_counter() - t)
    t = time.perf_counter()
    wait(client.map(empty, range(n), resources={"sandbox": 1}, pure=False))
    return sorted(rounds)[len(rounds) // 2], (time.perf_counter() - t) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--submissions", type=int, default=100)
    p.add_argument("--assignment", default="backprop")
    p.add_argument("--slots", type=int, default=os.cpu_count() or 1, help="local engine's --workers")
    args = p.parse_args()
    logging.getLogger("distributed").setLevel(logging.CRITICAL)  # a closing cluster's heartbeat noise
    n, a = args.submissions, args.assignment
    print(f"{n} copies of {a}'s reference; {os.cpu_count()} cores; local engine --workers {args.slots}; "
          f"Dask workers: one process, one thread and sandbox=1 each, on loopback")
    print(f"{'engine':<22}{'cluster s':>10}{'start-up s':>11}{'grading s':>11}{'sub/s':>8}"
          f"{'sandbox s/sub':>15}{'trusted ms/sub':>16}{'full marks':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = inbox(tmp, a, n)
        startup, grading, full, trusted = run(a, folder, tmp / "local", "local", args.slots)
        print(f"{'local':<22}{'-':>10}{startup:>11.1f}{grading:>11.1f}{n / grading:>8.2f}"
              f"{grading * args.slots / n:>15.2f}{trusted * 1e3:>16.1f}{full:>9}/{n}", flush=True)
        course = tmp / "course"  # the same with nbgrader's gradebook and autograded/ notebooks written
        shutil.copytree(ROOT / "solutions" / a, course / "solutions" / a)
        startup, grading, full, trusted = run(a, folder, tmp / "local-gb", "local", args.slots, course, True)
        print(f"{'local, with gradebook':<22}{'-':>10}{startup:>11.1f}{grading:>11.1f}{n / grading:>8.2f}"
              f"{grading * args.slots / n:>15.2f}{trusted * 1e3:>16.1f}{full:>9}/{n}", flush=True)
        for workers in (1, 2):
            t = time.perf_counter()
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                              resources={"sandbox": 1}, dashboard_address=":0") as cluster, \
                    Client(cluster) as client:
                up = time.perf_counter() - t
                startup, grading, full, trusted = run(a, folder, tmp / f"dask{workers}", client, workers)
                print(f"{f'dask, {workers} worker(s)':<22}{up:>10.1f}{startup:>11.1f}{grading:>11.1f}"
                      f"{n / grading:>8.2f}{grading * workers / n:>15.2f}{trusted * 1e3:>16.1f}{full:>9}/{n}",
                      flush=True)
                if workers == 2:
                    trip, each = overhead(client, 1000)
        assignment = Course(ROOT).assignment(a)
        sub = discover([folder / "student0000.ipynb"], a)[0]
        cells = runnable_cells(parse(sub), assignment)
        print(f"Dask per-task overhead (2 workers): {trip * 1e3:.1f} ms round trip for one empty task; "
              f"{each * 1e3:.2f} ms per task with 1000 in flight")
        print(f"bytes: the run's calls (inputs, sent once per worker) "
              f"{len(pickle.dumps(calls(assignment, draw(assignment, 0)))):,}; one task's cells "
              f"{len(pickle.dumps(cells)):,} (the notebook: {len(sub.data):,})")


if __name__ == "__main__":
    sys.exit(main())
