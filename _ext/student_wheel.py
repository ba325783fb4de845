"""A wheel of the course package for students: `optlab` only, with no instructor material.

Downloaded chapter notebooks install it from the published site (`packages/` beside the pages)
when `import optlab` fails (Colab, Binder, a fresh environment). Installing the whole project
from the repository instead would need a repository that holds `solutions/` and `autograder/`.
The wheel is written directly (a zip with its metadata), offline and byte-for-byte reproducible.
"""
from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path

PACKAGES = ("optlab",)                   # what a student notebook imports from the course
_EPOCH = (2020, 1, 1, 0, 0, 0)           # fixed timestamps: same sources, same bytes


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
    metadata = "\n".join([
        "Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
        f"Summary: {project.get('description', '')} (student package: {', '.join(PACKAGES)})",
        f"Requires-Python: {project.get('requires-python', '>=3.11')}",
        *[f"Requires-Dist: {dep}" for dep in project.get("dependencies", [])], ""])
    files.append((f"{info}/METADATA", metadata.encode()))
    files.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: course_site\n"
                                   b"Root-Is-Purelib: true\nTag: py3-none-any\n"))
    files.append((f"{info}/top_level.txt", ("\n".join(PACKAGES) + "\n").encode()))
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
