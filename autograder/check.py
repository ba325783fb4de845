"""``check(case_id)``: the in-kernel test (students, ``nbgrader validate``, stock ``nbgrader autograde``).

Where ``solutions/`` exists (the instructor's machine) the case comes from
``solutions/<assignment>/cases.py`` — hidden ones included, with inputs drawn from the case's fixed
seed (or ``$AUTOGRADER_SEED``). Elsewhere the visible cases come as data from ``visible_cases.json``
next to the notebook. Inputs and outputs cross ``encode``/``decode`` exactly as they do in the
hardened grader, so both paths see the same data.

This path runs in the student's own kernel and can be fooled by it; grades that count come from
``python -m autograder grade``.
"""
from __future__ import annotations

import os
import sys
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
    path = Path.cwd() / VISIBLE_CASES_FILE
    if path.is_file():
        data = _visible(str(path.resolve()))["cases"]
        if case_id in data:
            entry = data[case_id]
            return entry["inputs"], entry["expected"], judge_from_data(entry["judge"]), entry["driver"]
    raise LookupError(f"test case {case_id!r} is not available here: hidden tests run when the "
                      f"notebook is graded; visible ones need {VISIBLE_CASES_FILE} next to the notebook")


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


def check(case_id: str) -> None:
    """Run test case ``case_id`` on the caller's functions; AssertionError with feedback if it fails."""
    __tracebackhide__ = True  # IPython and pytest show the message, not this frame
    ns = sys._getframe(1).f_globals
    message = run_case(case_id, ns)
    if message is not None:
        raise AssertionError(f"{case_id}: {message}")
    print(f"passed: {case_id}")
