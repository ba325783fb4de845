"""Write the course as students may see it: every tracked file except the instructor's material.

    python scripts/public_tree.py DEST        (`make public` writes _build/public)

Left out: the nbgrader sources with solutions and hidden tests (`solutions/`), the instructor's
course configuration, and the tests, fixtures and benchmarks that need them. The result builds
the site (`make book`) and passes the tests it keeps; a public repository for students is this
folder. Untracked files (the gradebook, submissions, grades, builds) are never copied.
"""
from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = ".public-tree"
PRIVATE = (
    "solutions/*",                        # source notebooks, reference code, hidden cases
    "nbgrader_config.py",                 # the instructor's course (source directory, exchange)
    "tests/fixtures/grading/*",           # a fixture course with its own solutions
    "tests/test_assignments_*",           # these read solutions/ or grade with it
    "tests/test_autograder_*",
    "tests/test_nbgrader_cycle.py",
    "tests/test_service*",                 # grade the fixture course (the service, its store, submit())
    "tests/test_site_leaks.py",
    "tests/test_make_guards.py",
    "tests/test_public_tree.py",
    "benchmarks/grading_throughput.py",
    "benchmarks/service_load.py",           # loads the fixture course
)


def is_private(path: str) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in PRIVATE)


def tracked_files(root: Path = ROOT) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached"], cwd=root, capture_output=True,
                         check=True).stdout.decode()
    return [path for path in out.split("\0") if path and (root / path).is_file()]


def write(dest: Path, root: Path = ROOT) -> list[str]:
    """Copy the public files of `root` into the empty or missing folder `dest`; return them."""
    if (dest / MARK).is_file():           # an earlier public tree: ours to replace
        shutil.rmtree(dest)
    elif dest.exists() and any(dest.iterdir()):
        raise SystemExit(f"error: {dest} is not empty and not a public tree written by this script; "
                         "choose another folder")
    public = [path for path in tracked_files(root) if not is_private(path)]
    for path in public:
        (dest / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / path, dest / path)
    (dest / MARK).write_text("written by scripts/public_tree.py; rewritten by the next run\n")
    return public


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    files = write(Path(sys.argv[1]).resolve())
    print(f"{len(files)} files written to {sys.argv[1]} (without solutions/ and the instructor's tests)")
