"""The Dask engine: submissions run in sandboxes on a cluster's workers; scoring stays here.

Each worker that advertises sandbox slots (``dask worker ADDRESS --resources sandbox=K``) gets a
:class:`SandboxPlugin` that builds the assignment's sandbox there once and keeps K zygotes warm. A task
carries one submission's runnable cells and the run's calls (driver and inputs, made once by a task of
their own, so the scheduler can make them again after losing their workers); it returns :func:`autograder.engine.execute`'s transcript, plain data whose replies are the channel's
undecoded bytes. Expected outputs and judges never leave the trusted process, which scores each
transcript as it arrives (``as_completed``). A worker that cannot build the sandbox gives its slots
up (the scheduler sends the tasks elsewhere) and says why in the same sentence as the CLI; a worker
lost mid-task is the scheduler's to retry on another one, so each submission yields one transcript.

Dask runs pickled callables that clients send: the cluster is instructor infrastructure, reachable
only by the grader (README, "Grading at scale": TLS).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from concurrent.futures import CancelledError
from pathlib import Path
from queue import Queue
from typing import Iterable, Iterator

from distributed import Client, Reschedule, SchedulerPlugin, WorkerPlugin, as_completed, get_worker

from autograder.api import GradingError
from autograder.engine import SandboxSpec, Task, execute
from autograder.sandbox import Limits, Refused, Worker

logger = logging.getLogger("autograder.cluster")
RESOURCE = "sandbox"


CONNECT_TIMEOUT = "60s"   # to reach the scheduler at the start of a run


class NoSandboxSlots(GradingError):
    """No worker of the cluster offers sandbox slots."""


def _slots(worker) -> tuple[int, set]:
    """The sandbox slots `worker` was started with, and the runs that withhold them now (a worker's
    resources are shared by every run: a refusal takes its slots until the last refusing run ends)."""
    if not hasattr(worker, "_autograder_slots"):
        worker._autograder_slots = int(worker.state.total_resources.get(RESOURCE, 0))
        worker._autograder_refusing = set()
    return worker._autograder_slots, worker._autograder_refusing


class SandboxPlugin(WorkerPlugin):
    """One assignment's sandbox on one Dask worker: a zygote per advertised slot, started once."""

    def __init__(self, spec: SandboxSpec, limits: Limits):
        self.spec, self.limits = spec, limits
        self.zygotes: list[Worker] = []
        self.refused: str | None = None
        self.setup_ = None
        self.run = uuid.uuid4().hex

    async def setup(self, worker) -> None:
        self.pool: Queue = Queue()
        self.zygotes, self.refused = [], None
        slots, refusing = _slots(worker)
        if slots < 1:
            return
        if refusing:  # said, never a silent worker without slots
            self.refused = "its sandbox slots are withheld: another grading run could not build its sandbox there"
            logger.warning("%s: %s", worker.address, self.refused)
            return
        try:
            self.setup_ = self.spec.setup()
            for i in range(slots):  # launched from the worker's own thread, which lives as long as it
                z = Worker(i, self.setup_, self.limits,
                           log=Path(worker.local_directory) / f"autograder-sandbox-{i}.log")
                self.zygotes.append(z)
                z.launch()
            await asyncio.get_running_loop().run_in_executor(None, self._wait_ready)
        except Refused as exc:
            self.refused = str(exc)
            logger.warning("%s: %s", worker.address, self.refused)
            self._release()
            refusing.add(self.run)
            await worker.set_resources(**{RESOURCE: 0})  # the scheduler sends its tasks elsewhere

    def _wait_ready(self) -> None:
        for z in self.zygotes:
            z.wait_ready()
            self.pool.put(z)

    def state(self) -> dict:
        return {"slots": len(self.zygotes), "refused": self.refused,
                "layers": self.zygotes[0].layers if self.zygotes else []}

    def _release(self) -> None:
        for z in self.zygotes:
            z.release()
        self.zygotes = []
        if self.setup_ is not None and self.setup_.cgroups is not None:
            self.setup_.cgroups.close()
        self.setup_ = None

    async def teardown(self, worker) -> None:
        self._release()
        slots, refusing = _slots(worker)
        if self.run in refusing:
            refusing.discard(self.run)
            if not refusing:  # the last run that refused here: the worker's slots are offered again
                await worker.set_resources(**{RESOURCE: slots})


class EndsWithClient(SchedulerPlugin):
    """On the scheduler: when the run's client is gone (the grader ended, even by kill -9), remove the
    run's SandboxPlugin from every worker (its teardown stops the zygotes, janitors and uid leases)
    and from those joining later, then this watcher itself."""

    def __init__(self, client_id: str, plugin: str):
        self.client_id, self.plugin = client_id, plugin
        self.name = f"{plugin}-watch"

    def remove_client(self, scheduler, client: str) -> None:
        if client == self.client_id:
            asyncio.ensure_future(self._end(scheduler))

    async def _end(self, scheduler) -> None:
        if self.plugin in scheduler.worker_plugins:
            await scheduler.unregister_worker_plugin(comm=None, name=self.plugin)
        scheduler.remove_plugin(name=self.name)


def _plugin(name: str) -> SandboxPlugin:
    return get_worker().plugins[name]


def _state(name: str, dask_worker=None) -> dict:
    plugin = dask_worker.plugins.get(name)
    return plugin.state() if plugin is not None else {"slots": 0, "refused": None, "layers": []}


def _the_calls(calls):
    """A task whose result is the run's calls: recomputable, unlike scattered data."""
    return calls


def run_submission(plugin: str, calls, cells) -> dict:
    """A task: one submission on one of this worker's warm sandboxes; its transcript."""
    p = _plugin(plugin)
    if p.refused or not p.zygotes:
        logger.warning("refusing a grading task: %s", p.refused or "no sandbox slots here")
        raise Reschedule()
    z = p.pool.get()
    try:
        return execute(z, cells, calls)
    except Exception:
        if z.alive():
            z.stop()  # the next task starts a fresh zygote
        raise
    finally:
        p.pool.put(z)


class Dask:
    """The engine for ``--engine tcp://scheduler:8786`` or a ``distributed.Client``."""

    def __init__(self, target: str | Client):
        self.target = target
        self.client: Client | None = None
        self.layers: list[str] = []
        self.name = f"autograder-sandbox-{uuid.uuid4().hex[:12]}"
        self.workers: dict[str, dict] = {}
        self.runs = 0

    @property
    def refusals(self) -> dict[str, str]:
        return {addr: s["refused"] for addr, s in self.workers.items() if s.get("refused")}

    def open(self, spec: SandboxSpec, limits: Limits, tasks: int, log_dir: Path) -> None:
        try:
            self.client = self.target if isinstance(self.target, Client) else Client(self.target, timeout=CONNECT_TIMEOUT)
            watch = EndsWithClient(self.client.id, self.name)
            self.client.register_plugin(watch, name=watch.name)  # first: a run never outlives its client
            self.client.register_plugin(SandboxPlugin(spec, limits), name=self.name)
        except (OSError, TimeoutError) as exc:   # unreachable, or the connection lost while starting
            where = self.target if isinstance(self.target, str) else "the client's scheduler"
            raise GradingError(f"the Dask cluster at {where} could not start this run ({type(exc).__name__}: {exc}); nothing was graded, "
                               "run again when the scheduler and its workers are up") from None

    def ready(self) -> None:
        self.workers = self.client.run(_state, self.name)
        ready = [s for s in self.workers.values() if s["slots"] and not s["refused"]]
        if not ready:
            if self.refusals:
                raise Refused(next(iter(self.refusals.values())))
            raise NoSandboxSlots(f"no worker of the Dask cluster at {self.client.scheduler.address} offers "
                                 f"sandbox slots: start workers with --resources {RESOURCE}=K (see README)")
        self.layers = ready[0]["layers"]

    def run(self, calls, tasks: Iterable[Task]) -> Iterator[tuple[Task, dict | BaseException]]:
        """(task, transcript or the task's exception), as each finishes. The calls are made by a task
        of their own, so the scheduler can make them again when the workers holding them are lost; a
        task cancelled that way is sent again (twice at most). A task's key is its content address
        plus this run's id and number."""
        self.runs += 1  # an engine kept open (api.Grader) runs again: keys never repeat an earlier run's
        run = f"{self.name}/{self.runs}"
        shared = self.client.submit(_the_calls, calls, key=f"calls/{run}", pure=False)
        todo = iter(tasks)
        # Back-pressure: at most a window of tasks is out, so finished transcripts waiting for the
        # scorer (each up to Limits.max_transcript) stay a few per sandbox slot, as on one machine.
        window = 2 * sum(s["slots"] for s in self.workers.values() if not s.get("refused")) or 1
        futures: dict = {}
        tries: dict[str, int] = {}

        def submit(t: Task):
            tries[t.key] = tries.get(t.key, 0) + 1
            f = self.client.submit(run_submission, self.name, shared, t.cells,
                                   key=f"{t.key}/{run}/{tries[t.key]}", resources={RESOURCE: 1}, pure=False)
            futures[f.key] = (f, t)
            return f

        running = as_completed([submit(t) for t in itertools.islice(todo, window)])
        for f in running:
            _, t = futures.pop(f.key)
            try:
                transcript = f.result()
            except CancelledError as exc:  # its inputs were lost with their workers: run it again
                f.release()
                if tries[t.key] < 3:
                    running.add(submit(t))
                    continue
                transcript = exc
            except Exception as exc:  # noqa: BLE001 -- e.g. KilledWorker after repeated worker deaths
                transcript = exc
            f.release()
            yield t, transcript
            nxt = next(todo, None)
            if nxt is not None:
                running.add(submit(nxt))
        shared.release()

    def close(self) -> None:
        if self.client is None:
            return
        try:
            self.client.unregister_worker_plugin(self.name)  # its teardown stops the zygotes
        except Exception:  # noqa: BLE001 -- a worker gone already has nothing to stop
            pass
        try:
            self.client.unregister_scheduler_plugin(f"{self.name}-watch")
        except Exception:  # noqa: BLE001 -- never registered (the run failed before)
            pass
        if self.client is not self.target:
            self.client.close()
        self.client = None
