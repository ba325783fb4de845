"""The course's real assignments through the hardened grader, attacked: one grading run per assignment.

Every assignment gets the same classes of attack, each a real submission notebook (see the issue
"Grading you can trust under attack"): the reference still scores full marks next to them, the
untouched student notebook scores 0 without a grading error, and no attack earns a point, reads what
it must not, or costs the trusted process more than a fixed budget. Needs root (namespaces, cgroups).
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grading"))
from submissions import released, submission  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MEASURED = Path(__file__).parent / "fixtures" / "grading" / "measured.py"
ASSIGNMENTS = ["optimizers", "classification", "backprop"]
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")
TOKEN = "lms-api-token-5f1e9c"  # an instructor's secret in the grader's environment
MAX_GRADER_RSS_KB = 800_000  # the trusted process, whatever the submissions do (baseline 85-340 MB)

PATCHES = ("import numpy, numpy.testing, builtins\n"
           "numpy.allclose = lambda *a, **k: True\n"
           "numpy.testing.assert_allclose = numpy.testing.assert_array_equal = lambda *a, **k: None\n"
           "builtins.abs = lambda x: 0\n")

TORCH_CLASSIFICATION = {
    "softmax-code": "import torch\n\ndef softmax(logits):\n"
                    "    return torch.softmax(torch.as_tensor(logits), dim=-1).numpy()\n",
    "log_softmax-code": "def log_softmax(logits):\n"
                        "    return torch.log_softmax(torch.as_tensor(logits), dim=-1).numpy()\n",
    "cross_entropy-code": "def torch_loss(logits, labels, weight, label_smoothing):\n"
                          "    return torch.nn.functional.cross_entropy(logits, torch.as_tensor(labels, dtype=torch.long),"
                          " weight=None if weight is None else torch.as_tensor(weight), label_smoothing=label_smoothing)\n\n"
                          "def cross_entropy(logits, labels, weight=None, label_smoothing=0.0):\n"
                          "    return torch_loss(torch.as_tensor(logits), labels, weight, label_smoothing).item()\n",
    "cross_entropy_grad-code": "def cross_entropy_grad(logits, labels, weight=None, label_smoothing=0.0):\n"
                               "    z = torch.tensor(logits, requires_grad=True)  # autograd\n"
                               "    torch_loss(z, labels, weight, label_smoothing).backward()\n"
                               "    return z.grad.numpy()\n",
}

# -- attack cells, each added to an otherwise untouched (0-point) or reference (full-mark) notebook
SURROGATES = ("print('lone \\udcff surrogate \\ud800 and control \\x00\\x1b[2J chars')\n"
              "raise ValueError('\\udcff' * 3 + '\\x00 bad message')")
FORGED_ERROR = ("import gc, json\n"  # every reply: a 60 MB error marker, from the sandbox's own loop
                "loop = next(f for f in gc.get_objects() if callable(f) and getattr(f, '__name__', '') == 'run'\n"
                "            and 'recv_frame' in getattr(f, '__globals__', {}))\n"
                "loop.__globals__['encode'] = lambda obj: json.dumps(\n"
                "    {'output': {'__error__': 'E', 'message': 'x' * 60_000_000}}).encode()")
BIG_CELL = "big = '" + "a" * 12_000_000 + "'"  # one 12 MB line, under the 16 MB notebook cap
THIEF = ("import os\n"
         "for path in [{ref!r}, {course_ref!r}, {gradebook!r}, '/proc/1/environ', '/etc/shadow', '/root']:\n"
         "    try:\n        print('READ', path, open(path).read()[:200])\n"
         "    except Exception as e:\n        print('DENIED', path, type(e).__name__)\n"
         "for path in ['/run/lock/stolen', '/var/tmp/persist', {outside!r}]:\n"
         "    try:\n        open(path, 'w').write('x' * 1000); print('WROTE', path)\n"
         "    except Exception as e:\n        print('DENIED', path, type(e).__name__)\n"
         "print('ROOT', sorted(os.listdir('/')))")
ENVIRON = "import os\nprint('ENV', dict(os.environ))"
MEMORY_HOG = ("import os, time, numpy as np\nkids = []\n"  # 6 processes x 400 MB under --memory 1200
              "for _ in range(6):\n    pid = os.fork()\n    if pid == 0:\n        try:\n"
              "            a = np.ones(400 * 2**20 // 8); time.sleep(3); code = 0\n"
              "        except BaseException:\n            code = 1\n        os._exit(code)\n    kids.append(pid)\n"
              "ok = sum(os.waitpid(p, 0)[1] == 0 for p in kids)\nprint('SURVIVED', ok)")
FORGED_CLAIMS = ("import autograder.drivers as d\n"  # claim: unchanged arguments, ValueError for bad input
                 "d._twice = lambda run, again: {'result': 0.0, 'again': 0.0, 'error': None}\n"
                 "d.call_each = lambda ns, fn, calls: {'results': [{'result': None, 'error': "
                 "{'__error__': 'ValueError', 'message': ''}} for _ in calls]}\n"
                 "d.minibatches = lambda ns, **kw: {'runs': [], 'error': None}")  # no batches to check
BLOAT = ("import autograder.drivers as d\n"  # every reply: 18 000 long keys, for messages to repeat
         "d._guard = lambda run: {'result': {f'key-{i:05d}-' + 'x' * 80: 0 for i in range(18000)}, 'error': None}")
STORED_HTML = ('<img src=x onerror="alert(1)"><script>alert(2)</script>\n\n'
               '[my derivation](javascript:alert(3)) and [a reference][r]\n\n[r]: javascript:alert(4)\n')


def _student_notebook(a: str) -> bytes:
    path = ROOT / "assignments" / a / f"{a}.ipynb"
    if path.is_file():
        return path.read_bytes()
    return nbformat.writes(released(ROOT / "solutions" / a / f"{a}.ipynb")).encode()


def _with(base: bytes, *cells: str, markdown: str | None = None, html_output: str | None = None) -> bytes:
    nb = nbformat.reads(base.decode(), as_version=4)
    setup = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    for offset, code in enumerate(cells):
        cell = nbformat.v4.new_code_cell(code)
        if html_output:
            cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": html_output})]
        nb.cells.insert(setup + 1 + offset, cell)
    if markdown:
        nb.cells.append(nbformat.v4.new_markdown_cell(markdown))
    return nbformat.writes(nb).encode()


def _replace_solution(source: Path, grade_id: str, transform) -> bytes:
    nb = nbformat.read(source, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    cell.source = transform(cell.source)
    return nbformat.writes(nb).encode()


def _attacks(a: str, source: Path, course: Path, outside: Path) -> dict[str, bytes]:
    student, reference = _student_notebook(a), source.read_bytes()
    subs = {
        "reference": reference,
        "untouched": student,
        "patched": _with(student, PATCHES),
        "surrogates": _with(reference, SURROGATES),
        "grades.csv": reference,  # a student id equal to the grader's own file name
        "forged_error": _with(student, FORGED_ERROR),
        "big_cell": _with(student, BIG_CELL),
        "thief": _with(student, THIEF.format(
            ref=str(ROOT / "solutions" / a / "reference.py"), course_ref=str(course / "solutions" / a / "cases.py"),
            gradebook=str(course / "gradebook.db"), outside=str(outside))),
        "environ": _with(student, ENVIRON),
        "memory_hog": _with(student, MEMORY_HOG),
        "forged_claims": _with(student, FORGED_CLAIMS),
        "stored_html": _with(student, "print('hello')", markdown=STORED_HTML, html_output=STORED_HTML),
        "bloat": _with(student, BLOAT),
        # correct notebooks in unusual shapes: a very long line, Windows line endings
        "long_line": _with(reference, "# " + "a long comment " * 300 + "\nx = 1"),
        "crlf": reference.decode().replace("\\n", "\\r\\n").encode(),
    }
    if a == "optimizers":  # adamw changing theta in place: correct values, one behaviour point lost
        subs["inplace"] = _replace_solution(source, "adamw-code", lambda code: code.replace(
            "def adamw(", "def _adamw(") + "\n\ndef adamw(theta, g, state, **kw):\n"
            "    new, state = _adamw(theta, g, state, **kw)\n    theta[...] = new\n    return theta, state\n")
    if a == "classification":  # a torch implementation is as good as a numpy one
        subs["torch_version"] = submission(source, reference=True, solutions=TORCH_CLASSIFICATION)
        subs["wide_model"] = _replace_solution(source, "fit_softmax_regression-code", lambda code: code + (
            "\n\ndef fit_softmax_regression(X, y, *args, **kwargs):  # 3 million int8 weights: under 4 MiB\n"
            "    W = np.ones((X.shape[1], 3_000_000 // (X.shape[1] + 1)), np.int8)\n"
            "    return W, np.zeros(W.shape[1], np.int8)\n"))
    if a == "backprop":  # forbidden modules are absent, however they are reached
        subs["torch_import"] = _replace_solution(source, "Linear-code", lambda s: "import torch\n" + s)
        subs["torch_compile"] = _with(student, "code = compile('import torch', '/usr/lib/python3/x.py', 'exec')\n"
                                               "exec(code)\nprint('GOT' + '-TORCH', torch.__version__)")
        subs["torch_resolve"] = _with(student, "import pkgutil\nprint('GOT' + '-TORCH', pkgutil.resolve_name('torch'))")
        subs["sklearn_mlp"] = _with(student, "from sklearn.neural_network import MLPClassifier\nprint('GOT' + '-SKLEARN')")
        subs["says_jax"] = _with(reference, "note = 'jax and torch are not used here'")
    return subs


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def graded(request, tmp_path_factory):
    a = request.param
    source = ROOT / "solutions" / a / f"{a}.ipynb"
    tmp = tmp_path_factory.mktemp(a)
    course, inbox, outside = tmp / "course", tmp / "inbox", tmp / "outside.txt"
    shutil.copytree(source.parent, course / "solutions" / a)
    inbox.mkdir()
    subs = _attacks(a, source, course, outside)
    for sid, data in subs.items():
        (inbox / f"{sid}.ipynb").write_bytes(data)
    env = dict(os.environ, LMS_API_TOKEN=TOKEN)
    proc = subprocess.run([sys.executable, str(MEASURED), "grade", a, str(inbox), "--out", str(tmp / "out"),
                           "--root", str(course), "--workers", "2", "--memory", "1200"],
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["student_id"]: r for r in csv.DictReader(open(tmp / "out" / "grades.csv", encoding="utf-8"))}
    results = {sid: json.loads((tmp / "out" / "students" / sid / "results.json").read_text(encoding="utf-8"))
               for sid in rows}
    return dict(a=a, rows=rows, results=results, subs=subs, out=tmp / "out", course=course, proc=proc,
                outside=outside)


def _failures(result):
    return [(c["case"], c["message"]) for t in result["tests"] for c in t["cases"] if not c["passed"]]


def _score(graded, sid):
    return float(graded["rows"][sid]["score"])


@pytest.mark.parametrize("sid", ["reference", "long_line", "crlf"])
def test_every_submission_has_a_row_and_correct_ones_full_marks(graded, sid):
    assert set(graded["rows"]) == set(graded["subs"])
    row = graded["rows"][sid]
    assert row["status"] == "ok" and float(row["score"]) == float(row["max_score"]) > 0, \
        _failures(graded["results"][sid])


def test_untouched_student_notebook_scores_zero_without_grading_errors(graded):
    rows, results = graded["rows"], graded["results"]
    assert (rows["untouched"]["status"], float(rows["untouched"]["score"])) == ("ok", 0.0)
    statuses = {c["status"] for t in results["untouched"]["tests"] for c in t["cases"]}
    assert statuses == {"fail"}, statuses  # judged failures, never a timeout, crash or grader error


@pytest.mark.parametrize("sid", ["patched", "forged_error", "big_cell", "thief", "environ", "memory_hog",
                                 "forged_claims", "stored_html", "bloat"])
def test_attack_on_an_untouched_notebook_earns_nothing(graded, sid):
    assert _score(graded, sid) == 0.0, graded["results"][sid]["tests"]


# class 1: one student never stops the run, whatever their text or id
def test_surrogates_and_control_characters_are_recorded_not_fatal(graded):
    row = graded["rows"]["surrogates"]
    assert row["status"] == "ok" and row["score"] == row["max_score"]
    errors = graded["results"]["surrogates"]["cell_errors"]
    assert errors and errors[0]["error"]["__error__"] == "ValueError"
    for text in _strings(graded["results"]["surrogates"]):
        text.encode("utf-8")  # no lone surrogate survives
        assert "\x00" not in text and "\x1b" not in text
    (graded["out"] / "grades.csv").read_text(encoding="utf-8")  # valid UTF-8 throughout


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def test_a_student_named_like_the_graders_files(graded):
    assert graded["rows"]["grades.csv"]["score"] == graded["rows"]["grades.csv"]["max_score"]
    assert (graded["out"] / "grades.csv").is_file()
    assert (graded["out"] / "students" / "grades.csv" / "results.json").is_file()


# class 2: the trusted side does bounded work on student data
def test_the_trusted_process_stays_small(graded):
    rss = int(re.search(r"MAXRSS_KB (\d+)", graded["proc"].stdout)[1])
    assert rss < MAX_GRADER_RSS_KB, rss


def test_a_forged_60_mb_reply_is_refused_unread(graded):
    r = graded["results"]["forged_error"]
    assert r["status"] == "output-limit" and "limit" in r["message"], r["message"]


def test_judge_messages_are_capped(graded):
    size = (graded["out"] / "students" / "bloat" / "results.json").stat().st_size
    assert size < 300_000, size
    assert all(len(m or "") <= 500 for _, m in _failures(graded["results"]["bloat"]))


def test_a_wide_returned_model_is_refused_before_evaluation(graded):
    if graded["a"] != "classification":
        pytest.skip("classification returns a linear model")
    messages = [m for c, m in _failures(graded["results"]["wide_model"]) if c.startswith("fit_softmax")]
    assert messages and all("could not evaluate" in m for m in messages), messages


def test_a_12_mb_cell_is_run_in_the_sandbox_not_parsed_by_the_grader(graded):
    assert graded["rows"]["big_cell"]["status"] == "ok"


# class 3: allow-list filesystem
def test_nothing_outside_the_allow_list_is_readable_or_writable(graded):
    output = graded["results"]["thief"]["output"]
    assert "READ" not in output and "WROTE" not in output, output
    assert output.count("DENIED") == 9, output
    root = re.search(r"ROOT (\[.*\])", output)[1]
    assert "'home'" not in root and "'run'" not in root and "'var'" in root, root  # /var holds only optlab's cache
    assert not graded["outside"].exists() and not Path("/run/lock/stolen").exists()


# class 4: the grader's environment does not reach students
def test_the_graders_environment_is_not_inherited(graded):
    output = graded["results"]["environ"]["output"]
    assert "ENV {" in output and TOKEN not in output and "LMS_API_TOKEN" not in output
    assert "AUTOGRADER" not in output and str(ROOT) not in output.split("ENV", 1)[1], output


# class 6: limits bound the whole submission
def test_memory_is_bounded_for_all_processes_together(graded):
    r = graded["results"]["memory_hog"]
    survived = re.search(r"SURVIVED (\d)", r["output"])
    assert (survived is None and r["status"] == "memory") or int(survived[1]) <= 2, (r["status"], r["output"][-300:])


# class 8: forbidden modules are absent; no string rule
def test_forbidden_modules_are_absent_however_reached(graded):
    if graded["a"] != "backprop":
        pytest.skip("backprop forbids torch and scikit-learn")
    for sid in ("torch_compile", "torch_resolve", "sklearn_mlp"):
        r = graded["results"][sid]
        assert "GOT-TORCH" not in r["output"] and "GOT-SKLEARN" not in r["output"]
        assert [e["error"]["__error__"] for e in r["cell_errors"]][:1] == ["ModuleNotFoundError"], r["cell_errors"]
        assert _score(graded, sid) == 0.0
    failures = _failures(graded["results"]["torch_import"])
    failed = {case.split(".")[0] for case, _ in failures}
    assert "Linear" in failed and failed <= {"Linear", "MLP", "train_mlp"}, failures  # the rest still count
    assert graded["rows"]["says_jax"]["score"] == graded["rows"]["says_jax"]["max_score"]


def test_torch_implementation_scores_full_marks(graded):
    if graded["a"] != "classification":
        pytest.skip("checked on classification")
    row = graded["rows"]["torch_version"]
    assert row["status"] == "ok" and row["score"] == row["max_score"], _failures(graded["results"]["torch_version"])


# class 9: points only from values the trusted side verifies
def test_in_place_modification_costs_exactly_the_behaviour_point(graded):
    if graded["a"] != "optimizers":
        pytest.skip("checked on optimizers' adamw")
    failures = _failures(graded["results"]["inplace"])
    assert [case for case, _ in failures] == ["adamw.visible_unchanged", "adamw.unchanged_args"], failures
    assert all("in place" in message for _, message in failures)  # both in the one adamw-unchanged cell
    assert _score(graded, "inplace") == float(graded["rows"]["inplace"]["max_score"]) - 1


def test_forged_claims_are_not_credited(graded):
    messages = [m for _, m in _failures(graded["results"]["forged_claims"])]
    claims = [m for m in messages if m.startswith("not credited")]
    assert graded["a"] == "backprop" or claims, messages  # backprop has no error-raising cases


# class 11: nothing a student stored reaches an instructor's browser
def test_stored_html_never_reaches_instructor_pages(graded):
    a = graded["a"]
    notebook = (graded["course"] / "autograded" / "stored_html" / a / f"{a}.ipynb").read_text(encoding="utf-8")
    assert "<script" not in notebook and "<img" not in notebook and "text/html" not in notebook
    assert "&lt;script&gt;" in notebook  # the markdown answer is still there, as text
    html = subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", "--stdout", str(
        graded["course"] / "autograded" / "stored_html" / a / f"{a}.ipynb")], capture_output=True, text=True).stdout
    body = html.split("</head>")[-1].lower()
    assert "javascript:alert(3)" in body and not re.search(r"href=.{0,3}javascript", body), \
        "a student's javascript: link would render as a link"
    assert "<script>alert" not in html and "<img src=x" not in html
    page = (graded["out"] / "students" / "stored_html" / "feedback.html").read_text(encoding="utf-8")
    assert "<script" not in page and "<img" not in page


def test_submission_time_and_nbgrader_timestamp_are_kept(graded):
    a = graded["a"]
    stamp = graded["course"] / "autograded" / "reference" / a / "timestamp.txt"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} UTC", stamp.read_text())
    assert graded["results"]["reference"]["submitted_at_source"] == "file mtime"
