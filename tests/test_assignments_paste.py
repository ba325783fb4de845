"""Pasting the chapters does not pass the assignments (graded by the real grader; the sandbox needs root).

`fixtures/grading/paste.py` builds the notebook of a student who copies every chapter function whose
name matches an assignment function, adapted only in signature. Measured with the grader, in points
of the autograded total, before the assignments asked for more than the chapters show: optimizers
18/25, classification 10/20, backprop 11/22. Now: optimizers 4/23, classification 5/21, backprop 6/23.
"""
from __future__ import annotations

import ast
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grading"))
from paste import ADAPTERS, CHAPTER_DEFINITIONS, chapter_names, paste_submission  # noqa: E402
from submissions import submission  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ["optimizers", "classification", "backprop"]
MAX_PASTE_SHARE = 0.30
# cases the pasted chapter code does pass: the adapters work, so the low score is the assignment's doing
PASTE_PASSES = {
    "optimizers": ["sgd_momentum.visible", "sgd_momentum.schedule", "sgd_momentum.float32"],
    "classification": ["softmax.visible", "log_softmax.visible", "cross_entropy.plain"],
    "backprop": ["Linear.visible", "ReLU.visible", "Sigmoid.visible", "softmax_cross_entropy.visible"],
}
# torch.optim.SGD's form: right only while the learning rate stays constant
TORCH_FORM_MOMENTUM = ("def sgd_momentum(theta, g, state, lr=0.01, lam=0.9, nesterov=False):\n"
                       "    v = lam * state.get('v', np.zeros_like(theta)) + g\n"
                       "    return theta - lr * (g + lam * v if nesterov else v), {'v': v}\n")


def _source(a: str) -> Path:
    return ROOT / "solutions" / a / f"{a}.ipynb"


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def graded(request, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the sandbox needs root")
    a = request.param
    tmp = tmp_path_factory.mktemp(a)
    shutil.copytree(_source(a).parent, tmp / "course" / "solutions" / a)
    (tmp / "inbox").mkdir()
    (tmp / "inbox" / "paste.ipynb").write_bytes(paste_submission(a))
    if a == "optimizers":
        (tmp / "inbox" / "torch_momentum.ipynb").write_bytes(
            submission(_source(a), reference=True, solutions={"sgd_momentum-code": TORCH_FORM_MOMENTUM}))
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", a, str(tmp / "inbox"), "--out",
                           str(tmp / "out"), "--root", str(tmp / "course"), "--workers", "2"],
                          capture_output=True, text=True, timeout=900, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["student_id"]: r for r in csv.DictReader(open(tmp / "out" / "grades.csv", encoding="utf-8"))}
    results = {sid: json.loads((tmp / "out" / "students" / sid / "results.json").read_text(encoding="utf-8"))
               for sid in rows}
    return dict(a=a, rows=rows, results=results)


def _cases(result) -> dict[str, dict]:
    return {c["case"]: c for t in result["tests"] for c in t["cases"]}


def test_pasting_the_chapters_earns_at_most_30_percent(graded):
    row, cases = graded["rows"]["paste"], _cases(graded["results"]["paste"])
    assert row["status"] == "ok", row
    score, total = float(row["score"]), float(row["max_score"])
    print(f"{graded['a']}: pasting the chapters earns {score:g}/{total:g}")
    assert score <= MAX_PASTE_SHARE * total, (score, total, [c for c, v in cases.items() if v["passed"]])
    assert all(cases[c]["passed"] for c in PASTE_PASSES[graded["a"]]), {c: cases[c]["message"]
                                                                        for c in PASTE_PASSES[graded["a"]]}


def test_pytorch_form_momentum_loses_points_under_a_schedule_with_its_own_message(graded):
    if graded["a"] != "optimizers":
        pytest.skip("momentum is in optimizers")
    row, cases = graded["rows"]["torch_momentum"], _cases(graded["results"]["torch_momentum"])
    lost = {c for c, v in cases.items() if not v["passed"]}
    claims = {"sgd_momentum.unchanged_args", "sgd_momentum.visible_unchanged"}  # not credited without values
    assert lost == {"sgd_momentum.schedule", "sgd_momentum.float32", "sgd_momentum.nesterov_float32",
                    "sgd_momentum.visible_float32", "sgd_momentum.visible_nesterov_float32", *claims}, lost
    assert all("PyTorch's form" in cases[c]["message"] for c in lost - claims)
    assert float(row["score"]) == float(row["max_score"]) - 6


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_chapter_function_named_like_an_assignment_function_is_pasted(assignment):
    """A chapter that later defines, say, `clip_grad_norm` makes this fail until the paste includes it."""
    nb = json.loads(_source(assignment).read_text(encoding="utf-8"))
    defined = {node.name for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("solution")
               and c["cell_type"] == "code" for node in ast.parse("".join(c["source"])).body
               if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    pasted = {name for _, name in CHAPTER_DEFINITIONS[assignment]}
    adapted = {getattr(node, "name", None) or node.targets[0].id
               for src in ADAPTERS[assignment].values() for node in ast.parse(src).body}
    assert defined & chapter_names() <= pasted, defined & chapter_names() - pasted
    assert adapted <= defined, adapted - defined
