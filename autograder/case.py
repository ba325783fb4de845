"""Test cases shared by the in-kernel check and the hardened grader (see CONTRACT.md).

A :class:`Case` names a driver (in :mod:`autograder.drivers`, run next to the student's code), draws
its inputs and computes the reference outputs on the trusted side, and judges the student's outputs
there. Cases live in ``solutions/<assignment>/cases.py`` (instructor-only); this module is public and
holds no solution.

Judges (:mod:`autograder.judges`) and the parsing of test cells (:mod:`autograder.testcells`) have
modules of their own; the channel's codec is :mod:`autograder.channel`. The names that ``cases.py``
files use are importable from here.
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from autograder.channel import decode, encode, error_marker, is_error  # noqa: F401 (re-exported)
# the judges and the test-cell parser live in their own modules; cases.py files import them from here
from autograder.judges import Accuracy, Batches, Close, Raises, judge_from_data  # noqa: F401
from autograder.testcells import TestCell, test_cells  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[1]
VISIBLE_CASES_FILE = "visible_cases.json"


@dataclass(frozen=True)
class Case:
    driver: str  # name of a function in autograder/drivers.py
    inputs: Callable[[np.random.Generator], dict]  # trusted side: draws the (hidden) inputs
    expected: Callable[[dict], object]  # trusted side: reference outputs for those inputs
    judge: Callable[[dict, object, object], "str | None"]  # None if passed, else feedback
    timeout: float = 10.0  # seconds for this one call in the sandbox
    visible: bool = False  # shipped to students as data in visible_cases.json
    # Cases whose pass this one needs to earn anything: a judge that can only take the submission's
    # word (which exception was raised) never earns points on its own.
    requires: tuple[str, ...] = ()
    # Data only the trusted side ever holds, drawn afresh with the inputs (e.g. a held-out test set
    # generated from a seed the submission never sees); the judge finds it in expected["hidden"].
    hidden: Callable[[np.random.Generator], object] | None = None

    def draw(self, rng: np.random.Generator) -> tuple[dict, object]:
        """Inputs (the driver calls twice when the judge checks that arguments stay unchanged) and
        the reference outputs for them."""
        inputs = self.inputs(rng)
        if getattr(self.judge, "immutable", False):
            inputs = {**inputs, "again": True}
        if self.hidden is not None:
            return inputs, {"hidden": self.hidden(rng)}
        return inputs, self.expected(inputs)


def case_seed(case_id: str) -> int:
    """The fixed seed of a case for the in-kernel path and for visible data."""
    return int.from_bytes(hashlib.sha256(case_id.encode()).digest()[:8], "little")


# --------------------------------------------------------------------------- loading cases
_IMPORTING = threading.RLock()  # re-entrant: a cases.py imports its siblings while it loads


def import_file(path: Path | str, name: str | None = None):
    """Import a Python file as a module (cases.py, reference.py: not a package).

    The module is reused while the file is unchanged, so classes keep one identity per process.
    Thread-safe: a module is handed out only once it has run completely (grading runs in threads).
    """
    path = Path(path).resolve()
    name = name or f"_autograder_{path.parent.name}_{path.stem}"
    with _IMPORTING:
        stamp = path.stat().st_mtime_ns
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None) == str(path) and \
                getattr(module, "_autograder_stamp", None) == stamp:
            return module
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        module._autograder_stamp = stamp
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)  # never a half-run module for the next caller
            raise
        return module


def sibling(file: str, stem: str):
    """``reference = sibling(__file__, "reference")`` inside a cases.py."""
    return import_file(Path(file).with_name(f"{stem}.py"))


def load_cases(assignment: str, root: Path | str = REPO_ROOT,
               path: Path | None = None) -> tuple[dict[str, Case], list[str]]:
    """``CASES`` and ``FORBIDDEN_IMPORTS`` of ``<root>/solutions/<assignment>/cases.py`` (or `path`)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", assignment):
        raise ValueError(f"not an assignment id: {assignment!r}")
    path = Path(path) if path is not None else Path(root) / "solutions" / assignment / "cases.py"
    if not path.is_file():
        raise FileNotFoundError(f"no cases for assignment {assignment!r}: {path} is missing")
    module = import_file(path)
    return dict(module.CASES), list(module.FORBIDDEN_IMPORTS)


def reference_outputs(driver: str, fn: str, implementation, inputs: dict):
    """Trusted side: run ``driver`` on ``implementation`` (a reference or a known-wrong variant)."""
    from autograder import drivers

    with np.errstate(all="ignore"):
        return getattr(drivers, driver)({fn: implementation}, **inputs)


# --------------------------------------------------------------------------- visible case data
def visible_data(assignment: str, root: Path | str = REPO_ROOT) -> dict:
    """Inputs, reference outputs and judge (as data) of every visible case, for students."""
    cases, _ = load_cases(assignment, root)
    out = {}
    for case_id, case in sorted(cases.items()):
        if not case.visible:
            continue
        inputs, expected = case.draw(np.random.default_rng(case_seed(case_id)))
        out[case_id] = {"driver": case.driver, "inputs": inputs, "expected": expected,
                        "judge": case.judge.as_data(inputs)}
    return {"assignment": assignment, "cases": out, "modules": graded_modules(assignment, root)}


def graded_modules(assignment: str, root: Path | str = REPO_ROOT) -> list[str]:
    """Top-level modules besides the standard library that a submission of `assignment` can
    import when graded (its sandbox holds no other); the visible checks hold students to it."""
    from autograder.course import load_assignment
    from autograder.sandbox import importable
    loaded = load_assignment(assignment, Path(root))
    return importable(loaded.packages, loaded.forbidden)


def write_visible_cases(assignment: str, root: Path | str = REPO_ROOT, dest: Path | str | None = None) -> Path:
    """Write ``visible_data`` to ``dest`` (default ``<root>/assignments/<assignment>/``)."""
    dest = Path(dest) if dest else Path(root) / "assignments" / assignment
    path = dest / VISIBLE_CASES_FILE
    path.write_bytes(encode(visible_data(assignment, root)) + b"\n")
    return path


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m autograder.case",
                                     description="Write assignments/<assignment>/visible_cases.json from solutions/.")
    parser.add_argument("assignment")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="course folder (default: here)")
    args = parser.parse_args()
    print(write_visible_cases(args.assignment, root=args.root))
