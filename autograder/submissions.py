"""Find the submissions in the grader's PATH arguments; bytes are read once and kept as received.

Accepted: ``.ipynb`` files (student id = file stem); nbgrader's submitted layout
``DIR/<student>/<assignment>/*.ipynb`` (with nbgrader's ``timestamp.txt``); ``DIR/<student>/*.ipynb``;
and LMS ``.zip`` downloads: Canvas (``name_[LATE_]<user id>_<submission id>_<file>``) and Moodle
(``<Full Name>_<user id>_assignsubmission_file_/<file>``). An LMS identity keeps the platform's numeric
user id, and names keep their Unicode letters. Only regular files are read, never through a symlink,
and never outside the given PATH. Nothing is extracted to disk and nothing is executed here.

A student with several submissions in one LMS download gets the latest as the graded one and the
others as earlier attempts; two different submissions that would share an id are refused.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import stat
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MAX_NOTEBOOK_BYTES = 16 << 20
MAX_ID_BYTES = 96  # UTF-8 bytes of a student id: a folder name with room to spare under NAME_MAX
MAX_ZIP_BYTES = 512 << 20  # decompressed bytes read from one LMS zip, all members together
MAX_EARLIER = 5  # earlier attempts kept per student from one LMS zip
NBGRADER_FILES = ("timestamp.txt", "submission_secret.txt")  # what `nbgrader submit` writes
MAX_NBGRADER_FILE = 4096


@dataclass(frozen=True)
class Submission:
    student_id: str
    filename: str  # the notebook's name as submitted
    data: bytes  # exactly as received (b"" when `problem` says why there is nothing to read)
    origin: str  # where it came from, for messages
    problem: str | None = None  # set when the submission cannot even be read
    problem_status: str = "invalid-notebook"  # the status recorded for `problem`
    submitted_at: str | None = None  # ISO time the student submitted, from the best evidence
    time_source: str = "unknown"  # "nbgrader timestamp.txt", "LMS zip entry", "file mtime", ...
    earlier: tuple = field(default=())  # earlier attempts in the same input: (filename, bytes, time)
    # nbgrader's own files beside the notebook (timestamp.txt, submission_secret.txt), bytes as found:
    # `nbgrader autograde` copies them into autograded/, and release/fetch_feedback need them there
    nbgrader_files: tuple = field(default=())

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


class InputError(Exception):
    """A PATH argument that cannot be read as submissions, or ids that collide."""


def content_address(assignment: str, student: str, sha256: str) -> str:
    """What was graded, as the journal and the engines name it: ``assignment/student/sha256``."""
    return f"{assignment}/{student}/{sha256}"


def student_id(raw: str, user: str | None = None) -> str:
    """A safe id for folder names and the gradebook: Unicode letters and digits, ``_.-``; no leading
    dot; at most MAX_ID_BYTES of UTF-8. An LMS's numeric `user` id always ends it whole: a long name
    is shortened, never the number that tells two students apart."""
    suffix = f"_{user}" if user else ""
    text = unicodedata.normalize("NFC", raw.encode("utf-8", "replace").decode("utf-8"))
    cleaned = re.sub(r"[^\w.-]+", "_", text, flags=re.UNICODE).strip("._-")
    cleaned = cleaned.encode("utf-8")[:MAX_ID_BYTES - len(suffix)].decode("utf-8", "ignore").rstrip("._-")
    return (cleaned or "unknown") + suffix


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="seconds")


def _read(path: Path) -> tuple[bytes, str | None, os.stat_result | None]:
    """A regular file's bytes, opened without following a symlink; (b"", problem, None) otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        why = "a symbolic link (not accepted)" if os.path.islink(path) else exc.strerror
        return b"", f"{path.name} cannot be read: {why}", None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            return b"", f"{path.name} is not a regular file", None
        data = fh.read(MAX_NOTEBOOK_BYTES + 1)
    if len(data) > MAX_NOTEBOOK_BYTES:
        return b"", f"the file is larger than the {MAX_NOTEBOOK_BYTES} bytes allowed", st
    return data, None, st


def _nbgrader_time(folder: Path) -> str | None:
    """nbgrader's ``timestamp.txt`` (written by ``nbgrader submit``/``collect``), as ISO UTC."""
    data, problem, _ = _read(folder / "timestamp.txt")
    if problem or not data:
        return None
    text = data[:100].decode("utf-8", "replace").strip()
    try:
        from dateutil.parser import parse
        when = parse(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        when = when.astimezone(dt.timezone.utc)
    except Exception:  # noqa: BLE001 -- any odd text is no evidence; the file's mtime is used instead
        return None
    if not dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc) <= when <= dt.datetime.now(dt.timezone.utc):
        return None  # a time in the future, or before this course existed, is no evidence either
    return when.isoformat()  # microseconds kept, as nbgrader keeps them


def _nbgrader_files(folder: Path) -> tuple:
    """nbgrader's small files beside a submitted notebook, as (name, bytes); regular files only."""
    found = []
    for name in NBGRADER_FILES:
        data, problem, st = _read(folder / name)
        if not problem and len(data) <= MAX_NBGRADER_FILE:
            found.append((name, data))
    return tuple(found)


def _from_file(path: Path, sid: str, submitted_at: str | None = None, nbgrader_files: tuple = ()) -> Submission:
    data, problem, st = _read(path)
    if submitted_at:
        source = "nbgrader timestamp.txt"
    elif st is not None:
        submitted_at, source = _iso(st.st_mtime), "file mtime"
    else:
        source = "unknown"
    return Submission(student_id(sid), path.name, data, str(path), problem,
                      submitted_at=submitted_at, time_source=source, nbgrader_files=nbgrader_files)


def _pick(notebooks: list[Path], assignment: str) -> list[Path]:
    """The notebook named after the assignment, else all of them."""
    named = [p for p in notebooks if p.stem == assignment]
    return named or notebooks


def _inside(path: Path, root: Path) -> bool:
    try:
        return not path.is_symlink() and path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def _from_dir(root: Path, assignment: str) -> list[Submission]:
    subs = []
    folders = sorted(p for p in root.iterdir()
                     if not p.name.startswith(".") and _inside(p, root) and p.is_dir())
    for folder in folders:
        inner = folder / assignment
        base = inner if inner.is_dir() and _inside(inner, root) else folder
        notebooks = sorted(base.glob("*.ipynb"))  # a symlink among them is refused when read
        if not notebooks:
            subs.append(Submission(student_id(folder.name), "", b"", str(folder), f"no notebook in {base.name}/"))
            continue
        path = _pick(notebooks, assignment)[0]
        subs.append(_from_file(path, folder.name, _nbgrader_time(base), _nbgrader_files(base)))
    if not subs:  # a folder of loose notebooks
        subs = [_from_file(p, p.stem) for p in sorted(root.glob("*.ipynb"))]
    return subs


CANVAS = re.compile(r"^(?P<name>.+?)(?P<late>_LATE)?_(?P<user>\d+)_(?P<sub>\d+)_(?P<file>.+)$", re.IGNORECASE)
MOODLE = re.compile(r"^(?P<name>.+)_(?P<user>\d+)_assign(?:submission|feedback)_.*$")


def _zip_identity(member: PurePosixPath) -> tuple[str, str | None, int]:
    """(name, LMS user id or None, order key) of a zip member: Moodle folder or Canvas file name,
    else the folder or the stem. The user id, not the name, tells students apart."""
    if len(member.parts) > 1:
        m = MOODLE.match(member.parts[0])
        return (m["name"], m["user"], 0) if m else (member.parts[0], None, 0)
    m = CANVAS.match(member.name)
    if m:
        return m["name"], m["user"], int(m["sub"])
    return member.stem, None, 0


def _zip_time(info: zipfile.ZipInfo) -> str:
    try:
        return dt.datetime(*info.date_time, tzinfo=dt.timezone.utc).isoformat(timespec="seconds")
    except (ValueError, TypeError, OverflowError):  # an impossible date in a hostile export
        return ""


def _zip_member(archive, info, when: str, path: Path, budget: list[int]) -> tuple:
    """(name, bytes, time, problem, origin) of one member; a member that cannot be read is a problem."""
    name, origin = PurePosixPath(info.filename).name, f"{path}:{info.filename}"
    if info.file_size > MAX_NOTEBOOK_BYTES:
        return name, b"", when, "the notebook is too large", origin
    if budget[0] <= 0:
        return name, b"", when, f"the zip holds more than {MAX_ZIP_BYTES} bytes of notebooks", origin
    try:
        with archive.open(info) as fh:
            content = fh.read(MAX_NOTEBOOK_BYTES + 1)
    except Exception as exc:  # noqa: BLE001 -- bad CRC, encryption, unknown compression ...
        return name, b"", when, f"this zip entry cannot be read ({type(exc).__name__})", origin
    budget[0] -= len(content)
    if len(content) > MAX_NOTEBOOK_BYTES:
        return name, b"", when, "the notebook is too large", origin
    return name, content, when, None, origin


def _from_zip(path: Path, assignment: str) -> list[Submission]:
    try:
        fh = os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            fh.close()
            raise InputError(f"{path}: not a regular file")
        archive = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError):
        return [Submission(student_id(path.stem), path.name, b"", str(path), "not a readable zip file")]
    subs = []
    with archive:
        members = [i for i in archive.infolist()[:10_000]
                   if not i.is_dir() and i.filename.endswith(".ipynb") and "__MACOSX" not in i.filename]
        by_student: dict[tuple, list[tuple]] = {}  # attempts of one student: one LMS user id
        names: dict[tuple, str] = {}
        for info in members:
            name, user, order = _zip_identity(PurePosixPath(info.filename))
            key = ("user", user) if user else ("name", name)
            names.setdefault(key, student_id(name, user))
            by_student.setdefault(key, []).append((_zip_time(info), order, info))
        budget = [MAX_ZIP_BYTES]
        for key, entries in sorted(by_student.items()):
            sid = names[key]
            entries.sort(key=lambda e: (e[0], e[1], e[2].filename))  # oldest first
            attempts = [_zip_member(archive, info, when, path, budget)
                        for when, _, info in entries[-(MAX_EARLIER + 1):]]
            name, content, when, problem, origin = attempts[-1]
            subs.append(Submission(sid, name, content, origin, problem, submitted_at=when or None,
                                   time_source="LMS zip entry time" if when else "unknown",
                                   earlier=tuple((a[0], a[1], a[2]) for a in attempts[:-1])))
    return subs


def discover(paths: list[str | Path], assignment: str) -> list[Submission]:
    """All submissions under `paths`, one per student. Submissions that would share an id are not
    graded: each such id gets one submission whose `problem` names every colliding source."""
    found: list[Submission] = []
    for raw in paths:
        path = Path(raw)
        if path.is_symlink():
            raise InputError(f"{raw}: a symbolic link; give the file or folder itself")
        if path.is_dir():
            found += _from_dir(path, assignment)
        elif path.suffix == ".zip" and path.is_file():
            found += _from_zip(path, assignment)
        elif path.suffix == ".ipynb" and path.is_file():
            found.append(_from_file(path, path.stem))
        else:
            raise InputError(f"{raw}: not a notebook, a submissions folder or a .zip file")
    by_id: dict[str, list[Submission]] = {}
    for sub in found:
        same = by_id.setdefault(sub.student_id.casefold(), [])
        if not any(s.student_id == sub.student_id and s.data == sub.data for s in same):
            same.append(sub)    # the same file reached twice (a path and its folder) is one submission
    unique = []
    for subs in by_id.values():
        if len(subs) == 1:
            unique.append(subs[0])
            continue
        origins = ", ".join(s.origin for s in subs[:10])
        first = subs[0]
        unique.append(Submission(first.student_id, first.filename, b"", origins,
                                 f"{len(subs)} submissions would share the student id {first.student_id!r} "
                                 f"({origins}); none was graded: rename them or grade them separately",
                                 problem_status="duplicate-id", earlier=tuple((s.filename, s.data, s.submitted_at) for s in subs)))
    return unique
