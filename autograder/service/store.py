"""The service's records: every accepted attempt (bytes, hash, time, result) and the students' tokens.

SQLite by default (a file in the service folder, nothing to start); PostgreSQL by URL for a service on
several machines. The attempts table is also the grading queue: an attempt is ``queued`` when it is
acknowledged, ``grading`` while one grader holds its lease, ``graded`` once its result is recorded.
A result is recorded only under the lease that claimed it, so each attempt has exactly one result
even when a grader dies mid-way and another takes the attempt over.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import socket
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from autograder.sandbox import pid_alive

metadata = sa.MetaData()

attempts = sa.Table(
    "attempts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("student", sa.String(200), nullable=False),
    sa.Column("assignment", sa.String(100), nullable=False),
    sa.Column("filename", sa.String(300), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("received_at", sa.String(40), nullable=False),  # ISO 8601, UTC: sorts as text
    sa.Column("late", sa.Boolean, nullable=False, default=False),
    sa.Column("state", sa.String(16), nullable=False, default="queued"),
    sa.Column("lease", sa.String(200)),
    sa.Column("leased_at", sa.String(40)),
    sa.Column("graded_at", sa.String(40)),
    sa.Column("status", sa.String(40)),
    sa.Column("score", sa.Float),
    sa.Column("max_score", sa.Float),
    sa.Column("result", sa.Text),     # results.json: what the student may see
    sa.Column("feedback", sa.Text),   # the feedback page
    sa.Column("cases", sa.Text),      # {case id: passed}: what the instructor page counts
    sa.Index("attempts_student", "student", "assignment"),
    sa.Index("attempts_state", "state", "id"),
)

tokens = sa.Table(
    "tokens", metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("user", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False, default="student"),
)

sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("user", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("created", sa.String(40), nullable=False),
)

COLUMNS_WITHOUT_DATA = [c for c in attempts.c if c.name != "data"]
SUMMARY_COLUMNS = [c for c in attempts.c if c.name not in ("data", "result", "feedback", "cases")]


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class Refusal(Exception):
    """An attempt not accepted: `status` is the HTTP status, the message says why to the student."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Attempt:
    id: int
    student: str
    assignment: str
    filename: str
    sha256: str
    received_at: str
    late: bool
    state: str
    status: str | None
    score: float | None
    max_score: float | None
    graded_at: str | None
    result: str | None
    feedback: str | None
    data: bytes | None = None

    @classmethod
    def of(cls, row) -> "Attempt":
        m = row._mapping
        return cls(**{k: m.get(k) for k in cls.__dataclass_fields__ if k in m or k in ("result", "feedback")})


class Store:
    def __init__(self, url: str):
        self.url = url
        self.sqlite = url.startswith("sqlite")
        kwargs = {"connect_args": {"timeout": 30}} if self.sqlite else {"pool_pre_ping": True}
        self.engine = sa.create_engine(url, **kwargs)
        if self.sqlite:
            @sa.event.listens_for(self.engine, "connect")
            def _connect(dbapi, _):
                dbapi.isolation_level = None  # transactions are begun below, IMMEDIATE: one writer at a time
                dbapi.execute("PRAGMA journal_mode=WAL")
                dbapi.execute("PRAGMA synchronous=FULL")  # acknowledged means on disk

            @sa.event.listens_for(self.engine, "begin")
            def _begin(conn):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
        with self.engine.begin() as c:
            if not self.sqlite:  # services started together on an empty database: one creates the tables
                c.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('autograder.service schema'))"))
            metadata.create_all(c)

    # ---------------------------------------------------------------- tokens
    def add_token(self, token: str, user: str, role: str = "student") -> None:
        with self.engine.begin() as c:
            c.execute(tokens.insert().values(sha256=token_hash(token), user=user, role=role))

    def replace_token(self, token: str, user: str, role: str = "student") -> None:
        """`user`'s only token from now on; their sessions end."""
        with self.engine.begin() as c:
            c.execute(tokens.delete().where(tokens.c.user == user))
            c.execute(sessions.delete().where(sessions.c.user == user))
            c.execute(tokens.insert().values(sha256=token_hash(token), user=user, role=role))

    def user_for_token(self, token: str) -> tuple[str, str] | None:
        return self.user_for_hash(token_hash(token))

    def user_for_hash(self, sha256: str) -> tuple[str, str] | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(tokens.c.user, tokens.c.role).where(tokens.c.sha256 == sha256)).first()
        return (row.user, row.role) if row else None

    # ---------------------------------------------------------------- sessions, kept here so they can end
    def new_session(self, user: str, role: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self.engine.begin() as c:
            c.execute(sessions.insert().values(id=sid, user=user, role=role, created=now()))
        return sid

    def session_user(self, sid: str, max_age: float) -> tuple[str, str] | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(sessions).where(sessions.c.id == sid)).first()
        if row is None:
            return None
        age = dt.datetime.now(dt.timezone.utc) - dt.datetime.fromisoformat(row.created)
        return (row.user, row.role) if age.total_seconds() < max_age else None

    def end_session(self, sid: str) -> None:
        with self.engine.begin() as c:
            c.execute(sessions.delete().where(sessions.c.id == sid))

    # ---------------------------------------------------------------- attempts
    def accept(self, student: str, assignment: str, filename: str, data: bytes, check) -> Attempt:
        """Record an attempt, queued, and return it; `check(counts)` may raise :class:`Refusal`.

        `counts` are this student's earlier attempts at the assignment: (all, received today UTC). The
        count and the insert are one transaction, so parallel uploads cannot pass a limit together."""
        received = now()
        with self.engine.begin() as c:
            if not self.sqlite:  # one transaction per student at a time (SQLite has one writer anyway)
                c.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": student})
            mine = (attempts.c.student == student) & (attempts.c.assignment == assignment)
            total = c.execute(sa.select(sa.func.count()).where(mine)).scalar_one()
            today = c.execute(sa.select(sa.func.count()).where(
                mine & (attempts.c.received_at >= received[:10]))).scalar_one()
            late = check(total, today, received)
            new_id = c.execute(attempts.insert().values(
                student=student, assignment=assignment, filename=filename, data=data,
                sha256=hashlib.sha256(data).hexdigest(), received_at=received, late=bool(late),
                state="queued")).inserted_primary_key[0]
        return self.attempt(new_id)

    def attempt(self, attempt_id: int, with_data: bool = False) -> Attempt | None:
        cols = list(attempts.c) if with_data else COLUMNS_WITHOUT_DATA
        with self.engine.connect() as c:
            row = c.execute(sa.select(*cols).where(attempts.c.id == attempt_id)).first()
        return Attempt.of(row) if row else None

    def attempts(self, student: str | None = None, assignment: str | None = None,
                 state: str | None = None, limit: int | None = None, newest_first: bool = True) -> list[Attempt]:
        """Summaries (no bytes, result or feedback: lists stay light however large those are)."""
        q = sa.select(*SUMMARY_COLUMNS)
        if student is not None:
            q = q.where(attempts.c.student == student)
        if assignment is not None:
            q = q.where(attempts.c.assignment == assignment)
        if state is not None:
            q = q.where(attempts.c.state == state)
        q = q.order_by(attempts.c.id.desc() if newest_first else attempts.c.id)
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as c:
            return [Attempt.of(r) for r in c.execute(q)]

    def queued(self) -> int:
        with self.engine.connect() as c:
            return c.execute(sa.select(sa.func.count()).where(attempts.c.state != "graded")).scalar_one()

    # ---------------------------------------------------------------- the queue
    def claim(self, owner: str, limit: int) -> list[Attempt]:
        """Up to `limit` queued attempts, oldest first, now leased to `owner`: at most one per student,
        and none of a student who has one being graded, so one student's attempts never hold every
        grader while others wait. Claims are made one at a time (one writer; on PostgreSQL a lock)."""
        with self.engine.begin() as c:
            if not self.sqlite:
                c.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('autograder.service claim'))"))
            busy = sa.select(attempts.c.student).where(attempts.c.state == "grading")
            ids, seen = [], set()
            for r in c.execute(sa.select(attempts.c.id, attempts.c.student)
                               .where((attempts.c.state == "queued") & attempts.c.student.not_in(busy))
                               .order_by(attempts.c.id).limit(limit * 16)):
                if r.student not in seen and len(ids) < limit:
                    seen.add(r.student)
                    ids.append(r.id)
            if not ids:
                return []
            c.execute(attempts.update().where(attempts.c.id.in_(ids) & (attempts.c.state == "queued"))
                      .values(state="grading", lease=owner, leased_at=now()))
            rows = c.execute(sa.select(*attempts.c).where(attempts.c.id.in_(ids) & (attempts.c.lease == owner)
                                                          & (attempts.c.state == "grading"))
                             .order_by(attempts.c.id))
            return [Attempt.of(r) for r in rows]

    def release(self, attempt_id: int, owner: str) -> None:
        """Put an attempt `owner` holds back in the queue (its grading could not happen)."""
        with self.engine.begin() as c:
            c.execute(attempts.update().where((attempts.c.id == attempt_id) & (attempts.c.state == "grading")
                                              & (attempts.c.lease == owner))
                      .values(state="queued", lease=None, leased_at=None))

    def finish(self, attempt_id: int, owner: str, *, status: str, score: float, max_score: float,
               result: str, feedback: str, cases: str = "{}") -> bool:
        """Record the result, if `owner` still holds the lease; False when it does not (not recorded)."""
        with self.engine.begin() as c:
            done = c.execute(attempts.update().where(
                (attempts.c.id == attempt_id) & (attempts.c.state == "grading") & (attempts.c.lease == owner))
                .values(state="graded", status=status, score=score, max_score=max_score, result=result,
                        feedback=feedback, cases=cases, graded_at=now())).rowcount
        return done == 1

    def requeue(self, dead) -> int:
        """Attempts whose lease holder `dead(owner, leased_at)` says is gone: queued again. Only the
        lease that was judged is taken back: one that another grader took over meanwhile stays."""
        n = 0
        with self.engine.begin() as c:
            held = c.execute(sa.select(attempts.c.id, attempts.c.lease, attempts.c.leased_at)
                             .where(attempts.c.state == "grading")).all()
            for r in held:
                if dead(r.lease, r.leased_at):
                    n += c.execute(attempts.update().where(
                        (attempts.c.id == r.id) & (attempts.c.state == "grading")
                        & (attempts.c.lease == r.lease) & (attempts.c.leased_at == r.leased_at))
                        .values(state="queued", lease=None, leased_at=None)).rowcount
        return n

    def latest_cases(self) -> list[tuple[str, str]]:
        """(assignment, cases JSON) of every student's latest graded attempt at each assignment."""
        latest = sa.select(sa.func.max(attempts.c.id)).where(attempts.c.state == "graded") \
            .group_by(attempts.c.student, attempts.c.assignment)
        with self.engine.connect() as c:
            return [(r.assignment, r.cases) for r in c.execute(
                sa.select(attempts.c.assignment, attempts.c.cases).where(attempts.c.id.in_(latest)))]

    def counting(self, student: str, assignment: str, rule: str) -> Attempt | None:
        """The attempt that counts: the latest graded one ("last") or the highest score, earliest
        first among equals ("best")."""
        q = sa.select(*COLUMNS_WITHOUT_DATA).where(
            (attempts.c.student == student) & (attempts.c.assignment == assignment)
            & (attempts.c.state == "graded"))
        q = q.order_by(attempts.c.id.desc()) if rule == "last" else \
            q.order_by(attempts.c.score.desc(), attempts.c.id)
        with self.engine.connect() as c:
            row = c.execute(q.limit(1)).first()
        return Attempt.of(row) if row else None


def owner_name() -> str:
    """Who holds a lease: host, process, and this start of it (a recycled pid is another owner)."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:12]}"


def dead_owner(me: str, stale_seconds: float):
    """Whether a lease's holder is gone: on this host, its process has ended or restarted (a recycled
    pid, this very process included, is another owner than `me`); anywhere, its lease is older than
    `stale_seconds` (a grader on another machine that stopped; a pid here reused by another process)."""
    host = socket.gethostname()

    def dead(owner: str | None, leased_at: str | None) -> bool:
        if not owner:
            return True
        if owner == me:
            return False
        o_host, pid, _ = (owner.split("/") + ["", ""])[:3]
        age = (dt.datetime.now(dt.timezone.utc) - dt.datetime.fromisoformat(leased_at)).total_seconds() \
            if leased_at else float("inf")
        if o_host == host:  # a live pid that old may be another process that reused it
            pid = int(pid) if pid.isdigit() else -1
            return pid == os.getpid() or not pid_alive(pid) or age > stale_seconds
        return age > stale_seconds

    return dead

