"""The course's real assignments through the hardened grader (one grading run per assignment).

The reference solution scores full marks (fairness); the untouched student notebook scores 0 with no
grading error; patching the comparison functions (numpy, torch) on top of it earns nothing; in
`backprop` an otherwise correct solution that imports torch gets `forbidden-import`.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grading"))
from submissions import released, submission  # noqa: E402

import nbformat  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ["optimizers", "classification", "backprop"]
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")

PATCHES = ("import numpy, numpy.testing, torch, builtins\n"
           "numpy.allclose = torch.allclose = lambda *a, **k: True\n"
           "numpy.testing.assert_allclose = numpy.testing.assert_array_equal = lambda *a, **k: None\n"
           "torch.testing.assert_close = lambda *a, **k: None\n"
           "builtins.abs = lambda x: 0\n")


TORCH_CLASSIFICATION = {
    "softmax-code": "import torch\n\ndef softmax(logits):\n"
                    "    return torch.softmax(torch.as_tensor(logits), dim=-1).numpy()\n",
    "log_softmax-code": "def log_softmax(logits):\n"
                        "    return torch.log_softmax(torch.as_tensor(logits), dim=-1).numpy()\n",
    "cross_entropy-code": "def cross_entropy(logits, labels):\n    return torch.nn.functional.cross_entropy("
                          "torch.as_tensor(logits), torch.as_tensor(labels, dtype=torch.long)).item()\n",
}


def _student_notebook(a: str) -> bytes:
    path = ROOT / "assignments" / a / f"{a}.ipynb"
    if path.is_file():
        return path.read_bytes()
    return nbformat.writes(released(ROOT / "solutions" / a / f"{a}.ipynb")).encode()


def _with_torch_import(source: Path) -> bytes:
    nb = nbformat.read(source, as_version=4)
    first = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code")
    first.source = "import torch\n" + first.source
    return nbformat.writes(nb).encode()


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def graded(request, tmp_path_factory):
    a = request.param
    source = ROOT / "solutions" / a / f"{a}.ipynb"
    if not (source.is_file() and (source.parent / "cases.py").is_file()):
        pytest.skip(f"solutions/{a} is not there yet")
    tmp = tmp_path_factory.mktemp(a)
    course = tmp / "course"
    shutil.copytree(source.parent, course / "solutions" / a)
    inbox = tmp / "inbox"
    inbox.mkdir()
    student = _student_notebook(a)
    subs = {"reference": source.read_bytes(), "untouched": student}
    nb = nbformat.reads(student.decode(), as_version=4)
    setup = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    nb.cells.insert(setup + 1, nbformat.v4.new_code_cell(PATCHES.replace("torch, ", "") if a == "backprop" else PATCHES))
    subs["patched"] = nbformat.writes(nb).encode()
    if a == "backprop":
        subs["uses_torch"] = _with_torch_import(source)
    if a == "classification":  # a torch implementation is as good as a numpy one
        subs["torch_version"] = submission(source, reference=True, solutions=TORCH_CLASSIFICATION)
    for sid, data in subs.items():
        (inbox / f"{sid}.ipynb").write_bytes(data)
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", a, str(inbox), "--out", str(tmp / "out"),
                           "--root", str(course), "--workers", "2"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    rows = {r["student_id"]: r for r in csv.DictReader(open(tmp / "out" / "grades.csv"))}
    results = {sid: json.loads((tmp / "out" / sid / "results.json").read_text()) for sid in rows}
    return a, rows, results


def _failures(result):
    return [(c["case"], c["message"]) for t in result["tests"] for c in t["cases"] if not c["passed"]]


def test_reference_scores_full_marks(graded):
    _, rows, results = graded
    row = rows["reference"]
    assert row["status"] == "ok" and float(row["score"]) == float(row["max_score"]) > 0, _failures(results["reference"])


def test_torch_implementation_scores_full_marks(graded):
    a, rows, results = graded
    if a != "classification":
        pytest.skip("checked on classification")
    row = rows["torch_version"]
    assert row["status"] == "ok" and row["score"] == row["max_score"], _failures(results["torch_version"])


def test_untouched_student_notebook_scores_zero_without_grading_errors(graded):
    _, rows, results = graded
    assert (rows["untouched"]["status"], float(rows["untouched"]["score"])) == ("ok", 0.0)
    statuses = {c["status"] for t in results["untouched"]["tests"] for c in t["cases"]}
    assert statuses == {"fail"}, statuses  # judged failures, never a timeout, crash or grader error


def test_patched_comparisons_earn_nothing(graded):
    _, rows, _ = graded
    assert float(rows["patched"]["score"]) == 0.0


def test_backprop_forbids_torch(graded):
    a, rows, results = graded
    if a != "backprop":
        pytest.skip("only backprop forbids torch")
    assert (rows["uses_torch"]["status"], float(rows["uses_torch"]["score"])) == ("forbidden-import", 0.0)
    assert "torch" in results["uses_torch"]["message"]
