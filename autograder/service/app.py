"""The submission service: an ASGI app (Starlette) students submit to and instructors watch.

Students log in with their roster token (standalone) or through JupyterHub (as a Hub service), upload
a notebook from the page or call ``submit()`` from the notebook, and read their graded feedback a
second or so later. An attempt is recorded, bytes and all, before it is acknowledged; the grader
thread (runner.py) grades it in the sandbox. Each student sees their own attempts only.
"""
from __future__ import annotations

import csv
import hmac
import io
import json
import math
import asyncio
from contextlib import asynccontextmanager

import anyio
import secrets
import threading
from collections import defaultdict
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from autograder.course import Course
from autograder.scoring import Rejected, parse, runnable_cells
from autograder.service.config import Config
from autograder.service.runner import Runner
from autograder.service.store import Attempt, Refusal, Store
from autograder.submissions import Submission

CSP = ("default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
API_WAIT_MAX = 60.0
MAX_ITEMS = 500_000  # objects, lists and their items: a course notebook has a few thousand; 500 000 decode to ~50 MB
SESSION_SECONDS = 12 * 3600
UPLOAD_SECONDS = 60
NOTICES = {"login": "Please log in first; nothing was submitted."}

templates = Environment(loader=PackageLoader("autograder.service", "templates"),
                        autoescape=select_autoescape(["html"]))


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"The upload is larger than {limit >> 20} MiB; nothing was recorded.")


class LimitBody:
    """Refuse a request body over `limit` bytes before it is read: by its Content-Length, and by
    counting what arrives when it has none (chunked): the app's handler then answers 413."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _too_large(self.limit)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)


def _too_large(limit: int) -> Response:
    return PlainTextResponse(BodyTooLarge(limit).detail, 413)


class Service:
    def __init__(self, config: Config, store: Store, auth, engine="local"):
        self.config, self.store, self.auth = config, store, auth
        # where the app lives: "/" standalone, JUPYTERHUB_SERVICE_PREFIX behind the Hub's proxy
        self.base = getattr(auth, "prefix", "/")
        self.course = Course(config.root)
        self.assignments = sorted(p.name for p in (config.root / "solutions").iterdir()
                                  if (p / "cases.py").exists())
        for name in self.assignments:  # loaded once, here, not by two request threads at once
            self.course.assignment(name)
        self.runner = Runner(store, config, engine=engine)
        self.parsing = threading.BoundedSemaphore(2)
        self.uploads = asyncio.Semaphore(16)  # bodies read into memory at once; later ones wait unread
        self.user_locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ who is asking
    def user(self, request: Request, api: bool = False) -> tuple[str, str] | None:
        """(student id, role). Pages: from the session, kept in the database (the cookie holds only its
        id, and logging out, a new token or 12 hours end it). The API: from a token in the
        Authorization header only, never the cookie, so another site cannot call it in a logged-in
        student's name."""
        if api:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            return self.auth.user_for_token(token.strip()) if scheme.lower() in ("token", "bearer") else None
        sid = request.session.get("sid")
        who = self.store.session_user(sid, SESSION_SECONDS) if isinstance(sid, str) else None
        if who is None and sid is not None:
            request.session.clear()
        return who

    def is_instructor(self, user) -> bool:
        return user is not None and (user[1] == "instructor" or user[0] in self.config.instructors)

    @staticmethod
    def csrf(request: Request) -> str:
        if "csrf" not in request.session:
            request.session["csrf"] = secrets.token_urlsafe(24)
        return request.session["csrf"]

    def csrf_ok(self, request: Request, form) -> bool:
        sent = form.get("csrf")
        return isinstance(sent, str) and "csrf" in request.session and \
            hmac.compare_digest(sent, request.session["csrf"])

    def page(self, request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        user = self.user(request)
        html = templates.get_template(name).render(
            user=user, instructor=self.is_instructor(user), csrf=self.csrf(request),
            hub=getattr(self.auth, "hub", False), base=self.base, **context)
        return HTMLResponse(html, status)

    # ------------------------------------------------------------------ pages
    async def home(self, request: Request) -> Response:
        return await run_in_threadpool(self._home, request)

    def _home(self, request: Request) -> Response:
        user = self.user(request)
        if user is None:  # fixed messages only: a link cannot put its own words on this page
            return self.page(request, "login.html", error=NOTICES.get(request.query_params.get("error", "")))
        return self.student_page(request, user)

    def student_page(self, request: Request, user, error: str | None = None, status: int = 200) -> Response:
        mine = self.store.attempts(student=user[0])
        policies = {a: self.config.policy(a) for a in self.assignments}
        return self.page(request, "home.html", status, attempts=mine, assignments=self.assignments,
                         policies=policies, error=error, max_mib=self.config.max_upload >> 20)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        if not self.csrf_ok(request, form):
            return self.page(request, "login.html", 403, error="The form expired; please try again.")
        who = self.auth.user_for_token(str(form.get("token", "")).strip())
        if who is None:
            return self.page(request, "login.html", 403, error="That token is not on the roster.")
        return self.signed_in(request, who)

    def signed_in(self, request: Request, who: tuple[str, str]) -> Response:
        """A fresh session for `who` (roster token or Hub login), then their start page."""
        request.session.clear()
        request.session.update(sid=self.store.new_session(*who), csrf=secrets.token_urlsafe(24))
        return RedirectResponse(self.base + ("instructor" if self.is_instructor(who) else ""), 303)

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        if self.csrf_ok(request, form):
            if isinstance(request.session.get("sid"), str):
                self.store.end_session(request.session["sid"])
            request.session.clear()
        return RedirectResponse(self.base, 303)

    async def submit_form(self, request: Request) -> Response:
        user = self.user(request)
        if user is None:
            return RedirectResponse(self.base + "?error=login", 303)
        try:
            slot = self.upload_slot(user)
            await slot.__aenter__()
        except Refusal as exc:
            return self.student_page(request, user, str(exc), exc.status)
        try:
            try:
                form = await request.form(max_files=1, max_fields=4, max_part_size=self.config.max_upload)
            except HTTPException:
                raise
            except Refusal as exc:
                return self.student_page(request, user, str(exc), exc.status)
            except Exception:  # noqa: BLE001 -- a malformed multipart body
                return self.student_page(request, user, "The upload could not be read; nothing was recorded.", 400)
            if not self.csrf_ok(request, form):
                return self.student_page(request, user, "The form expired; reload the page and submit again.", 403)
            upload = form.get("notebook")
            if upload is None or isinstance(upload, str):
                return self.student_page(request, user, "Choose a notebook (.ipynb) to submit.", 400)
            data = await upload.read()
            try:
                att = await run_in_threadpool(self.accept, user, str(form.get("assignment", "")),
                                              upload.filename or "notebook.ipynb", data)
            except Refusal as exc:
                return self.student_page(request, user, str(exc), exc.status)
        finally:
            await slot.__aexit__(None, None, None)
        return RedirectResponse(f"{self.base}attempts/{att.id}", 303)

    @asynccontextmanager
    async def upload_slot(self, user):
        """A student's uploads are read one after another, at most 16 in all at once, each within
        UPLOAD_SECONDS: a slow or stalled upload holds one slot for a bounded time, and one student's
        uploads never hold more than one."""
        async with self.user_locks.setdefault(user[0], asyncio.Lock()), self.uploads:
            try:
                with anyio.fail_after(UPLOAD_SECONDS):
                    yield
            except TimeoutError:
                raise Refusal(408, f"The upload did not arrive within {UPLOAD_SECONDS} s; nothing "
                                   f"was recorded.") from None

    def accept(self, user, assignment: str, filename: str, data: bytes) -> Attempt:
        """Check what can be checked without running it, then record the attempt, queued. (In a
        worker thread: reading a large notebook must not hold up other requests.)"""
        if assignment not in self.assignments:
            raise Refusal(404, f"There is no assignment {assignment[:80]!r}; choose one of "
                               f"{', '.join(self.assignments)}.")
        a = self.course.assignment(assignment)
        sub = Submission(user[0], filename[:200], data, "upload")
        items = data.count(b"{") + data.count(b"[") + data.count(b",")  # at least one per decoded value
        if items > MAX_ITEMS:
            raise Refusal(400, f"Not accepted (it does not count as an attempt): about {items} JSON values, "
                               f"more than a notebook needs ({MAX_ITEMS} at most).")
        try:  # within the size cap, a few at a time (decoding costs memory); nothing runs here
            with self.parsing:
                runnable_cells(parse(sub), a)
        except Rejected as exc:
            raise Refusal(400, f"Not accepted (it does not count as an attempt): {exc}.") from None
        policy = self.config.policy(assignment)
        att = self.store.accept(user[0], assignment, Path(filename).name[:200] or "notebook.ipynb", data,
                                lambda total, today, received: policy.check(user[0], total, today, received))
        self.runner.wake.set()
        return att

    async def attempt_page(self, request: Request) -> Response:
        user = self.user(request)
        att = self._visible_attempt(request, user)
        if isinstance(att, Response):
            return att
        return self.page(request, "attempt.html", attempt=att, owner=att.student,
                         refresh=att.state != "graded")

    def _visible_attempt(self, request: Request, user) -> Attempt | Response:
        if user is None:
            return RedirectResponse(self.base, 303)
        try:
            attempt_id = int(request.path_params["id"])
        except ValueError:
            attempt_id = 0
        att = self.store.attempt(attempt_id) if 0 < attempt_id < 2**62 else None
        # another student's attempt looks exactly like one that does not exist
        if att is None or (att.student != user[0] and not self.is_instructor(user)):
            return self.page(request, "missing.html", 404)
        return att

    # ------------------------------------------------------------------ the API (submit() in a notebook)
    async def api_submit(self, request: Request) -> Response:
        user = self.user(request, api=True)
        if user is None:
            return JSONResponse({"error": "missing or unknown token"}, 401)
        assignment = request.query_params.get("assignment", "")
        filename = request.query_params.get("filename", f"{assignment}.ipynb")
        try:
            async with self.upload_slot(user):
                data = await request.body()
                att = await run_in_threadpool(self.accept, user, assignment, filename, data)
        except Refusal as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        return JSONResponse(self.attempt_json(att, request), 202)

    async def api_attempt(self, request: Request) -> Response:
        import anyio
        user = self.user(request, api=True)
        if user is None:
            return JSONResponse({"error": "missing or unknown token"}, 401)
        try:
            wait = float(request.query_params.get("wait", 0))
            attempt_id = int(request.path_params["id"])
        except ValueError:
            return JSONResponse({"error": "bad request"}, 400)
        if not math.isfinite(wait):
            return JSONResponse({"error": "wait is a number of seconds"}, 400)
        if not 0 < attempt_id < 2**62:
            return JSONResponse({"error": "no such attempt"}, 404)
        wait = min(max(wait, 0.0), API_WAIT_MAX)
        waited = 0.0
        while True:
            att = self.store.attempt(attempt_id)
            if att is None or (att.student != user[0] and not self.is_instructor(user)):
                return JSONResponse({"error": "no such attempt"}, 404)
            if att.state == "graded" or waited >= wait:
                return JSONResponse(self.attempt_json(att, request))
            await anyio.sleep(0.2)
            waited += 0.2

    async def api_attempts(self, request: Request) -> Response:
        user = self.user(request, api=True)
        if user is None:
            return JSONResponse({"error": "missing or unknown token"}, 401)
        mine = await run_in_threadpool(self.store.attempts, student=user[0])
        return JSONResponse([self.attempt_json(a, request, full=False) for a in mine])

    @staticmethod
    def attempt_json(att: Attempt, request: Request, full: bool = True) -> dict:
        out = {"id": att.id, "assignment": att.assignment, "received_at": att.received_at, "late": att.late,
               "state": att.state, "url": str(request.url_for("attempt", id=att.id))}
        if att.state == "graded" and not full:
            out.update(status=att.status, score=att.score, max_score=att.max_score)
        elif att.state == "graded":
            result = json.loads(att.result)
            out.update(status=att.status, score=att.score, max_score=att.max_score, message=result.get("message"),
                       tests=[{"grade_id": t["grade_id"], "points": t["points"], "max_points": t["max_points"],
                               "passed": t["passed"],
                               "failures": [f"{c['case']}: {c['message'] or c['status']}"
                                            for c in t["cases"] if not c["passed"]]}
                              for t in result["tests"]],
                       feedback_html=att.feedback)
        return out

    # ------------------------------------------------------------------ instructors
    async def instructor(self, request: Request) -> Response:
        return await run_in_threadpool(self._instructor, request)

    def _instructor(self, request: Request) -> Response:
        user = self.user(request)
        if not self.is_instructor(user):
            return self.page(request, "missing.html", 404) if user else RedirectResponse(self.base, 303)
        recent = self.store.attempts(limit=200)
        return self.page(request, "instructor.html", attempts=recent, rates=self.pass_rates(),
                         problem=self.runner.problem, queued=self.store.queued(), refresh=True)

    def pass_rates(self) -> dict[str, list[tuple[str, float, int]]]:
        """Per assignment, each case's pass rate over every student's latest graded attempt, the
        cases failing most first: where the class is stuck."""
        tally: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for assignment, cases in self.store.latest_cases():
            for case, passed in json.loads(cases or "{}").items():
                counts = tally[assignment][case]
                counts[0] += bool(passed)
                counts[1] += 1
        return {a: sorted(((case, p / n, n) for case, (p, n) in cases.items()), key=lambda r: (r[1], r[0]))
                for a, cases in sorted(tally.items())}

    async def export_csv(self, request: Request) -> Response:
        return await run_in_threadpool(self._export_csv, request)

    def _export_csv(self, request: Request) -> Response:
        user = self.user(request) or self.user(request, api=True)
        if not self.is_instructor(user):
            return PlainTextResponse("not found", 404)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["attempt", "student_id", "assignment", "received_at", "late", "state", "status", "score",
                    "max_score", "graded_at", "sha256", "counts"])
        counting = {}
        for att in self.store.attempts(newest_first=False):
            key = (att.student, att.assignment)
            if key not in counting:
                c = self.store.counting(att.student, att.assignment, self.config.policy(att.assignment).counts)
                counting[key] = c.id if c else None
            w.writerow([att.id, _cell(att.student), att.assignment, att.received_at, int(att.late), att.state,
                        att.status or "", "" if att.score is None else f"{att.score:g}",
                        "" if att.max_score is None else f"{att.max_score:g}", att.graded_at or "", att.sha256,
                        int(counting[key] == att.id)])
        return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="attempts.csv"'})

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "queued": self.store.queued(), "grader": self.runner.problem or "ok"})


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def security_headers(app):
    async def wrapped(scope, receive, send):
        async def send_with(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY"),
                            (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
                            (b"cache-control", b"no-store")]
                message = {**message, "headers": headers}
            await send(message)
        await app(scope, receive, send_with)
    return wrapped


def create_app(config: Config, auth=None, engine="local", start_grader: bool = True):
    """The ASGI app; its grader thread starts with it (lifespan) unless `start_grader` is False."""
    from contextlib import asynccontextmanager
    from autograder.service.auth import TokenAuth, session_secret
    store = Store(config.db)
    service = Service(config, store, auth or TokenAuth(store), engine)
    routes = [Route("/", service.home),
              *([] if getattr(service.auth, "hub", False) else [Route("/login", service.login, methods=["POST"])]),
              Route("/logout", service.logout, methods=["POST"]),
              Route("/submit", service.submit_form, methods=["POST"]),
              Route("/attempts/{id}", service.attempt_page, name="attempt"),
              Route("/instructor", service.instructor),
              Route("/instructor/attempts.csv", service.export_csv),
              Route("/api/submit", service.api_submit, methods=["POST"]),
              Route("/api/attempts", service.api_attempts),
              Route("/api/attempts/{id}", service.api_attempt),
              Route("/healthz", service.healthz)]
    routes += getattr(service.auth, "routes", lambda s: [])(service)
    if service.base != "/":  # behind JupyterHub's proxy, which passes the prefix on
        routes = [Mount(service.base.rstrip("/"), routes=routes)]

    @asynccontextmanager
    async def lifespan(app):
        if start_grader:
            service.runner.start()
        try:
            yield
        finally:
            service.runner.stop()
            if service.runner.is_alive():
                service.runner.join(30)

    secure = getattr(service.auth, "secure_cookies", False)
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[
        Middleware(SessionMiddleware, secret_key=session_secret(config.state), session_cookie="autograder",
                   same_site="lax", https_only=secure, max_age=14 * 24 * 3600, path=service.base)])
    app.state.service = service
    outer = LimitBody(security_headers(app), config.max_upload + (64 << 10))
    outer.service = service
    return outer


__all__ = ["create_app", "Service"]
