"""The course as the trusted grader sees it: nbgrader's configuration and each assignment's source.

A :class:`Course` reads ``nbgrader_config.py`` once (the course id, where the source notebooks live);
:meth:`Course.assignment` loads an assignment once: its source notebook parsed a single time (test
cells, grade ids, imports, the released and stub versions all come from that one parse) and its
``cases.py``. :func:`draw` then makes one run's hidden inputs and reference outputs, a value of its own
(:class:`Draw`): nothing here changes after loading.
"""
from __future__ import annotations

import ast
import copy
import functools
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np

from autograder.case import REPO_ROOT, Case, import_file, load_cases
from autograder.testcells import TestCell, test_cells
from autograder.sandbox import packages_of


class UnknownAssignment(Exception):
    pass


def default_root() -> Path:
    """The course: the current directory if it has solutions/, else this repository."""
    return Path.cwd() if (Path.cwd() / "solutions").is_dir() else REPO_ROOT


def nbgrader_config(root: Path):
    """The nbgrader configuration nbgrader's own commands would read for this course: every
    ``nbgrader_config.py`` on Jupyter's config path, then the course folder's (the instructor's
    trusted files; e.g. ``AssignLatePenalties.plugin_class``, ``LateSubmissionPlugin.penalty_method``)."""
    from jupyter_core.paths import jupyter_config_path
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader
    config = Config()
    for folder in [*reversed(jupyter_config_path()), str(root)]:
        if (Path(folder) / "nbgrader_config.py").is_file():
            config.merge(PyFileConfigLoader("nbgrader_config.py", folder).load_config())
    if str(root) not in sys.path:  # a plugin class named in the course's config lives beside it
        sys.path.append(str(root))
    return config


@dataclass
class Assignment:
    name: str
    root: Path
    source: Path  # <source_directory>/<a>/<a>.ipynb
    notebook: nbformat.NotebookNode = field(repr=False)  # the source, parsed once; never modified
    cells: list[TestCell]
    cases: dict[str, Case]
    forbidden: list[str]  # modules absent from the submission's filesystem
    packages: list[str]  # distributions present in the sandbox (with their dependencies)
    imports: list[str]  # modules the source notebook imports (the sandbox pre-imports them)

    @property
    def max_score(self) -> float:
        return sum(c.points for c in self.cells)

    @functools.cached_property
    def grade_ids(self) -> set[str]:
        """Every nbgrader cell id of the source notebook."""
        return {c.metadata.get("nbgrader", {}).get("grade_id") for c in self.notebook.cells} - {None}

    @functools.cached_property
    def released(self) -> nbformat.NotebookNode:
        """The source with hidden tests removed, as nbgrader releases it."""
        from nbgrader.preprocessors import ClearHiddenTests
        return ClearHiddenTests().preprocess(copy.deepcopy(self.notebook), {})[0]

    @functools.cached_property
    def stubs(self) -> nbformat.NotebookNode:
        """The source as students receive it: solutions replaced by their stubs."""
        from nbgrader.preprocessors import ClearSolutions
        return ClearSolutions().preprocess(copy.deepcopy(self.released), {"language": "python"})[0]


class Course:
    """One course folder: its nbgrader configuration and its assignments, each loaded once."""

    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()
        self._assignments: dict[str, Assignment] = {}

    @functools.cached_property
    def config(self):
        return nbgrader_config(self.root)

    @property
    def course_id(self) -> str:
        return str(self.config.CourseDirectory.get("course_id", "") or "")

    @property
    def source_directory(self) -> Path:
        """nbgrader's ``CourseDirectory.source_directory`` ("solutions" here); the same default where
        nbgrader's configuration cannot be read (a grader-only environment without jupyter_core)."""
        try:
            configured = self.config.CourseDirectory.get("source_directory", "")
        except ImportError:
            configured = ""
        return self.root / (str(configured) or "solutions")

    def assignment(self, name: str) -> Assignment:
        if name not in self._assignments:
            self._assignments[name] = self._load(name)
        return self._assignments[name]

    def _load(self, name: str) -> Assignment:
        folder = self.source_directory / name
        source = folder / f"{name}.ipynb"
        if not source.is_file():
            known = sorted(p.name for p in self.source_directory.glob("*") if p.is_dir())
            raise UnknownAssignment(f"unknown assignment {name!r}: {source} does not exist "
                                    f"(known: {', '.join(known) or 'none'})")
        cases, forbidden = load_cases(name, self.root, folder / "cases.py")
        notebook = nbformat.read(source, as_version=4)
        cells = test_cells(notebook, where=str(source))
        missing = sorted({c for cell in cells for c in cell.case_ids} - set(cases))
        if missing:
            raise UnknownAssignment(f"{name}: test cells name cases that cases.py lacks: {missing}")
        imports = source_imports(notebook)
        declared = getattr(import_file(folder / "cases.py"), "PACKAGES", [])
        return Assignment(name, self.root, source, notebook, cells, cases, forbidden,
                          packages=sorted(set(declared) | set(packages_of(imports))), imports=imports)


def load_assignment(name: str, root: Path) -> Assignment:
    return Course(root).assignment(name)


def source_imports(notebook: nbformat.NotebookNode) -> list[str]:
    """The modules the SOURCE notebook imports (trusted; never a submission's code)."""
    from IPython.core.inputtransformer2 import TransformerManager
    tm = TransformerManager()
    names = set()
    for cell in notebook.cells:
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


@dataclass(frozen=True)
class Draw:
    """One run's hidden inputs and reference outputs, from one fresh seed. Inputs go to the sandbox;
    the expected outputs never leave the trusted process."""

    seed: int
    inputs: dict[str, dict]
    expected: dict[str, object] = field(repr=False)


def draw(assignment: Assignment, seed: int | None = None) -> Draw:
    """Every case's inputs (hidden ones included) from a fresh seed, and the reference outputs."""
    seed = secrets.randbits(63) if seed is None else seed
    inputs, expected = {}, {}
    for i, case_id in enumerate(sorted(assignment.cases)):
        inputs[case_id], expected[case_id] = assignment.cases[case_id].draw(np.random.default_rng([seed, i]))
    return Draw(seed, inputs, expected)
