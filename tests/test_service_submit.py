"""submit() from a notebook's last cell: a real service on loopback (``python -m autograder serve``)
and a real kernel (nbclient) running the fixture course's notebook, started as Jupyter starts one
for a notebook file (``JPY_SESSION_NAME``: ipykernel's ``__session__``). The graded verdicts show
in the cell; an unsaved change, a bad token and the other refusals are one sentence each."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grading"))
from submissions import FIXTURE_COURSE, WRONG_TINY, submission  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCE = FIXTURE_COURSE / "solutions" / "tiny" / "tiny.ipynb"
SUBMIT_CELL = "from autograder.submit import submit\n\nattempt = submit()"
SAVE = "save it (Ctrl-S) and run this cell again"

pytestmark = pytest.mark.service


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The service on a copy of the fixture course, with a roster token for student `ann`."""
    if os.geteuid() != 0 and not os.environ.get("AUTOGRADER_CGROUP"):
        pytest.skip("the sandbox needs root (or AUTOGRADER_CGROUP, see README)")
    root = tmp_path_factory.mktemp("submit")
    course = root / "course"
    shutil.copytree(FIXTURE_COURSE, course)
    (root / "roster.csv").write_text("student_id\nann\n")
    subprocess.run([sys.executable, "-m", "autograder", "tokens", str(root / "roster.csv"), "--course", str(course),
                    "--out", str(root / "tokens.csv")], check=True, capture_output=True, cwd=root)
    token = (root / "tokens.csv").read_text().splitlines()[1].split(",")[2]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with open(root / "serve.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "autograder", "serve", "--course", str(course),
                                 "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        for _ in range(300):
            assert proc.poll() is None, (root / "serve.log").read_text()
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2).read()
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("the service did not start in 60 s: " + (root / "serve.log").read_text())
        yield SimpleNamespace(url=url, token=token, course=course, root=root)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def attempts(served, attempt_id: int | None = None):
    """The student's attempts (summaries), or one attempt in full."""
    path = "/api/attempts" + (f"/{attempt_id}" if attempt_id is not None else "")
    req = urllib.request.Request(f"{served.url}{path}", headers={"Authorization": f"token {served.token}"})
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def notebook(folder: Path, **kw) -> Path:
    """The fixture assignment as a student has it (kw as for `submission`), ending in the submit cell."""
    def add_submit(nb):
        nb.cells.append(nbformat.v4.new_code_cell(SUBMIT_CELL))
        return nb
    folder.mkdir(exist_ok=True)
    path = folder / "tiny.ipynb"
    path.write_bytes(submission(SOURCE, edit=add_submit, **kw))
    return path


class Student:
    """A kernel for `path` as Jupyter starts it, the student's own notebook model, and a save."""

    def __init__(self, path: Path, served, **env):
        self.path = path
        self.nb = nbformat.read(path, as_version=4)
        env = {"AUTOGRADER_URL": served.url, "AUTOGRADER_TOKEN": served.token, **env}
        self.env = dict(os.environ, JPY_SESSION_NAME=str(path), AUTOGRADER_COURSE=str(served.course), **env)
        self.client = NotebookClient(self.nb, timeout=180, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(path.parent)}})

    def run(self, index: int) -> str:
        """Run cell `index`; what it shows (text and HTML of its outputs)."""
        cell = self.nb.cells[index]
        self.client.execute_cell(cell, index)
        shown = []
        for out in cell.outputs:
            shown += [out.get("text", ""), out.get("data", {}).get("text/plain", ""),
                      out.get("data", {}).get("text/html", ""), "\n".join(out.get("traceback", []))]
        return "\n".join(shown)

    def run_all_but_submit(self) -> None:
        for i, cell in enumerate(self.nb.cells[:-1]):
            if cell.cell_type == "code":
                self.run(i)

    def save(self) -> None:
        nbformat.write(self.nb, self.path)


@pytest.mark.parametrize("kind, score, named", [("reference", "3 / 3", None),
                                                ("wrong", "0 / 3", "added k instead of multiplying")])
def test_submit_shows_the_graded_verdicts_in_the_notebook(served, tmp_path, kind, score, named):
    path = notebook(tmp_path, **({"reference": True} if kind == "reference" else {"solutions": WRONG_TINY}))
    student = Student(path, served)
    before = len(attempts(served))
    with student.client.setup_kernel(env=student.env):
        student.run_all_but_submit()
        student.save()
        shown = student.run(len(student.nb.cells) - 1)
    outputs = student.nb.cells[-1].outputs
    assert [o.output_type for o in outputs] == ["display_data"], shown
    text, html = outputs[0].data["text/plain"], outputs[0].data["text/html"]
    assert f"tiny: {score}" in text and f"tiny: {score}" in html
    if named is None:
        assert text.count("passed") == 2 and "failed" not in text
    else:
        assert named in text and named in html and text.count("failed") == 2
    mine = attempts(served)
    assert len(mine) == before + 1 and mine[0]["score"] == float(score[0])
    # the grader ran the cells up to the last test cell: the submit cell never ran in the sandbox
    feedback = attempts(served, mine[0]["id"])["feedback_html"]
    assert mine[0]["status"] == "ok" and "submission service" not in feedback and \
        "notebook file" not in feedback, feedback


def test_an_unsaved_change_asks_to_save_and_then_submits_the_saved_notebook(served, tmp_path):
    path = notebook(tmp_path, reference=True)
    student = Student(path, served)
    before = len(attempts(served))
    scale = next(i for i, c in enumerate(student.nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "scale")
    with student.client.setup_kernel(env=student.env):
        student.run_all_but_submit()
        student.save()
        student.nb.cells[scale].source = WRONG_TINY["scale"]       # edited and run, not saved
        student.run(scale)
        shown = student.run(len(student.nb.cells) - 1)
        assert SAVE in shown and "Traceback" not in shown, shown
        assert len(attempts(served)) == before                     # nothing was submitted
        student.save()
        shown = student.run(len(student.nb.cells) - 1)             # run again, as the message says
    assert "tiny: 1 / 3" in shown and "added k instead of multiplying" in shown, shown
    assert len(attempts(served)) == before + 1


def test_a_bad_token_is_one_sentence(served, tmp_path):
    path = notebook(tmp_path, reference=True)
    student = Student(path, served, AUTOGRADER_TOKEN="not-a-token")
    before = len(attempts(served))
    with student.client.setup_kernel(env=student.env):
        shown = student.run(len(student.nb.cells) - 1)
    [out] = student.nb.cells[-1].outputs
    assert out.output_type == "display_data" and "Traceback" not in shown
    text = out.data["text/plain"]
    assert "did not accept your token (401)" in text and "nothing was submitted" in text
    assert "\n" not in text and text.count(". ") == 0, text                # one sentence
    assert len(attempts(served)) == before


def _submit_here(capsys, **kw) -> tuple[dict | None, str]:
    from autograder.submit import submit
    result = submit(**kw)
    return result, capsys.readouterr().out


def test_other_refusals_are_one_sentence_each(served, tmp_path, capsys):
    path = notebook(tmp_path, reference=True)
    shut = f"http://127.0.0.1:{_free_port()}"
    cases = [
        (dict(url=shut, token="t", notebook=path), f"Cannot reach the submission service at {shut}"),
        (dict(assignment="nope", url=served.url, token=served.token, notebook=path),
         "There is no assignment 'nope'; choose one of tiny"),
        (dict(url=served.url, token=served.token, notebook=tmp_path / "missing.ipynb"), "There is no notebook file"),
        (dict(url=served.url, token=served.token), "Cannot tell which notebook file this is"),
    ]
    for kw, expected in cases:
        result, out = _submit_here(capsys, **kw)
        assert result is None and out.startswith(expected) and out.count("\n") == 1, out
    (tmp_path / "notes.ipynb").write_text("not json")
    result, out = _submit_here(capsys, assignment="tiny", url=served.url, token=served.token,
                               notebook=tmp_path / "notes.ipynb")
    assert result is None and out.startswith("Not accepted") and "not a valid Jupyter notebook" in out
    before = len(attempts(served))
    result, out = _submit_here(capsys, url=served.url, token=served.token, notebook=path, wait=0)
    assert out.startswith(f"Attempt {result['id']} is recorded, but not graded within 0 s") and \
        result["state"] != "graded" and len(attempts(served)) == before + 1, out


def test_no_service_set_names_the_settings(monkeypatch, tmp_path, capsys):
    for name in ("AUTOGRADER_URL", "AUTOGRADER_TOKEN", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_PUBLIC_HUB_URL"):
        monkeypatch.delenv(name, raising=False)
    result, out = _submit_here(capsys, notebook=notebook(tmp_path))
    assert result is None and "AUTOGRADER_URL and AUTOGRADER_TOKEN" in out


def test_on_a_hub_the_service_is_the_hubs_submit_service(monkeypatch):
    from autograder.submit import service
    monkeypatch.delenv("AUTOGRADER_URL", raising=False)
    monkeypatch.delenv("AUTOGRADER_TOKEN", raising=False)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-token")
    monkeypatch.setenv("JUPYTERHUB_PUBLIC_HUB_URL", "https://hub.example.edu/course/hub/")
    assert service() == ("https://hub.example.edu/course/services/submit", "hub-token")
    monkeypatch.setenv("AUTOGRADER_URL", "http://10.0.0.5:8800/")
    assert service() == ("http://10.0.0.5:8800", "hub-token")


# ---------------------------------------------------------------------------- the course's assignments
@pytest.mark.parametrize("assignment", sorted(p.parent.name for p in (ROOT / "assignments").glob("*/*.ipynb")))
def test_released_assignment_ends_with_a_submit_cell_the_grader_never_runs(assignment):
    from autograder.course import Course
    from autograder.scoring import parse, runnable_cells
    from autograder.submissions import Submission

    raw = (ROOT / "assignments" / assignment / f"{assignment}.ipynb").read_bytes()
    nb = nbformat.reads(raw.decode(), as_version=4)
    last = len(nb.cells) - 1
    assert nb.cells[last].cell_type == "code" and nb.cells[last].source == SUBMIT_CELL
    assert "nbgrader" not in nb.cells[last].metadata or not nb.cells[last].metadata["nbgrader"].get("grade")
    runs = [i for i, _ in runnable_cells(parse(Submission("ann", f"{assignment}.ipynb", raw, "upload")),
                                         Course(ROOT).assignment(assignment))]
    assert runs and last not in runs


def test_student_wheel_carries_submit_without_the_server(tmp_path):
    """submit() ships in the student wheel; importing it loads the standard library only."""
    sys.path.insert(0, str(ROOT / "_ext"))
    import tomllib

    import student_wheel
    assert student_wheel.module_closure(ROOT, "autograder.submit") == ["autograder/__init__.py", "autograder/submit.py"]
    wheel = student_wheel.build(ROOT, tmp_path / "dist",
                                tomllib.loads((ROOT / "pyproject.toml").read_text())["project"])
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "autograder/submit.py" in names and not any(n.startswith("autograder/service") for n in names)
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); before = set(sys.modules)\n"
             "import autograder.submit as s\n"
             "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
             "print(s.__file__); print(sorted(new - set(sys.stdlib_module_names)))\n")
    out = subprocess.run([sys.executable, "-I", "-c", probe, str(tmp_path / "site")], capture_output=True,
                         text=True, check=True, cwd=tmp_path).stdout.splitlines()
    assert out == [str(tmp_path / "site" / "autograder" / "submit.py"), "['autograder']"]
