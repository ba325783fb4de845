"""The grader without root, as in a JupyterHub single-user server: same sandbox, or a clear refusal.

The test plays an instructor with no privileges: uid 65534 running a virtualenv of Debian's own
Python (the course's interpreter lives under /root, which that uid cannot enter), with a cgroup
delegated to it on each v1 hierarchy (or a v2 folder it owns). Needs root only to set that up.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grading"))
from submissions import FIXTURE_COURSE, WRONG_TINY, submission  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path(f"/usr/bin/python3.{sys.version_info.minor}")
NOBODY = 65534
CGROUP = "autograder-rootless-test"
PACKAGES = ["numpy", "ipython", "threadpoolctl", "nbformat", "packaging", "platformdirs", "python-dateutil"]
pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="setting up an unprivileged instructor needs root"),
              pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason=f"{SYSTEM_PYTHON} (Debian's Python) is missing")]
THIEF = ("import os\nprint('UID', os.getuid())\n"
         "for p in [{cases!r}, '/etc/passwd', {home!r}]:\n"
         "    try:\n        open(p).read(); print('READ', p)\n    except Exception as e:\n        print('DENIED', p)\n")


def _cgroup_dirs() -> list[Path]:
    fs = Path("/sys/fs/cgroup")
    if (fs / "cgroup.controllers").exists():
        return [fs / CGROUP]
    return [fs / c / CGROUP for c in ("memory", "pids", "cpu")]


@pytest.fixture(scope="module")
def instructor():
    """(python, course, env): an unprivileged instructor's virtualenv, course copy and environment."""
    top = Path(tempfile.mkdtemp(prefix="rootless-"))
    top.chmod(0o755)
    venv = top / "venv"
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python3.*/site-packages"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(site), *PACKAGES],
                   check=True, capture_output=True)
    course = top / "course"
    shutil.copytree(FIXTURE_COURSE, course)
    for pkg in ("autograder", "optlab"):
        shutil.copytree(ROOT / pkg, course / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (site / "course.pth").write_text(f"{course}\n")  # the course's packages, as an install would give
    subprocess.run(["chmod", "-R", "a+rX", str(top)], check=True)
    (top / "work").mkdir()
    os.chown(top / "work", NOBODY, NOBODY)
    for d in _cgroup_dirs():
        d.mkdir(exist_ok=True)
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(d)], check=True)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "AUTOGRADER_CGROUP": CGROUP}
    yield venv / "bin" / "python", course, top / "work", env
    for d in _cgroup_dirs():
        for child in d.iterdir() if d.is_dir() else ():
            if child.is_dir():
                child.rmdir()
        d.rmdir()
    shutil.rmtree(top)


def run_as_nobody(python, course, work, env, *paths, out="out"):
    return subprocess.run([str(python), "-P", "-m", "autograder", "grade", "tiny", *map(str, paths),
                           "--out", str(work / out), "--root", str(course), "--no-gradebook"],
                          cwd=work, env=env, user=NOBODY, group=NOBODY, extra_groups=[],
                          capture_output=True, text=True, timeout=300)


def test_grades_without_root_in_the_same_sandbox(instructor):
    python, course, work, env = instructor
    source = course / "solutions" / "tiny" / "tiny.ipynb"
    (work / "ann.ipynb").write_bytes(submission(source, reference=True))
    (work / "bob.ipynb").write_bytes(submission(source, solutions=WRONG_TINY, before=[THIEF.format(
        cases=str(course / "solutions" / "tiny" / "cases.py"), home=str(work / "ann.ipynb"))]))
    for p in work.glob("*.ipynb"):
        os.chown(p, NOBODY, NOBODY)
    proc = run_as_nobody(python, course, work, env, work / "ann.ipynb", work / "bob.ipynb")
    assert proc.returncode == 0, proc.stderr
    rows = {r["student_id"]: r for r in csv.DictReader(open(work / "out" / "grades.csv"))}
    assert {k: v["score"] for k, v in rows.items()} == {"ann": "3", "bob": "0"}
    result = json.loads((work / "out" / "students" / "bob" / "results.json").read_text())
    assert "READ" not in result["output"] and result["output"].count("DENIED") == 3, result["output"]
    assert "user namespace" in result["sandbox"]["layers"]
    assert all(not any(d.iterdir()) or not [c for c in d.iterdir() if c.is_dir()] for d in _cgroup_dirs())


def test_refuses_without_a_delegated_cgroup(instructor):
    python, course, work, env = instructor
    (work / "ann.ipynb").write_bytes(submission(course / "solutions" / "tiny" / "tiny.ipynb", reference=True))
    os.chown(work / "ann.ipynb", NOBODY, NOBODY)
    proc = run_as_nobody(python, course, work, {k: v for k, v in env.items() if k != "AUTOGRADER_CGROUP"},
                         work / "ann.ipynb", out="refused")
    assert proc.returncode == 2
    assert "the cgroup layer is missing" in proc.stderr and "AUTOGRADER_CGROUP" in proc.stderr
