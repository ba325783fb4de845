"""`make assignments` never loses the released assignments: nbgrader's `generate_assignment --force`
deletes assignments/<a>/ before it writes anything, so a run that fails after that puts it back."""
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_failed_regeneration_restores_assignments(tmp_path):
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)  # older than .venv/.installed: no reinstall
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    shutil.copytree(ROOT / "assignments", tmp_path / "assignments")
    before = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "assignments").rglob("*") if p.is_file()}
    # a generate_assignment that deletes the release and then fails, as it does without `alembic`
    fake = ("sh -c 'rm -rf assignments/$$2; test -e assignments/$$2 || echo deleted-$$2; "
            "echo alembic: not found >&2; exit 1' nbgrader")
    proc = subprocess.run(["make", "assignments", f"NBGRADER={fake}"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0 and "deleted-optimizers" in proc.stdout and "restored as it was" in proc.stdout
    after = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "assignments").rglob("*") if p.is_file()}
    assert after == before and before


def test_tools_check_names_a_missing_tool(tmp_path):
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (tmp_path / ".venv" / ".installed").touch()
    for tool in ("nbgrader", "jupyter", "autograder", "python"):
        (venv / tool).symlink_to(ROOT / ".venv" / "bin" / tool)
    shutil.copytree(ROOT / "assignments", tmp_path / "assignments")
    proc = subprocess.run(["make", "assignments"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0 and "alembic is missing" in proc.stdout
    assert (tmp_path / "assignments" / "optimizers" / "optimizers.ipynb").is_file()
