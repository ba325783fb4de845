"""Where submissions run: the sandbox's side of grading, and the local engine.

:func:`execute` runs one submission on a pre-warmed sandbox (:class:`autograder.sandbox.Worker`) and
makes every call of the run; it returns a *transcript*, plain data only: events in order, each reply
as the undecoded bytes of the bounded channel, and the first bytes the submission printed. It judges
nothing and holds no expected output; :func:`autograder.scoring.score` replays the transcript in the
trusted process. The same function runs in a thread of the grader (:class:`Local`, the default engine)
or on a Dask worker (:mod:`autograder.cluster`).
"""
from __future__ import annotations

import itertools
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from queue import Queue
from typing import Iterable, Iterator

from autograder.sandbox import (Limits, Refused, SandboxError, Setup, TranscriptFull, Worker, allow_list,
                                check_host)


@dataclass(frozen=True)
class SandboxSpec:
    """What a machine needs to build an assignment's sandbox itself: the packages it may see, the
    modules that must be absent and the modules its zygote pre-imports (paths are resolved where the
    sandbox runs, so a worker's own interpreter and site-packages are bound)."""

    packages: tuple[str, ...]
    forbidden: tuple[str, ...]
    prewarm: tuple[str, ...]
    sandbox: bool = True

    @classmethod
    def of(cls, assignment, sandbox: bool = True) -> "SandboxSpec":
        extra = ["sklearn.datasets"] if "scikit-learn" in assignment.packages else []  # optlab.data's digits
        modules = [n for n in [*assignment.imports, *extra]
                   if n.split(".")[0] not in assignment.forbidden]  # one that is absent just fails there
        return cls(tuple(assignment.packages), tuple(assignment.forbidden), tuple(modules), sandbox)

    def setup(self) -> Setup:
        """The zygote's root (allowed packages only: a forbidden module is absent), its imports and the
        cgroup hierarchy; :class:`Refused`, naming the missing layer, where the host has none."""
        cgroups = check_host(self.sandbox)
        binds = allow_list(list(self.packages), list(self.forbidden)) if self.sandbox else []
        return Setup(binds=binds, prewarm=list(self.prewarm), sandbox=self.sandbox, cgroups=cgroups)


def execute(worker: Worker, cells: list[tuple[int, str]], calls: list[tuple[str, str, dict, float]]) -> dict:
    """Run `cells` in a fresh sandboxed process, then each (case id, driver, inputs, timeout) call;
    after a limit is hit, a fresh process goes on with the remaining calls. Returns the transcript;
    its replies together hold at most ``limits.max_transcript`` bytes (beyond, the rest is not run)."""
    limits = worker.limits
    deadline = time.monotonic() + limits.timeout
    pending = [c for c in calls]
    events: list[list] = []
    output, output_bytes = b"", 0
    used = 0  # bytes of the replies kept in the transcript
    shown = None  # what the notebook printed while its cells ran: the feedback shows this part only
    while pending:
        if time.monotonic() >= deadline:
            events.append(["timeout"])
            break
        run = worker.spawn(cells, deadline)
        executed = False
        try:
            started = time.monotonic()
            info, raw = run.receive_raw(limits.timeout, limits.max_transcript - used)
            used += len(raw)
            if not isinstance(info, dict):
                raise SandboxError("invalid-reply", "sent a reply the grader does not understand")
            events.append(["executed", round(time.monotonic() - started, 3), raw])
            executed = True
            if shown is None:  # printed before the reply was sent: in the pipe now. What follows is
                shown = run.printed_so_far()  # printed during the (hidden) cases' calls: never shown
            while pending:
                case_id, driver, inputs, timeout = pending[0]
                started = time.monotonic()
                _, raw = run.request(driver, inputs, timeout, limits.max_transcript - used)
                used += len(raw)
                pending.pop(0)
                events.append(["reply", case_id, round(time.monotonic() - started, 3), raw])
        except TranscriptFull as exc:  # nothing more of this submission is read
            events.append(["stopped", exc.status, str(exc)])
            pending.clear()
        except SandboxError as exc:
            where = f"while running {pending[0][0]}" if executed else "while executing the notebook"
            status, text = exc.status, f"{exc} {where}"
            if status == "crashed" and not worker.alive():  # its zygote died: the machine's fault, not its own
                status, text = "grader-error", f"the sandbox ended under the submission {where}"
            events.append(["error", executed, status, text])
            if not executed:
                pending.clear()
            elif pending:
                pending.pop(0)
        finally:
            events.append(["closed", run.close()])
            output, output_bytes = bytes(run.output), run.output_bytes
    return {"events": events, "output": output if shown is None else shown, "output_bytes": output_bytes,
            "layers": list(worker.layers)}


@dataclass
class Task:
    """One submission to run: its content address and its runnable cells (its bytes stay here)."""

    key: str
    cells: list[tuple[int, str]]


class Local:
    """The default engine: `workers` pre-warmed sandboxes on this machine, one thread each."""

    name = "local"

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self.started: list[Worker] = []
        self.pool: Queue = Queue()

    def open(self, spec: SandboxSpec, limits: Limits, tasks: int, log_dir: Path) -> None:
        """Launch the zygotes; they import and set up while the caller draws the inputs."""
        self.setup = setup = spec.setup()
        try:
            for i in range(max(1, min(self.workers, tasks))):
                w = Worker(i, setup, limits, log=log_dir / f".worker-{i}.log")
                self.started.append(w)
                w.launch()
        except BaseException:
            self.close()
            raise

    @property
    def layers(self) -> list[str]:
        return self.started[0].layers if self.started else []

    def ready(self) -> None:
        for w in self.started:
            w.wait_ready()
            self.pool.put(w)

    def run(self, calls, tasks: Iterable[Task]) -> Iterator[tuple[Task, dict | BaseException]]:
        """(task, transcript or the engine's own exception), as each finishes."""
        def one(task: Task):
            w = self.pool.get()
            try:
                return execute(w, task.cells, calls)
            except Exception as exc:  # noqa: BLE001 -- a grader fault is that student's error, never fatal
                if w.alive():
                    w.stop()
                return exc
            finally:
                self.pool.put(w)

        todo = iter(tasks)
        window = 2 * len(self.started) or 1  # finished transcripts wait for the scorer: a few at most
        with ThreadPoolExecutor(max_workers=len(self.started) or 1) as ex:
            futures = {ex.submit(one, t): t for t in itertools.islice(todo, window)}
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield futures.pop(fut), fut.result()
                    nxt = next(todo, None)
                    if nxt is not None:
                        futures[ex.submit(one, nxt)] = nxt

    def close(self) -> None:
        for w in self.started:
            w.release()
        if getattr(self, "setup", None) is not None and self.setup.cgroups is not None:
            self.setup.cgroups.close()
        self.started, self.setup = [], None


__all__ = ["SandboxSpec", "execute", "Task", "Local", "Refused"]
