"""``submit()``: hand in this notebook from its last cell and read the graded feedback right there.

The notebook file is the argument, else the one the kernel runs for: ``__session__``, which
ipykernel sets from ``$JPY_SESSION_NAME`` (JupyterLab, Notebook 7), or VS Code's
``__vsc_ipynb_file__``. It must be saved after the last cell run: the cell run just before this one
must be in the file with its execution count, else the student is asked to save and run again.

The service (``python -m autograder serve``) and the student's token come from the arguments, else
``$AUTOGRADER_URL`` and ``$AUTOGRADER_TOKEN``. On a JupyterHub (``$JUPYTERHUB_API_TOKEN`` set) the
token defaults to the server's Hub token and the address to the Hub service ``submit``:
``$JUPYTERHUB_PUBLIC_HUB_URL`` (set when the Hub has ``c.JupyterHub.public_url``) with ``hub/``
replaced by ``services/submit``; a Hub without a public URL sets ``AUTOGRADER_URL`` in
``c.Spawner.environment``.

Any failure is one sentence shown in the notebook, never a traceback. Standard library only (and
IPython where present): this module ships in the student wheel.
"""
from __future__ import annotations

import html
import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HUB_SERVICE = "submit"
MAX_REPLY = 1 << 20                 # bytes of a service reply read at most
SAVE_MESSAGE = ("The notebook file is older than the cells you ran: save it (Ctrl-S) and run this cell "
                "again; nothing was submitted.")


class SubmitError(Exception):
    """Why nothing (or nothing more) can be done, in one sentence for the student; `attempt` is the
    attempt as recorded when it was submitted but its feedback did not come."""

    def __init__(self, message: str, attempt: dict | None = None):
        super().__init__(message)
        self.attempt = attempt


def submit(assignment: str | None = None, *, url: str | None = None, token: str | None = None,
           notebook: str | os.PathLike | None = None, wait: float = 60.0) -> dict | None:
    """Submit the saved notebook to the course's submission service and show its graded feedback.

    Returns the attempt as the service describes it (``score``, ``max_score``, ``tests`` ...; without
    them while it waits to be graded), or None when nothing was submitted (the reason is shown)."""
    try:
        url, token = service(url, token)
        path = notebook_path(notebook)
        data = path.read_bytes()
        if notebook is None:                # the kernel's own notebook: saved since the last run?
            stale_check(data)
        assignment = assignment or assignment_from(path)
        attempt = _post(url, token, assignment, path.name, data)
        attempt = _wait_graded(url, token, attempt, wait)
    except SubmitError as exc:
        _problem(str(exc))
        return exc.attempt
    except OSError as exc:
        _problem(f"The notebook could not be read ({exc.strerror or exc}); nothing was submitted.")
        return None
    _show(*render(attempt))
    return attempt


# ---------------------------------------------------------------------------- which notebook
def _shell():
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def notebook_path(notebook=None) -> Path:
    if notebook is not None:
        path = Path(notebook).expanduser()
        if not path.is_file():
            raise SubmitError(f"There is no notebook file {str(path)!r} (relative to {os.getcwd()}); "
                              "give its path, e.g. submit(notebook=\"optimizers.ipynb\").")
        return path
    shell = _shell()
    ns = shell.user_ns if shell is not None else {}
    for name in (ns.get("__session__"), os.environ.get("JPY_SESSION_NAME"), ns.get("__vsc_ipynb_file__")):
        if isinstance(name, str) and name.endswith(".ipynb"):
            path = Path(name)
            if not path.is_file():          # an older server gives the path from its root
                path = Path.cwd() / path.name
            if path.is_file():
                return path
    if "google.colab" in sys.modules:
        raise SubmitError("Colab keeps the notebook in Google Drive, not on this machine: save a copy "
                          "(File > Save a copy in Drive), mount Drive (from google.colab import drive; "
                          "drive.mount('/content/drive')) and call submit(notebook=\"/content/drive/MyDrive/"
                          "Colab Notebooks/<name>.ipynb\"), or upload the downloaded .ipynb on the service's page.")
    raise SubmitError("Cannot tell which notebook file this is (this Jupyter does not say); call "
                      "submit(notebook=\"<name>.ipynb\") with the file's name.")


def assignment_from(path: Path) -> str:
    """The released notebook is named after its assignment; a copy's suffix (-Copy1, " (1)") is dropped."""
    return re.sub(r"(-Copy\d+| \(\d+\))$", "", path.stem)


def _normal(source) -> str:
    text = "".join(source) if isinstance(source, list) else str(source)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def stale_check(data: bytes) -> None:
    """Raise SubmitError(SAVE_MESSAGE) when the file on disk lacks the cell run just before this one.

    IPython keeps each input by its prompt number (``_i<N>``); Jupyter saves each code cell with the
    number it last ran as. A file saved after that run holds a code cell with the same number and
    source; an older file does not."""
    shell = _shell()
    if shell is None:
        return
    ns = shell.user_ns
    numbers = sorted(int(k[2:]) for k in ns if k.startswith("_i") and k[2:].isdigit())
    if len(numbers) < 2:                    # this cell is the first run since the kernel started
        return
    previous = numbers[-2]
    try:
        cells = json.loads(data.decode("utf-8"))["cells"]
    except (ValueError, KeyError, TypeError):
        raise SubmitError("The notebook file is not valid notebook JSON; save it (Ctrl-S) and run this "
                          "cell again.") from None
    ran = _normal(ns[f"_i{previous}"])
    if not any(isinstance(c, dict) and c.get("cell_type") == "code" and c.get("execution_count") == previous
               and _normal(c.get("source", "")) == ran for c in cells):
        raise SubmitError(SAVE_MESSAGE)


# ---------------------------------------------------------------------------- which service
def service(url: str | None = None, token: str | None = None) -> tuple[str, str]:
    env = os.environ
    hub_token = env.get("JUPYTERHUB_API_TOKEN")
    url = url or env.get("AUTOGRADER_URL")
    if not url and hub_token and env.get("JUPYTERHUB_PUBLIC_HUB_URL"):
        hub = env["JUPYTERHUB_PUBLIC_HUB_URL"].rstrip("/")
        url = hub.removesuffix("/hub") + f"/services/{HUB_SERVICE}"
    token = token or env.get("AUTOGRADER_TOKEN") or hub_token
    if not url:
        raise SubmitError("No submission service is set: call submit(url=..., token=...) with the address "
                          "and token your instructor gave you, or set AUTOGRADER_URL and AUTOGRADER_TOKEN.")
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise SubmitError(f"The service address {url!r} is not an http(s) URL.")
    if not token:
        raise SubmitError("No token: call submit(token=...) with the token your instructor gave you, or "
                          "set AUTOGRADER_TOKEN.")
    return url.rstrip("/"), token


# ---------------------------------------------------------------------------- talking to it
def _request(method: str, url: str, token: str, body: bytes | None = None, timeout: float = 30.0):
    """(status, parsed JSON or text) of one request; OSError when the service cannot be reached."""
    headers = {"Authorization": f"token {token}", "Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/x-ipynb+json"
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as reply:
            status, raw = reply.status, reply.read(MAX_REPLY)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read(MAX_REPLY)
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "no answer in time"
    return getattr(reason, "strerror", None) or str(reason) or type(reason).__name__


def _said(reply) -> str:
    said = reply.get("error") if isinstance(reply, dict) else reply
    return " ".join(str(said or "").split())[:300].rstrip(".")


def _post(url: str, token: str, assignment: str, filename: str, data: bytes) -> dict:
    query = urllib.parse.urlencode({"assignment": assignment, "filename": filename})
    try:
        status, reply = _request("POST", f"{url}/api/submit?{query}", token, data, timeout=60)
    except (urllib.error.URLError, OSError) as exc:
        if isinstance(getattr(exc, "reason", exc), (BrokenPipeError, ConnectionResetError)) and len(data) > 1 << 20:
            raise SubmitError(f"The service closed the connection while the notebook ({len(data) / 2**20:.1f} MiB) "
                              "was sent, probably because it is too large: clear the outputs (Edit > Clear "
                              "Outputs of All Cells), save, and run this cell again.") from None
        raise SubmitError(f"Cannot reach the submission service at {url} ({_reason(exc)}); nothing was "
                          "submitted, try again in a minute or ask your instructor.") from None
    if status == 202 and isinstance(reply, dict) and "id" in reply:
        return reply
    if status == 401:
        raise SubmitError("The submission service did not accept your token (401): check the token your "
                          "instructor gave you; nothing was submitted.")
    if status == 413:
        raise SubmitError(f"The notebook ({len(data) / 2**20:.1f} MiB) is larger than the service accepts: "
                          "clear the outputs (Edit > Clear Outputs of All Cells), save, and run this cell again.")
    if status == 404 and isinstance(reply, dict) and "assignment" in str(reply.get("error", "")):
        raise SubmitError(f"{_said(reply)}: pass the assignment's name, e.g. submit(\"{assignment}\"); nothing "
                          "was submitted.")
    if status in (400, 403, 404, 429):
        raise SubmitError(f"Not accepted: {_said(reply)}.")
    raise SubmitError(f"The submission service answered HTTP {status} ({_said(reply) or 'no reason given'}); "
                      "your attempt may not be recorded: try again in a minute or ask your instructor.")


def _wait_graded(url: str, token: str, attempt: dict, wait: float) -> dict:
    deadline = time.monotonic() + max(0.0, wait)
    while attempt.get("state") != "graded":
        left = deadline - time.monotonic()
        if left <= 0:
            raise SubmitError(f"Attempt {attempt['id']} is recorded, but not graded within {wait:g} s (the "
                              f"grader is busy): its feedback will be at {attempt.get('url', url)}.", attempt)
        try:
            poll = max(1.0, min(left, 30.0))
            status, reply = _request("GET", f"{url}/api/attempts/{int(attempt['id'])}?wait={poll:.0f}", token,
                                     timeout=poll + 15)
        except (urllib.error.URLError, OSError) as exc:
            raise SubmitError(f"Attempt {attempt['id']} is recorded, but its feedback could not be fetched "
                              f"({_reason(exc)}): see {attempt.get('url', url)}.", attempt) from None
        if status != 200 or not isinstance(reply, dict):
            raise SubmitError(f"Attempt {attempt['id']} is recorded, but its feedback could not be fetched "
                              f"(HTTP {status}): see {attempt.get('url', url)}.", attempt)
        attempt = reply
    return attempt


# ---------------------------------------------------------------------------- showing it
def render(attempt: dict) -> tuple[str, str]:
    """The graded attempt as (plain text, HTML), every value from the service escaped."""
    e = html.escape
    score = f"{attempt.get('score', 0):g} / {attempt.get('max_score', 0):g}"
    head = f"Attempt {attempt['id']} at {attempt.get('assignment', '')}: {score}" + \
        (" (late)" if attempt.get("late") else "")
    note = "" if attempt.get("status") == "ok" else f"{attempt.get('status')}: {attempt.get('message') or ''}"
    text, rows = [head] + ([note] if note else []), []
    for t in attempt.get("tests", []):
        points = f"{t['points']:g} / {t['max_points']:g}"
        verdict = "passed" if t.get("passed") else "failed"
        text.append(f"  {t['grade_id']:<32} {points:>9}  {verdict}")
        text += [f"      {f}" for f in t.get("failures", [])]
        failures = "".join(f"<li>{e(f)}</li>" for f in t.get("failures", []))
        rows.append(f"<tr><td><code>{e(str(t['grade_id']))}</code></td><td>{e(points)}</td>"
                    f"<td style='color:{'#1b5e20' if t.get('passed') else '#b00020'}'>{verdict}"
                    + (f"<ul style='margin:0'>{failures}</ul>" if failures else "") + "</td></tr>")
    page = attempt.get("url", "")
    text.append(f"Feedback page: {page}")
    markup = (f"<p><strong>{e(head)}</strong></p>" + (f"<p>{e(note)}</p>" if note else "")
              + "<table><tr><th>Test</th><th>Points</th><th>Result</th></tr>" + "".join(rows) + "</table>"
              + (f"<p>Feedback page: <a href='{e(page)}' target='_blank'>{e(page)}</a></p>" if page else ""))
    return "\n".join(text), markup


def _problem(message: str) -> None:
    _show(message, f"<p style='color:#b00020'>{html.escape(message)}</p>")


def _show(text: str, markup: str) -> None:
    if _shell() is not None:
        from IPython.display import display
        display({"text/plain": text, "text/html": markup}, raw=True)
    else:
        print(text)


__all__ = ["submit", "SubmitError"]
