"""Find the submissions in the grader's PATH arguments; bytes are read once and kept as received.

Accepted: ``.ipynb`` files (student id = file stem); nbgrader's submitted layout
``DIR/<student>/<assignment>/*.ipynb``; ``DIR/<student>/*.ipynb``; and LMS ``.zip`` downloads, where
the student is the top folder of a member (Moodle) or the name before ``_<digits>_`` (Canvas).
Nothing is extracted to disk and nothing is executed here.
"""
from __future__ import annotations

import hashlib
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MAX_NOTEBOOK_BYTES = 50 << 20


@dataclass(frozen=True)
class Submission:
    student_id: str
    filename: str  # the notebook's name as submitted
    data: bytes  # exactly as received (b"" when `problem` says why there is nothing to read)
    origin: str  # where it came from, for messages
    problem: str | None = None  # set when the submission cannot even be read

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


class InputError(Exception):
    """A PATH argument that is neither a notebook, a directory nor a zip file."""


def student_id(raw: str) -> str:
    """A safe id for file names and the gradebook: letters, digits, ``._-``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("._")
    return cleaned or "unknown"


def _read(path: Path) -> tuple[bytes, str | None]:
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        return b"", f"the file is {size} bytes, more than the {MAX_NOTEBOOK_BYTES} allowed"
    return path.read_bytes(), None


def _pick(notebooks: list[Path], assignment: str) -> list[Path]:
    """The notebook named after the assignment, else all of them."""
    named = [p for p in notebooks if p.stem == assignment]
    return named or notebooks


def _from_file(path: Path, sid: str) -> Submission:
    data, problem = _read(path)
    return Submission(student_id(sid), path.name, data, str(path), problem)


def _from_dir(root: Path, assignment: str) -> list[Submission]:
    subs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        inner = folder / assignment
        base = inner if inner.is_dir() else folder
        notebooks = sorted(p for p in base.glob("*.ipynb") if p.is_file())
        if not notebooks:
            subs.append(Submission(student_id(folder.name), "", b"", str(folder),
                                   f"no notebook in {base}"))
            continue
        for path in _pick(notebooks, assignment)[:1]:
            subs.append(_from_file(path, folder.name))
    if not subs:  # a folder of loose notebooks
        subs = [_from_file(p, p.stem) for p in sorted(root.glob("*.ipynb")) if p.is_file()]
    return subs


CANVAS = re.compile(r"^(?P<name>[^_]+)(?:_LATE)?_\d+_\d+_", re.IGNORECASE)


def _zip_student(member: PurePosixPath) -> str:
    if len(member.parts) > 1:
        top = member.parts[0]
        return re.sub(r"_\d+_assignsubmission_.*$", "", top)  # Moodle: "Name_123_assignsubmission_file_"
    match = CANVAS.match(member.name)
    return match["name"] if match else member.stem


def _from_zip(path: Path, assignment: str) -> list[Submission]:
    subs = []
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        return [Submission(student_id(path.stem), path.name, path.read_bytes(), str(path),
                           "not a readable zip file")]
    with archive:
        members = [i for i in archive.infolist()
                   if not i.is_dir() and i.filename.endswith(".ipynb") and "__MACOSX" not in i.filename]
        by_student: dict[str, list[zipfile.ZipInfo]] = {}
        for info in members:
            by_student.setdefault(_zip_student(PurePosixPath(info.filename)), []).append(info)
        for raw, infos in sorted(by_student.items()):
            infos = [i for i in infos if PurePosixPath(i.filename).stem.endswith(assignment)] or infos
            info = infos[0]
            origin = f"{path}:{info.filename}"
            name = PurePosixPath(info.filename).name
            if info.file_size > MAX_NOTEBOOK_BYTES:
                subs.append(Submission(student_id(raw), name, b"", origin, "the notebook is too large"))
                continue
            with archive.open(info) as fh:
                data = fh.read(MAX_NOTEBOOK_BYTES + 1)
            problem = "the notebook is too large" if len(data) > MAX_NOTEBOOK_BYTES else None
            subs.append(Submission(student_id(raw), name, data if not problem else b"", origin, problem))
    return subs


def discover(paths: list[str | Path], assignment: str) -> list[Submission]:
    """All submissions under `paths`, one per student (a repeated id gets a ``-2``, ``-3`` suffix)."""
    found: list[Submission] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += _from_dir(path, assignment)
        elif path.suffix == ".zip" and path.is_file():
            found += _from_zip(path, assignment)
        elif path.suffix == ".ipynb" and path.is_file():
            found.append(_from_file(path, path.stem))
        else:
            raise InputError(f"{raw}: not a notebook, a submissions folder or a .zip file")
    seen: dict[str, int] = {}
    unique = []
    for sub in found:
        n = seen[sub.student_id] = seen.get(sub.student_id, 0) + 1
        if n > 1:
            sub = Submission(f"{sub.student_id}-{n}", sub.filename, sub.data, sub.origin, sub.problem)
        unique.append(sub)
    return unique
