"""Load on the submission service: many students submitting at once, seconds from upload to feedback.

Starts a real service (``python -m autograder serve``, uvicorn on loopback) on a temporary copy of a
course, makes roster tokens with ``python -m autograder tokens``, then lets STUDENTS students submit
ATTEMPTS notebooks each, all at once, through the API a notebook's ``submit()`` uses: POST
/api/submit, then GET /api/attempts/{id}?wait=60 until graded. Attempts alternate between a notebook
that earns full marks and one that earns nothing (which one comes first differs by student). Prints
the seconds from the start of the upload to the graded feedback (p50, p95, max), attempts per second,
and the errors: any non-2xx answer, timeout, or a score other than that notebook's known score.

    python benchmarks/service_load.py [--students 50] [--attempts 4] [--assignment tiny|optimizers]

The default course is the test fixture (assignment ``tiny``, 3 points: the reference solution earns
3, a wrong one 0). ``--assignment optimizers`` uses this repository's assignment: its source notebook
(the reference solution) earns full marks, the released notebook (stubs that raise) earns 0. Only
copies are written to; the repository's gradebook.db and grades/ are never touched.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "grading"))

SERVICE_TOML = """[service]
workers = {workers}

[assignments.{assignment}]
attempts_total = {attempts}
attempts_per_day = {attempts}
counts = "last"
"""


def course(tmp: Path, assignment: str) -> tuple[Path, dict[str, tuple[bytes, float]]]:
    """A copy of the course holding `assignment`, and its notebooks: kind -> (bytes, expected score)."""
    root = tmp / "course"
    if assignment == "tiny":
        from submissions import FIXTURE_COURSE, WRONG_TINY, submission
        shutil.copytree(FIXTURE_COURSE, root)
        source = root / "solutions" / "tiny" / "tiny.ipynb"
        return root, {"right": (submission(source, reference=True), 3.0),
                      "wrong": (submission(source, solutions=WRONG_TINY), 0.0)}
    shutil.copytree(ROOT / "solutions" / assignment, root / "solutions" / assignment)
    (root / "nbgrader_config.py").write_text(
        (ROOT / "nbgrader_config.py").read_text().replace(
            'str(Path(__file__).resolve().parent)', repr(str(root))))
    from autograder.course import Course
    full = Course(root).assignment(assignment).max_score
    return root, {"right": ((ROOT / "solutions" / assignment / f"{assignment}.ipynb").read_bytes(), full),
                  "wrong": ((ROOT / "assignments" / assignment / f"{assignment}.ipynb").read_bytes(), 0.0)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder", *map(str, args)], check=True,
                          capture_output=True, text=True, **kw)


class Tally:
    def __init__(self):
        self.latencies: list[float] = []
        self.errors: list[str] = []


async def student(client: httpx.AsyncClient, name: str, token: str, index: int, args, notebooks, tally: Tally):
    headers = {"Authorization": f"token {token}"}
    for k in range(args.attempts):
        kind = "right" if (index + k) % 2 else "wrong"
        data, expected = notebooks[kind]
        start = time.perf_counter()
        try:
            r = await client.post("/api/submit", params={"assignment": args.assignment}, content=data,
                                  headers=headers)
            if r.status_code != 202:
                tally.errors.append(f"{name} attempt {k}: submit answered {r.status_code} {r.text[:200]}")
                continue
            attempt = r.json()["id"]
            while True:
                r = await client.get(f"/api/attempts/{attempt}", params={"wait": 60}, headers=headers)
                if r.status_code != 200:
                    tally.errors.append(f"{name} attempt {k}: poll answered {r.status_code} {r.text[:200]}")
                    break
                body = r.json()
                if body["state"] == "graded":
                    tally.latencies.append(time.perf_counter() - start)
                    if body["score"] != expected:
                        tally.errors.append(f"{name} attempt {attempt} ({kind}): score {body['score']}, "
                                            f"expected {expected} ({body['status']}: {body.get('message')})")
                    break
        except httpx.HTTPError as exc:
            tally.errors.append(f"{name} attempt {k}: {type(exc).__name__} {exc}")


async def load(url: str, roster: list[tuple[str, str]], args, notebooks) -> tuple[Tally, float]:
    tally = Tally()
    # every request has its own bound (a poll waits up to 60 s on the server); the whole run has one too
    limits = httpx.Limits(max_connections=len(roster) + 10)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(90.0, connect=10.0), limits=limits) as client:
        start = time.perf_counter()
        tasks = [asyncio.create_task(student(client, name, token, i, args, notebooks, tally))
                 for i, (name, token) in enumerate(roster)]
        done, pending = await asyncio.wait(tasks, timeout=args.timeout)
        for t in pending:
            t.cancel()
        if pending:
            tally.errors.append(f"{len(pending)} students still waiting after {args.timeout:.0f} s (cancelled)")
        return tally, time.perf_counter() - start


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"the service exited ({proc.returncode}) before it answered")
        try:
            if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"the service did not answer within {timeout:.0f} s")


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--students", type=int, default=50)
    p.add_argument("--attempts", type=int, default=4, help="per student")
    p.add_argument("--assignment", default="tiny", help="tiny (the test fixture course) or optimizers")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="sandboxes grading at once")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds for the whole load (default 300)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="service-load-") as tmp:
        tmp = Path(tmp)
        root, notebooks = course(tmp, args.assignment)
        (root / "service.toml").write_text(SERVICE_TOML.format(
            workers=args.workers, assignment=args.assignment, attempts=args.attempts))
        (tmp / "roster.csv").write_text("student_id\n" + "".join(f"s{i:03d}\n" for i in range(args.students)))
        cli("tokens", tmp / "roster.csv", "--course", root, "--out", tmp / "tokens.csv", cwd=tmp)
        with open(tmp / "tokens.csv", newline="") as f:
            roster = [(r["student_id"], r["token"]) for r in csv.DictReader(f)]

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(tmp / "service.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "autograder", "serve", "--course", root,
                                 "--port", str(port)], cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
        try:
            t0 = time.perf_counter()
            wait_up(url, proc)
            started = time.perf_counter() - t0
            tally, seconds = asyncio.run(load(url, roster, args, notebooks))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        lat = sorted(tally.latencies)
        print(f"service load: {args.students} students x {args.attempts} attempts, assignment "
              f"{args.assignment}, {args.workers} grading workers, {os.cpu_count()} cores "
              f"(service up in {started:.1f} s)")
        print(f"graded attempts: {len(lat)} of {args.students * args.attempts} in {seconds:.1f} s "
              f"({len(lat) / seconds:.1f} attempts/s)")
        if lat:
            print(f"seconds from upload to feedback: p50 {percentile(lat, 50):.2f}  "
                  f"p95 {percentile(lat, 95):.2f}  max {lat[-1]:.2f}")
        print(f"errors: {len(tally.errors)}")
        for e in tally.errors[:20]:
            print(f"  {e}")
        if tally.errors:
            print(f"(service log: {(tmp / 'service.log').read_text()[-2000:]})")
        return 1 if tally.errors else 0


if __name__ == "__main__":
    sys.exit(main())
