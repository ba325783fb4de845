"""Grades for a learning platform: one file to upload to Canvas, one to Moodle.

``canvas.csv`` has the columns of Canvas's gradebook import (*Grades → Import*): ``Student, ID, SIS User
ID, SIS Login ID, Section, <column>``; ``ID`` is Canvas's numeric user id, kept from the download's file
names (``name_[LATE_]<user id>_<submission id>_file``). ``moodle.csv`` is Moodle's offline grading
worksheet (*Assignment → Upload grading worksheet*, matched by ``Identifier`` = ``Participant <id>``, the
number in Moodle's download folder names), with ``Email address`` and ``ID number`` columns for
Moodle's gradebook CSV import, which maps users by either. Students who came through nbgrader's
exchange have no platform id: their nbgrader id goes to ``SIS Login ID`` / ``ID number`` and the
gradebook's e-mail, if any, to ``Email address``.

The grade is the total as ``nbgrader export`` counts it: autograded + hand-graded - late penalty.
"""
from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path, PurePosixPath

from autograder.submissions import CANVAS, MOODLE
from autograder.records import total_points

PLATFORM_ID = re.compile(r"^(?P<name>.+)_(?P<user>\d+)$")


def _platform(result: dict) -> tuple[str | None, str, str | None]:
    """(platform, display name, numeric id) from where the submission came from."""
    origin = str(result.get("origin") or "")
    member = PurePosixPath(origin.split(".zip:", 1)[1]) if ".zip:" in origin else None
    m = PLATFORM_ID.match(result["student_id"])
    if member is not None and m:
        if len(member.parts) > 1 and MOODLE.match(member.parts[0]):
            return "moodle", m["name"].replace("_", " "), m["user"]
        if CANVAS.match(member.name):
            return "canvas", m["name"].replace("_", " "), m["user"]
    return None, result["student_id"], None


def _emails(root: Path) -> dict:
    try:
        from nbgrader.api import Gradebook
        from autograder.records import gradebook_path
        if not gradebook_path(root).exists():
            return {}
        with Gradebook(f"sqlite:///{gradebook_path(root)}") as gb:
            return {s.id: s.email for s in gb.students if s.email}
    except Exception:  # noqa: BLE001 -- e-mails are optional
        return {}


def _write(path: Path, header: list[str], rows: list[list]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def write_lms(out: Path, assignment: str, root: Path, column: str | None = None) -> list[Path]:
    """canvas.csv and moodle.csv in `out` from every students/*/results.json. The Canvas column
    given once (``--lms-column``) is remembered in ``out/.lms-column`` for later runs and exports."""
    remembered = out / ".lms-column"
    if column:
        remembered.write_text(column, encoding="utf-8")
    elif remembered.is_file():
        column = remembered.read_text(encoding="utf-8").strip()[:200] or None
    results = []
    for path in sorted((out / "students").glob("*/results.json")):
        try:
            results.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    # One row per platform user: a student renamed on the platform between two downloads has two
    # folders here (the id keeps the name) but one user id; the latest submission is their grade.
    latest: dict[tuple, dict] = {}
    for r in results:
        platform, _, number = _platform(r)
        if platform and (platform, number) in latest:
            kept = latest[(platform, number)]
            if (r.get("submitted_at") or "", r.get("graded_at") or "") <= \
                    (kept.get("submitted_at") or "", kept.get("graded_at") or ""):
                continue
        latest[(platform, number) if platform else ("", r["student_id"])] = r
    emails = _emails(root)
    canvas, moodle = [], []
    kept_ids = {id(r) for r in latest.values()}
    for r in [r for r in results if id(r) in kept_ids]:
        platform, name, number = _platform(r)
        score, top = total_points(r)
        sid = r["student_id"]
        canvas.append([name, number if platform == "canvas" else "", "",
                       "" if platform == "canvas" else sid, "", f"{score:g}"])
        moodle.append([f"Participant {number}" if platform == "moodle" else "", name, emails.get(sid, ""),
                       "" if platform else sid, f"{score:g}", f"{top:g}"])
    files = [out / "canvas.csv", out / "moodle.csv"]
    _write(files[0], ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column or assignment], canvas)
    _write(files[1], ["Identifier", "Full name", "Email address", "ID number", "Grade", "Maximum Grade"], moodle)
    return files
