"""A wheel of the course package for students, with no instructor material.

It holds `optlab`; what an assignment notebook runs from the grader's package, the visible checks
(`autograder.check`) and `submit()` (`autograder.submit`), with the modules of `autograder` they
import (found from their import statements); and each released assignment's visible case data
(`autograder/visible/<assignment>.json`), so that a notebook opened alone (Colab, a
learning-platform download) checks the student's work as the grader will and can hand it in.
Downloaded notebooks install it from the published site (`packages/` beside the pages) when an
import fails. The wheel is written directly (a zip with its metadata), offline and byte-for-byte
reproducible.
"""
from __future__ import annotations

import ast
import base64
import hashlib
import re
import zipfile
from pathlib import Path

PACKAGES = ("optlab",)                   # what a student notebook imports from the course
STUDENT_MODULES = ("autograder.check",  # ... the visible checks and submit(), with what they import
                   "autograder.submit")
VISIBLE = "autograder/visible"           # where the wheel keeps each assignment's visible cases
_EPOCH = (2020, 1, 1, 0, 0, 0)           # fixed timestamps: same sources, same bytes


def module_closure(root: Path, module: str) -> list[str]:
    """Source files of `module` and of every module of its top-level package that it imports when
    it is imported, directly or not (relative to `root`), with the package's __init__.py. Imports
    inside functions run only when called (the grader's, from the instructor's path): not followed."""
    package = module.split(".")[0]
    todo, seen = [module, package], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = root / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        for node in _import_time_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            todo += [n for n in names if n.split(".")[0] == package and _source(root, n)]
    return sorted(_source(root, name).relative_to(root).as_posix() for name in seen)


def _import_time_nodes(tree: ast.AST):
    """The nodes that run when the module is imported: all but function bodies."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        todo += [child for child in ast.iter_child_nodes(node)
                 if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]


def _source(root: Path, name: str) -> Path | None:
    path = root / Path(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def wheel_name(project: str, version: str) -> str:
    dist = re.sub(r"[-_.]+", "_", f"{project}-student")
    return f"{dist}-{version}-py3-none-any.whl"


def build(root: Path, target_dir: Path, project: dict) -> Path:
    """Write the student wheel for `project` ([project] of pyproject.toml) into target_dir."""
    name = f"{project['name']}-student"
    version = project["version"]
    dist = re.sub(r"[-_.]+", "_", name)
    info = f"{dist}-{version}.dist-info"
    files: list[tuple[str, bytes]] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            files.append((path.relative_to(root).as_posix(), path.read_bytes()))
    closure = sorted({path for module in STUDENT_MODULES for path in module_closure(root, module)})
    files += [(path, (root / path).read_bytes()) for path in closure]
    files += [(f"{VISIBLE}/{path.parent.name}.json", path.read_bytes())
              for path in sorted(root.glob("assignments/*/visible_cases.json"))]
    metadata = "\n".join([
        "Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
        f"Summary: {project.get('description', '')} (student package: {', '.join(PACKAGES)}, "
        f"{', '.join(STUDENT_MODULES)})",
        f"Requires-Python: {project.get('requires-python', '>=3.11')}",
        *[f"Requires-Dist: {dep}" for dep in project.get("dependencies", [])], ""])
    files.append((f"{info}/METADATA", metadata.encode()))
    files.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: course_site\n"
                                   b"Root-Is-Purelib: true\nTag: py3-none-any\n"))
    top = sorted({path.split("/")[0] for path, _ in files})
    files.append((f"{info}/top_level.txt", ("\n".join(top) + "\n").encode()))
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
        f"{len(data)}\n" for path, data in files) + f"{info}/RECORD,,\n"
    files.append((f"{info}/RECORD", record.encode()))

    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / wheel_name(project["name"], version)
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as wheel:
        for path, data in files:
            entry = zipfile.ZipInfo(path, _EPOCH)
            entry.external_attr = 0o644 << 16
            wheel.writestr(entry, data, zipfile.ZIP_DEFLATED)
    if target.exists() and target.read_bytes() == tmp.read_bytes():
        tmp.unlink()
    else:
        tmp.replace(target)
    return target
