"""The test cells of a SOURCE notebook (instructor-only): points and the cases each one checks.

A test cell may only hold ``check("<case-id>")`` calls; it is parsed with ``ast``, never executed.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TestCell:
    __test__ = False  # not a pytest class
    grade_id: str
    points: float
    case_ids: tuple[str, ...]

def _check_calls(source: str, where: str) -> tuple[str, ...]:
    tree = ast.parse(source)
    ids = []
    for stmt in tree.body:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "check"
                and len(call.args) == 1 and not call.keywords
                and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)):
            raise ValueError(f"{where}: a test cell may only contain check(\"<case-id>\") calls, "
                             f"found: {ast.unparse(stmt)[:80]}")
        ids.append(call.args[0].value)
    if not ids:
        raise ValueError(f"{where}: test cell without check() calls")
    return tuple(ids)


def test_cells(source_notebook, where: str | None = None) -> list[TestCell]:
    """The autograder-test cells of a SOURCE notebook (a path, or the notebook already parsed),
    parsed with ``ast`` (never executed)."""
    if isinstance(source_notebook, (str, Path)):
        where = where or str(source_notebook)
        nb = json.loads(Path(source_notebook).read_text(encoding="utf-8"))
    else:
        nb = source_notebook
    cells = []
    for index, cell in enumerate(nb["cells"]):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        where_cell = f"{where} cell {index} ({meta.get('grade_id')})"
        cells.append(TestCell(meta["grade_id"], float(meta["points"]), _check_calls(source, where_cell)))
    return cells


test_cells.__test__ = False  # not a pytest test
