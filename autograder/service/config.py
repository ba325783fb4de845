"""The service's settings: ``service.toml`` in the course folder, every key optional.

```toml
[service]
max_upload_mib = 8                    # larger uploads are refused before they are read
workers = 2                           # attempts graded at once
timeout_seconds = 60                  # per attempt, everything included (the grader's limit is 300)
redraw_seconds = 10                   # hidden inputs drawn afresh at least this often (0: per attempt)
instructors = ["prof_li"]             # Hub users who see the instructor page (roster tokens carry a role)
language = "zh_CN"                    # the feedback's language (default: the course's nbgrader_config.py, else en)

[assignments.optimizers]
attempts_total = 20                   # per student; absent: no limit
attempts_per_day = 5                  # per student and UTC day
deadline = 2026-12-10T23:59:00+08:00  # absent: the due date in nbgrader's gradebook, if any
late = "refuse"                       # or "accept": graded, marked late, nbgrader's late penalty applies
counts = "last"                       # or "best": which graded attempt goes to the gradebook

[assignments.optimizers.extensions]   # as nbgrader's: a later due date for one student
zhang_wei = 2026-12-12T23:59:00+08:00
```
"""
from __future__ import annotations

import datetime as dt
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from autograder import messages
from autograder.course import Course, UnknownAssignment
from autograder.service.store import Refusal


class ConfigError(Exception):
    """service.toml cannot be used: the message names the key."""


def _time(value, where: str) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not a date and time (e.g. 2026-12-10T23:59:00+08:00)") from None
    if not isinstance(value, dt.datetime):
        raise ConfigError(f"{where}: a date and time is needed, e.g. 2026-12-10T23:59:00+08:00")
    if value.tzinfo is None:
        raise ConfigError(f"{where}: give the time zone, e.g. 2026-12-10T23:59:00+08:00")
    return value.astimezone(dt.timezone.utc)


@dataclass
class Policy:
    attempts_total: int | None = None
    attempts_per_day: int | None = None
    deadline: dt.datetime | None = None
    late: str = "refuse"
    counts: str = "last"
    extensions: dict[str, dt.datetime] = field(default_factory=dict)

    def due(self, student: str) -> dt.datetime | None:
        return self.extensions.get(student, self.deadline)

    def check(self, student: str, total: int, today: int, received: str) -> bool:
        """Raise :class:`Refusal` when this attempt may not be accepted; else whether it is late."""
        due = self.due(student)
        late = due is not None and dt.datetime.fromisoformat(received) > due
        if late and self.late == "refuse":
            raise Refusal(403, f"the deadline ({due.isoformat(timespec='minutes')} UTC) has passed: "
                               f"attempts are no longer accepted")
        if self.attempts_total is not None and total >= self.attempts_total:
            raise Refusal(429, f"you have used all {self.attempts_total} attempts at this assignment")
        if self.attempts_per_day is not None and today >= self.attempts_per_day:
            raise Refusal(429, f"you have used today's {self.attempts_per_day} attempts (UTC day); "
                               f"more tomorrow")
        return late


@dataclass
class Config:
    root: Path
    state: Path
    db: str
    max_upload: int = 8 << 20
    workers: int = 2
    timeout: float = 60.0
    redraw: float = 10.0
    instructors: set[str] = field(default_factory=set)
    policies: dict[str, Policy] = field(default_factory=dict)
    language: str = messages.DEFAULT  # the feedback's (autograder.messages)

    def policy(self, assignment: str) -> Policy:
        if assignment not in self.policies:
            self.policies[assignment] = Policy(deadline=nbgrader_due(self.root, assignment))
        return self.policies[assignment]


def nbgrader_due(root: Path, assignment: str) -> dt.datetime | None:
    """The assignment's due date in nbgrader's gradebook (``nbgrader db assignment add --duedate``)."""
    from autograder.records import gradebook_path
    path = gradebook_path(root)
    if not path.exists():
        return None
    from nbgrader.api import Gradebook, MissingEntry
    with Gradebook(f"sqlite:///{path}") as gb:
        try:
            due = gb.find_assignment(assignment).duedate
        except MissingEntry:
            return None
    return due.replace(tzinfo=dt.timezone.utc) if due else None


def load(root: Path | str, db: str | None = None, state: Path | str | None = None,
         language: str | None = None) -> Config:
    """service.toml of the course at `root`; `db` and `language` (``serve --db``, ``--language``) win."""
    root = Path(root).resolve()
    state = Path(state).resolve() if state else root / "service"
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)  # attempts, the session key and the database: the instructor's only
    path = root / "service.toml"
    raw = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
    svc = raw.get("service", {})
    config = Config(root, state, db or svc.get("database") or f"sqlite:///{state / 'service.sqlite'}",
                    max_upload=int(float(svc.get("max_upload_mib", 8)) * (1 << 20)),
                    workers=int(svc.get("workers", 2)), timeout=float(svc.get("timeout_seconds", 60)),
                    redraw=float(svc.get("redraw_seconds", 10)),
                    instructors=set(svc.get("instructors", [])))
    try:
        config.language = messages.course_language(root, language, svc.get("language"))
    except messages.UnknownLanguage as exc:
        where = "--language" if language is not None else f"{path}: [service] language" \
            if svc.get("language") is not None else ""
        raise ConfigError(f"{where}: {exc}" if where else str(exc)) from None
    course = Course(root)
    for name, p in raw.get("assignments", {}).items():
        where = f"{path}: [assignments.{name}]"
        try:
            course.assignment(name)
        except (UnknownAssignment, FileNotFoundError, ValueError):
            raise ConfigError(f"{where}: no such assignment under solutions/") from None
        unknown = set(p) - {"attempts_total", "attempts_per_day", "deadline", "late", "counts", "extensions"}
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        if p.get("late", "refuse") not in ("refuse", "accept"):
            raise ConfigError(f"{where}: late is \"refuse\" or \"accept\"")
        if p.get("counts", "last") not in ("last", "best"):
            raise ConfigError(f"{where}: counts is \"last\" or \"best\"")
        config.policies[name] = Policy(
            attempts_total=p.get("attempts_total"), attempts_per_day=p.get("attempts_per_day"),
            deadline=_time(p["deadline"], f"{where} deadline") if "deadline" in p else nbgrader_due(root, name),
            late=p.get("late", "refuse"), counts=p.get("counts", "last"),
            extensions={s: _time(t, f"{where} extensions.{s}") for s, t in p.get("extensions", {}).items()})
    return config
