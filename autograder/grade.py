"""Grade submissions: trusted judging of what sandboxed workers hand back.

The trusted process reads the test cells from the SOURCE notebook, draws hidden inputs once per run
from a fresh seed, computes the reference outputs, sends (driver, inputs) to the sandboxed child that
executed the submission, and judges the plain data it returns. A submission never influences which
tests run, how many points they carry, or how they are compared.
"""
from __future__ import annotations

import ast
import json
import importlib.util
import secrets
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue

import nbformat
import numpy as np

from autograder import records
from autograder.channel import clean_text
from autograder.case import Case, TestCell, import_file, is_error, load_cases, test_cells
from autograder.inputs import Submission
from autograder.sandbox import Limits, SandboxError, Setup, Worker, allow_list, check_host, memory_error, packages_of


# --------------------------------------------------------------------------- the assignment
@dataclass
class Assignment:
    name: str
    root: Path
    source: Path  # solutions/<a>/<a>.ipynb
    cells: list[TestCell]
    cases: dict[str, Case]
    forbidden: list[str]  # modules absent from the submission's filesystem
    grade_ids: set[str]  # every nbgrader cell id of the source notebook
    packages: list[str] = field(default_factory=list)  # distributions present (with dependencies)
    seed: int = 0
    prepared: dict = field(default_factory=dict)  # case id -> (inputs, expected) for this run

    @property
    def max_score(self) -> float:
        return sum(c.points for c in self.cells)


class UnknownAssignment(Exception):
    pass


def load_assignment(name: str, root: Path) -> Assignment:
    source = root / "solutions" / name / f"{name}.ipynb"
    if not source.is_file():
        known = sorted(p.name for p in (root / "solutions").glob("*") if p.is_dir())
        raise UnknownAssignment(f"unknown assignment {name!r}: {source} does not exist "
                                f"(known: {', '.join(known) or 'none'})")
    cases, forbidden = load_cases(name, root)
    cells = test_cells(source)
    missing = sorted({c for cell in cells for c in cell.case_ids} - set(cases))
    if missing:
        raise UnknownAssignment(f"{name}: test cells name cases that cases.py lacks: {missing}")
    nb = nbformat.read(source, as_version=4)
    ids = {c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells} - {None}
    declared = getattr(import_file(root / "solutions" / name / "cases.py"), "PACKAGES", [])
    return Assignment(name, root, source, cells, cases, forbidden, ids,
                      packages=sorted(set(declared) | set(packages_of(source_imports(source)))))


def prepare(assignment: Assignment, seed: int | None = None) -> None:
    """Draw every case's inputs (hidden ones included) from a fresh seed, and the reference outputs."""
    assignment.seed = secrets.randbits(63) if seed is None else seed
    for i, case_id in enumerate(sorted(assignment.cases)):
        case = assignment.cases[case_id]
        assignment.prepared[case_id] = case.draw(np.random.default_rng([assignment.seed, i]))


# --------------------------------------------------------------------------- reading a submission
class Rejected(Exception):
    """A submission graded without running it: `status` names why."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


MAX_CELLS = 2000


def parse(sub: Submission) -> nbformat.NotebookNode:
    """The submitted notebook, read only when small: at most 16 MiB (inputs.py) and MAX_CELLS cells."""
    if sub.problem:
        raise Rejected(sub.problem_status, sub.problem)
    try:
        raw = json.loads(sub.data.decode("utf-8"))
        if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list) or len(raw["cells"]) > MAX_CELLS:
            raise ValueError(f"not a notebook of at most {MAX_CELLS} cells")
        nb = nbformat.reads(sub.data.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # noqa: BLE001 -- any parse failure is the submission's problem
        raise Rejected("invalid-notebook", f"not a valid Jupyter notebook ({type(exc).__name__})") from None
    return nb


def runnable_cells(nb, assignment: Assignment) -> list[tuple[int, str]]:
    """The submission's code cells minus test cells (those come from the source, never from here).

    Cells after the last test cell are left out: as nbgrader runs a notebook top to bottom, nothing
    there can change an autograded score (typically a slow demo for a written answer).
    """
    test_ids = {c.grade_id for c in assignment.cells}
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    if set(ids) - {None} and not set(ids) & assignment.grade_ids:
        raise Rejected("wrong-assignment",
                       f"this notebook's cells belong to another assignment, not {assignment.name!r}")
    last = max((i for i, gid in enumerate(ids) if gid in test_ids), default=len(ids))
    out = []
    for index, cell in enumerate(nb.cells[:last]):
        meta = cell.metadata.get("nbgrader", {})
        is_test = (meta.get("grade") and not meta.get("solution")) or meta.get("grade_id") in test_ids
        if cell.cell_type == "code" and not is_test and isinstance(cell.source, str):
            out.append((index, cell.source))
    return out


def source_imports(source: Path) -> list[str]:
    """The modules the SOURCE notebook imports (trusted; never a submission's code)."""
    from IPython.core.inputtransformer2 import TransformerManager
    tm = TransformerManager()
    names = set()
    for cell in nbformat.read(source, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(tm.transform_cell(cell.source))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
    return sorted(names)


def sandbox_setup(assignment: Assignment, sandbox: bool) -> Setup:
    """The zygote's root (allowed packages only: a forbidden module is absent) and its imports."""
    cgroups = check_host(sandbox)
    extra = ["sklearn.datasets"] if "scikit-learn" in assignment.packages else []  # optlab.data's digits
    modules = [n for n in [*source_imports(assignment.source), *extra]
               if n.split(".")[0] not in assignment.forbidden]  # one that is absent just fails there
    return Setup(binds=allow_list(assignment.packages, assignment.forbidden) if sandbox else [],
                 prewarm=modules, sandbox=sandbox, cgroups=cgroups)


# --------------------------------------------------------------------------- grading one submission
def judge(case: Case, inputs, outputs, expected) -> str | None:
    """The case's judge, in this trusted process; a judge tripping on odd data is a failure."""
    try:
        return case.judge(inputs, outputs, expected)
    except Exception as exc:  # noqa: BLE001 -- malformed student output
        return f"returned data of an unexpected form ({type(exc).__name__}: {exc})"


def credited(outcomes: dict[str, dict], cases: dict[str, Case]) -> dict[str, dict]:
    """A case that requires others (see Case.requires) passes only when they pass too."""
    out = dict(outcomes)
    for case_id, outcome in outcomes.items():
        missing = [r for r in cases[case_id].requires if not outcomes.get(r, {}).get("passed")]
        if outcome.get("passed") and missing:
            out[case_id] = {"passed": False, "status": "fail",
                            "message": f"not credited: how a function behaves (arguments left unchanged, "
                                       f"errors raised) counts only together with its correct values, "
                                       f"and {', '.join(missing)} did not pass"}
    return out


class Grader:
    """Runs one submission at a time on its own sandbox worker."""

    def __init__(self, assignment: Assignment, worker: Worker):
        self.a, self.worker = assignment, worker

    def grade(self, sub: Submission) -> tuple[dict, nbformat.NotebookNode | None]:
        """The result record, and the parsed notebook (None when it could not be read)."""
        result = records.new_result(sub, self.a)
        nb = None
        try:
            nb = parse(sub)
            cells = runnable_cells(nb, self.a)
        except Rejected as exc:
            return records.finish(result, self.a, {}, exc.status, str(exc)), nb
        outcomes, status, message = self._run(cells, result)
        return records.finish(result, self.a, credited(outcomes, self.a.cases), status, message), nb

    def _run(self, cells, result) -> tuple[dict, str, str | None]:
        """Execute and call every case; after a limit is hit, a fresh child goes on with the rest."""
        deadline = time.monotonic() + self.worker.limits.timeout
        pending = list(dict.fromkeys(c for cell in self.a.cells for c in cell.case_ids))
        outcomes: dict[str, dict] = {}
        status, message = "ok", None
        result["seconds_per_case"] = {}

        def fail_rest(case_status: str, text: str) -> None:
            for case_id in pending:
                outcomes[case_id] = {"passed": False, "status": case_status, "message": text}
            pending.clear()

        while pending:
            if time.monotonic() >= deadline:
                fail_rest("timeout", "not run: the submission's time limit was used up")
                status, message = (status, message) if status != "ok" else ("timeout", "time limit exceeded")
                break
            run = self.worker.spawn(cells, deadline)
            executed = False
            try:
                started = time.monotonic()
                info = run.receive(self.worker.limits.timeout)
                if not isinstance(info, dict):
                    raise SandboxError("invalid-reply", "sent a reply the grader does not understand")
                result["seconds_executing"] = round(time.monotonic() - started, 3)
                executed = True
                result["cell_errors"] = _cell_errors(info.get("cell_errors"))
                while pending:
                    case_id = pending[0]
                    case = self.a.cases[case_id]
                    inputs, expected = self.a.prepared[case_id]
                    started = time.monotonic()
                    reply = run.request(case.driver, inputs, case.timeout)
                    result["seconds_per_case"][case_id] = round(time.monotonic() - started, 3)
                    pending.pop(0)
                    outcomes[case_id] = self._judge(case, inputs, reply["output"], expected)
                    if outcomes[case_id]["status"] == "memory" and status == "ok":
                        status, message = "memory", "memory limit exceeded"
            except SandboxError as exc:
                where = f"while running {pending[0]}" if executed else "while executing the notebook"
                text = f"{exc} {where}"
                if not executed:
                    fail_rest(exc.status, f"not run: {text}")  # the notebook itself never finished
                elif pending:
                    outcomes[pending.pop(0)] = {"passed": False, "status": exc.status, "message": text}
                if status == "ok":
                    status, message = exc.status, text
            finally:
                how = run.close()
                result["output"] = run.output_text()
                result["output_bytes"] = run.output_bytes
            if status == "crashed" and message and not message.endswith(")"):
                message = f"{message} ({how})"
        return outcomes, status, message

    def _judge(self, case: Case, inputs, output, expected) -> dict:
        if is_error(output):  # the driver itself failed (e.g. unsendable result)
            if memory_error(output):
                return {"passed": False, "status": "memory", "message": "memory limit exceeded"}
            return {"passed": False, "status": "error",
                    "message": f"{output['__error__']}: {output['message']}"}
        if isinstance(output, dict) and memory_error(output.get("error")):
            return {"passed": False, "status": "memory", "message": "memory limit exceeded"}
        verdict = judge(case, inputs, output, expected)
        return {"passed": verdict is None, "status": "pass" if verdict is None else "fail",
                "message": None if verdict is None else clean_text(verdict, 500)}


def _cell_errors(value) -> list[dict]:
    """The child's report of cells that raised, kept only in the expected shape."""
    ok = lambda e: (isinstance(e, dict) and type(e.get("cell")) is int and is_error(e.get("error"))  # noqa: E731
                    and all(isinstance(v, str) for v in e["error"].values()))
    return [{"cell": e["cell"], "error": dict(e["error"])} for e in value if ok(e)][:50] \
        if isinstance(value, list) else []


# --------------------------------------------------------------------------- the whole run
def grade_all(assignment: Assignment, subs: list[Submission], recorder: records.Recorder, *,
              workers: int, limits: Limits, sandbox: bool, progress,
              seed: int | None = None, clock: dict | None = None) -> list[dict]:
    """Grade `subs` on `workers` sandbox workers; each result is recorded as soon as it is known.

    The workers start (imports, sandbox) while this process draws the inputs and reference outputs.
    """
    if not subs:
        return []
    pool = Queue()
    started = []
    try:
        setup = sandbox_setup(assignment, sandbox)
        for i in range(max(1, min(workers, len(subs)))):
            w = Worker(i, setup, limits, log=recorder.out / f".worker-{i}.log")
            w.launch()
            started.append(w)
        if not assignment.prepared:
            prepare(assignment, seed)
        for w in started:
            w.wait_ready()
            pool.put(w)
        if clock is not None:
            clock["ready"] = time.monotonic()  # start-up done: what follows is the steady state
        layers = started[0].layers if started else []

        def one(sub: Submission):
            w = pool.get()
            nb = None
            try:
                res, nb = Grader(assignment, w).grade(sub)
            except Exception as exc:  # noqa: BLE001 -- a grader fault is recorded, never fatal
                if w.alive():
                    w.stop()
                res = records.finish(records.new_result(sub, assignment), assignment, {},
                                     "grader-error", f"{type(exc).__name__}: {exc}")
            finally:
                pool.put(w)
            res["sandbox"] = {"enabled": sandbox, "layers": layers, "limits": vars(limits)}
            return res, nb

        results = []
        with ThreadPoolExecutor(max_workers=len(started) or 1) as ex:
            futures = {ex.submit(one, s): s for s in subs}
            for fut in as_completed(futures):
                res, nb = fut.result()
                recorder.save(futures[fut], res, nb)
                results.append(res)
                progress(res)
        return results
    finally:
        for w in started:
            w.release()
        if started and started[0].setup.cgroups is not None:
            started[0].setup.cgroups.close()
