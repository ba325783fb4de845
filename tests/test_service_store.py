"""The service's store on SQLite and on a real PostgreSQL server: what it records before it answers, and
its guarantees under concurrency (attempt limits, leases, requeue), threads and separate processes."""
from __future__ import annotations

import datetime as dt
import hashlib
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from autograder.service.store import Refusal, Store, attempts, dead_owner, now, owner_name

pytestmark = pytest.mark.service

LIMIT = 5


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(url):
    s = Store(url)
    yield s
    s.engine.dispose()


def at_most(limit):
    def check(total, today, received):
        if total >= limit:
            raise Refusal(429, f"you have used all {limit} attempts")
        return False
    return check


def accept(store, student="ann", data=b"{}", check=at_most(100)):
    return store.accept(student, "tiny", "tiny.ipynb", data, check)


def rows(url):
    """The attempts table as a second, independent connection sees it."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return [r._asdict() for r in c.execute(sa.select(attempts).order_by(attempts.c.id))]
    finally:
        engine.dispose()


def finish(store, attempt_id, owner, score=1.0):
    return store.finish(attempt_id, owner, status="ok", score=score, max_score=3.0,
                        result='{"score": %s}' % score, feedback="<p>fine</p>")


# --------------------------------------------------------------------------- accept
def test_accept_records_bytes_hash_and_time_before_it_returns(store, url):
    data = bytes(range(256)) * 40  # every byte value: kept as received, not as text
    before = now()
    att = accept(store, data=data)
    after = now()
    [row] = rows(url)
    assert row["id"] == att.id and row["data"] == data
    assert row["sha256"] == att.sha256 == hashlib.sha256(data).hexdigest()
    assert before <= row["received_at"] == att.received_at <= after
    assert (row["state"], row["lease"], row["score"]) == ("queued", None, None)
    assert store.attempt(att.id, with_data=True).data == data and store.attempt(att.id).data is None


def test_a_refusal_inside_accept_leaves_no_row(store, url):
    seen = []

    def check(total, today, received):
        seen.append((total, today))
        if total >= 2:
            raise Refusal(429, "no more")
        return total == 1  # the second attempt: late

    first, second = accept(store, check=check), accept(store, check=check)
    with pytest.raises(Refusal, match="no more"):
        accept(store, data=b"third", check=check)
    assert seen == [(0, 0), (1, 1), (2, 2)]
    assert [(r["id"], r["late"]) for r in rows(url)] == [(first.id, False), (second.id, True)]
    accept(store, student="bob", check=check)  # another student's count is their own
    assert seen[-1] == (0, 0)


def test_parallel_accepts_by_one_student_keep_the_limit(store, url):
    go = threading.Barrier(20)

    def one(i):
        go.wait()
        try:
            return accept(store, data=b"%d" % i, check=at_most(LIMIT)).id
        except Refusal:
            return None

    with ThreadPoolExecutor(20) as pool:
        got = list(pool.map(one, range(20)))
    accepted = [i for i in got if i is not None]
    assert len(accepted) == LIMIT and sorted(accepted) == [r["id"] for r in rows(url)]


PROCESS = """
import sys, time
from autograder.service.store import Refusal, Store
def at(line):  # the same moment in every process: the parent sends it to all
    time.sleep(max(0.0, float(line) - time.time()))
print("started", flush=True)
at(sys.stdin.readline())
store = Store(sys.argv[1])  # every process creates the schema if it is missing, as each service does
print("opened", flush=True)
at(sys.stdin.readline())
def check(total, today, received):
    if total >= int(sys.argv[2]):
        raise Refusal(429, "limit")
try:
    print(store.accept("ann", "tiny", "tiny.ipynb", sys.argv[3].encode(), check).id)
except Refusal:
    print("refused")
"""


def test_processes_starting_together_on_an_empty_database_keep_the_limit(url):
    """20 processes (as 20 service processes would) open the same empty database at once, then each
    accepts one attempt of the same student at once: the schema is made once, and exactly LIMIT pass."""
    procs = [subprocess.Popen([sys.executable, "-c", PROCESS, url, str(LIMIT), str(i)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(20)]
    try:
        for step in ("started", "opened"):
            for p in procs:
                assert p.stdout.readline() == f"{step}\n", p.communicate()[1][-3000:]
            moment = f"{time.time() + 0.5}\n"
            for p in procs:
                p.stdin.write(moment)
                p.stdin.flush()
        outcomes = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    errors = [err[-2000:] for (_, err), p in zip(outcomes, procs) if p.returncode]
    assert not errors, errors[0]
    answers = [out.strip() for out, _ in outcomes]
    accepted = sorted(int(a) for a in answers if a != "refused")
    assert len(accepted) == LIMIT and answers.count("refused") == 20 - LIMIT
    assert accepted == [r["id"] for r in rows(url)]
    assert sorted(r["data"] for r in rows(url)) == sorted(str(i).encode() for i, a in enumerate(answers)
                                                            if a != "refused")


# --------------------------------------------------------------------------- the queue
def test_concurrent_claims_never_hand_one_attempt_to_two_owners(store, url):
    ids = [accept(store, student=f"s{i}").id for i in range(60)]
    owners = [f"grader-{k}" for k in range(4)]
    go = threading.Barrier(len(owners))

    def drain(owner):
        mine = []
        go.wait()
        while batch := store.claim(owner, 3):
            assert all(a.state == "grading" for a in batch)
            mine += [a.id for a in batch]
        return mine

    with ThreadPoolExecutor(len(owners)) as pool:
        claimed = dict(zip(owners, pool.map(drain, owners)))
    everything = [i for got in claimed.values() for i in got]
    assert sorted(everything) == ids  # each attempt once: none twice, none left out
    leases = {r["id"]: r["lease"] for r in rows(url)}
    assert all(leases[i] == owner for owner, got in claimed.items() for i in got)
    assert store.claim("late-comer", 10) == []


def test_only_the_claiming_lease_can_finish(store, url):
    att = accept(store)
    [claimed] = store.claim("host-a/1/old", 5)
    assert claimed.id == att.id and claimed.data == b"{}"
    assert store.requeue(lambda owner, leased_at: owner == "host-a/1/old") == 1  # its grader died
    [again] = store.claim("host-b/2/new", 5)
    assert again.id == att.id

    assert not finish(store, att.id, "host-a/1/old", score=3.0)  # the stale owner: nothing changes
    [row] = rows(url)
    assert (row["state"], row["lease"], row["score"], row["result"], row["graded_at"]) == \
        ("grading", "host-b/2/new", None, None, None)

    assert finish(store, att.id, "host-b/2/new", score=1.0)
    assert not finish(store, att.id, "host-b/2/new", score=2.0)  # once graded, graded once
    [row] = rows(url)
    assert (row["state"], row["score"], row["result"]) == ("graded", 1.0, '{"score": 1.0}')
    assert store.queued() == 0 and store.requeue(lambda *_: True) == 0


def test_requeue_takes_back_only_dead_leases(store, url):
    """dead_owner: on this host a lease is dead when its process has ended or is this process started
    anew (the same pid, another start); anywhere when the lease is older than stale_seconds (on this
    host a pid that old may have been reused)."""
    host = socket.gethostname()
    ended = subprocess.Popen(["true"])
    ended.wait()
    alive = subprocess.Popen(["sleep", "60"])
    me = owner_name()
    pid = me.split("/")[1]
    stale = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1000)).isoformat()
    leases = {  # owner: (leased_at or None for now, dead?)
        me: (stale, False),                                # mine, however old
        f"{host}/{alive.pid}/aaaa": (None, False),         # a live process here
        f"{host}/{alive.pid}/ffff": (stale, True),         # a live pid, but 1000 s: maybe reused
        f"{host}/{ended.pid}/bbbb": (None, True),          # a process here that has ended
        f"{host}/{pid}/cccc": (None, True),                # this pid, an earlier start of it
        "elsewhere/123/dddd": (None, False),               # another machine, a fresh lease
        "elsewhere/456/eeee": (stale, True),               # another machine, silent for 1000 s
    }
    try:
        ids = {}
        for owner, (leased_at, _) in leases.items():
            att = accept(store, student=owner)
            [claimed] = store.claim(owner, 1)
            assert claimed.id == att.id
            ids[owner] = att.id
            if leased_at:
                with store.engine.begin() as c:
                    c.execute(attempts.update().where(attempts.c.id == att.id).values(leased_at=leased_at))
        dead = [o for o, (_, d) in leases.items() if d]
        assert store.requeue(dead_owner(me, stale_seconds=900)) == len(dead)
    finally:
        alive.kill()
        alive.wait()
    state = {r["id"]: (r["state"], r["lease"]) for r in rows(url)}
    for owner, (_, is_dead) in leases.items():
        assert state[ids[owner]] == (("queued", None) if is_dead else ("grading", owner)), owner
    assert sorted(a.id for a in store.claim(me, 10)) == sorted(ids[o] for o in dead)


def test_requeue_leaves_a_lease_taken_over_meanwhile(postgres_url):
    """Two graders sweep at once: the other one requeues a dead grader's attempt and claims it between
    this sweep's look and its update. That new, live lease is not taken back. (On PostgreSQL: SQLite's
    sweep holds the only write lock, so the other grader cannot act in between.)"""
    url = postgres_url
    store, other = Store(url), Store(url)
    att = accept(store)
    store.claim("gone/1/x", 1)

    def dead(owner, leased_at):
        if owner == "gone/1/x":  # the other grader, meanwhile
            assert other.requeue(lambda o, _: o == "gone/1/x") == 1
            assert [a.id for a in other.claim("live/2/y", 1)] == [att.id]
        return owner == "gone/1/x"

    assert store.requeue(dead) == 0
    [row] = rows(url)
    assert (row["state"], row["lease"]) == ("grading", "live/2/y")
    assert finish(store, att.id, "live/2/y")
    store.engine.dispose(), other.engine.dispose()


# --------------------------------------------------------------------------- which attempt counts
def test_the_counting_attempt_last_or_best_ties_to_the_earliest(store):
    assert store.counting("ann", "tiny", "last") is None

    def graded(student, score):
        att = accept(store, student=student)
        [claimed] = store.claim("g/1/x", 1)
        assert claimed.id == att.id and finish(store, att.id, "g/1/x", score=score)
        return att.id

    bob = graded("bob", 3.0)  # bob's attempts are his own
    ids = [graded("ann", s) for s in (1.0, 3.0, 2.0, 3.0, 0.0)]
    newer = [accept(store).id, accept(store).id]  # not graded (one queued, one being graded): not counted
    store.claim("g/1/x", 1)
    assert min(newer) > max(ids)

    assert store.counting("ann", "tiny", "last").id == ids[4]           # the latest graded: 0 points
    best = store.counting("ann", "tiny", "best")
    assert (best.id, best.score) == (ids[1], 3.0)                      # 3 twice: the earlier one
    assert store.counting("ann", "other", "best") is None
    assert store.counting("bob", "tiny", "best").id == bob
