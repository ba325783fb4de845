"""Who is who. Standalone: each student has a token made from the instructor's roster (only its hash
is stored). As a JupyterHub service: the student is their Hub user (hub.py)."""
from __future__ import annotations

import csv
import os
import secrets
from pathlib import Path

from autograder.service.store import Store
from autograder.submissions import student_id


class TokenAuth:
    hub = False

    def __init__(self, store: Store):
        self.store = store

    def user_for_token(self, token: str) -> tuple[str, str] | None:
        return self.store.user_for_token(token) if token else None


def session_secret(state: Path) -> str:
    """The key that signs session cookies: made once, kept in the service folder, readable by the
    instructor only."""
    path = state / "session.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def issue_tokens(store: Store, roster: Path, out) -> int:
    """A fresh token for each roster row (columns ``student_id`` and optionally ``role``: student or
    instructor), written to `out` as CSV for the instructor to hand out; the store keeps only hashes.
    A student's earlier token stops working, and so do the sessions logged in with it."""
    with open(roster, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    if not rows or "student_id" not in rows[0]:
        raise ValueError(f"{roster}: a CSV file with a 'student_id' column is needed")
    people = []
    for row in rows:
        role = (row.get("role") or "student").strip()
        if role not in ("student", "instructor"):
            raise ValueError(f"{roster}: role {role!r} of {row['student_id']!r} is neither student nor instructor")
        people.append((row["student_id"].strip(), student_id(row["student_id"].strip()), role))
    seen: dict[str, str] = {}
    for raw, sid, _ in people:  # two rows, one id: which of them would the token be? Refused.
        if sid in seen:
            raise ValueError(f"{roster}: {seen[sid]!r} and {raw!r} are both the student id {sid!r}; "
                             f"make them differ in letters or digits")
        seen[sid] = raw
    writer = csv.writer(out)
    writer.writerow(["student_id", "role", "token"])
    for _, sid, role in people:
        token = secrets.token_urlsafe(24)
        store.replace_token(token, sid, role)
        writer.writerow([sid, role, token])
    return len(rows)
