"""``check(case_id)``: the in-kernel test (students, ``nbgrader validate``, stock ``nbgrader autograde``).

Where ``solutions/`` exists (the instructor's machine) the case comes from
``solutions/<assignment>/cases.py`` — hidden ones included, with inputs drawn from the case's fixed
seed (or ``$AUTOGRADER_SEED``). Elsewhere the visible cases come as data from ``visible_cases.json``
next to the notebook or, for a notebook opened alone, from the student package's copy. Inputs and outputs cross ``encode``/``decode`` exactly as they do in the
hardened grader, so both paths see the same data.

This path runs in the student's own kernel and can be fooled by it; grades that count come from
``python -m autograder grade``.
"""
from __future__ import annotations

import ast
import os
import sys
import textwrap
from functools import lru_cache
from pathlib import Path

import numpy as np

from autograder import drivers
from autograder.case import (REPO_ROOT, VISIBLE_CASES_FILE, case_seed, decode, encode,
                             judge_from_data, load_cases)


@lru_cache(maxsize=None)
def _cases(assignment: str, root: str):
    return load_cases(assignment, root)[0]


@lru_cache(maxsize=None)
def _visible(path: str):
    return decode(Path(path).read_bytes(), max_bytes=2**30)


def _assignments(root: Path) -> list[str]:
    """Candidate assignments, most likely first: $AUTOGRADER_ASSIGNMENT, the notebook's folder, all."""
    solutions = root / "solutions"
    found = sorted(p.parent.name for p in solutions.glob("*/cases.py"))
    first = [a for a in (os.environ.get("AUTOGRADER_ASSIGNMENT"), Path.cwd().name) if a in found]
    return first + [a for a in found if a not in first]


def resolve(case_id: str, root: Path | str = REPO_ROOT):
    """(inputs, expected, judge, driver name) for ``case_id``: from solutions/, else visible data."""
    root = Path(root)
    for assignment in _assignments(root):
        cases = _cases(assignment, str(root))
        if case_id in cases:
            case = cases[case_id]
            seed = int(os.environ.get("AUTOGRADER_SEED", case_seed(case_id)))
            inputs, expected = case.draw(np.random.default_rng(seed))
            return inputs, expected, case.judge, case.driver
    for path in visible_files():
        data = _visible(str(path.resolve()))["cases"]
        if case_id in data:
            entry = data[case_id]
            return entry["inputs"], entry["expected"], judge_from_data(entry["judge"]), entry["driver"]
    raise LookupError(f"test case {case_id!r} is not available here: hidden tests run when the "
                      f"notebook is graded; visible ones need {VISIBLE_CASES_FILE} next to the notebook "
                      "or the course's student package (the notebook's first cell installs it)")


def visible_files() -> list[Path]:
    """Visible case data: the file next to the notebook, then the copies the student package
    carries (``autograder/visible/<assignment>.json``, written into its wheel)."""
    beside = Path.cwd() / VISIBLE_CASES_FILE
    packaged = sorted((Path(__file__).parent / "visible").glob("*.json"))
    return ([beside] if beside.is_file() else []) + packaged


def run_case(case_id: str, ns: dict, root: Path | str | None = None) -> str | None:
    """Run one case against namespace ``ns``; None if it passed, else the feedback message.

    The course is this repository, or ``$AUTOGRADER_COURSE`` (a course folder with ``solutions/``,
    e.g. for stock ``nbgrader autograde`` of another course)."""
    root = root or os.environ.get("AUTOGRADER_COURSE") or REPO_ROOT
    inputs, expected, judge, driver = resolve(case_id, root)
    sent = decode(encode(inputs))
    try:
        outputs = decode(encode(getattr(drivers, driver)(ns, **sent)))
    except ValueError as exc:  # e.g. a function returned an object that is not plain data
        return f"the result cannot be checked: {exc}"
    return judge(inputs, outputs, expected)


def graded_modules(case_id: str, root: Path | str = REPO_ROOT) -> list[str] | None:
    """The modules (besides the standard library) that grading offers the case's assignment."""
    root = Path(root)
    for assignment in _assignments(root):
        if case_id in _cases(assignment, str(root)):
            return _graded_modules(assignment, str(root))
    for path in visible_files():
        data = _visible(str(path.resolve()))
        if case_id in data["cases"]:
            return data.get("modules")
    return None


@lru_cache(maxsize=None)
def _graded_modules(assignment: str, root: str) -> list[str]:
    from autograder.case import graded_modules as of_assignment
    return of_assignment(assignment, root)


_reported: set[str] = set()  # absent imports already reported in this kernel: each mistake once


def absent_imports(ns: dict, modules: list[str]) -> list[str]:
    """Top-level modules that the cells run so far (IPython's ``In``) import and grading lacks:
    neither the standard library nor `modules` (a file of your own is not submitted either)."""
    from IPython.core.inputtransformer2 import TransformerManager
    transform, found = TransformerManager(), []
    for source in ns.get("In", [])[1:]:
        try:
            tree = ast.parse(transform.transform_cell(source))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            found += [top for n in names if (top := n.split(".")[0]) not in sys.stdlib_module_names
                      and top not in modules and top not in found]
    return found


class CheckFailed(AssertionError):
    """A check's verdict. Jupyter shows its message alone, wrapped to fit `nbgrader validate`'s
    lines (which cut at 87 characters), not the checker's frames (IPython's _render_traceback_)."""

    def _render_traceback_(self) -> list[str]:
        return textwrap.wrap(f"Check failed: {self}", 80, subsequent_indent="    ", break_on_hyphens=False)


def check(case_id: str) -> None:
    """Run test case ``case_id`` on the caller's functions; AssertionError with feedback if it fails.

    An import of a module that grading lacks fails the first check after it, once, by its name."""
    __tracebackhide__ = True  # IPython and pytest show the message, not this frame
    ns = sys._getframe(1).f_globals
    modules = graded_modules(case_id, os.environ.get("AUTOGRADER_COURSE") or REPO_ROOT)
    absent = [m for m in absent_imports(ns, modules) if m not in _reported] if modules is not None else []
    if absent:
        _reported.update(absent)
        names = ", ".join(absent)
        raise CheckFailed(f"import {names}: not available when this notebook is graded; remove the "
                             "import and the code that uses it")
    message = run_case(case_id, ns)
    if message is not None:
        raise CheckFailed(f"{case_id}: {message}")
    print(f"passed: {case_id}")
