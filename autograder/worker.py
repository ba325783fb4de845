"""The sandboxed side of the grader: a pre-warmed parent that forks one child per submission.

Started by :mod:`autograder.sandbox` as ``python -m autograder.worker`` with a control socket
(an inherited fd) and its settings as JSON in ``argv[1]``. As root it first enters a new network namespace (no
network) and a new mount namespace, imports the heavy modules once (numpy, torch, IPython), then
hides the course, the grader, the gradebook and every submission behind empty read-only mounts and
gives ``/tmp`` a fresh tmpfs. For each submission it forks a child that drops to its own
unprivileged uid, sets resource limits, executes the submission's code cells and then answers
driver calls — plain data in, plain data out, through :func:`autograder.case.encode` frames.
Nothing here decides a score; the trusted process judges what comes back.

Protocol on the control socket (frames are a 4-byte big-endian length + ``encode(obj)``):
  worker -> parent  {"ready": layers} | {"refused": sentence}
  parent -> worker  {"op": "spawn", "cells": [...], "forbidden": [...]}
  worker -> parent  {"pid": pid} with two fds attached: the child's channel, its output pipe
  parent -> worker  {"op": "reap", "pid": pid}  ->  {"exit": description}
The child speaks on its own channel:
  child -> parent   {"executed": n, "cell_errors": [...], "imported": [...]}
  parent -> child   {"driver": name, "inputs": {...}}  ->  driver output or an error marker
"""
from __future__ import annotations

import ctypes
import importlib
import json
import os
import resource
import shutil
import signal
import socket
import struct
import sys

CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
HEADER = struct.Struct(">I")
WORKDIR = "/tmp/work"
_libc = ctypes.CDLL(None, use_errno=True)


# --------------------------------------------------------------------------- framing (both sides)
def send(sock: socket.socket, obj, encode, fds=()) -> None:
    data = encode(obj)
    frame = HEADER.pack(len(data)) + data
    if fds:  # the descriptors ride on the frame's header
        socket.send_fds(sock, [frame[:HEADER.size]], list(fds))
        frame = frame[HEADER.size:]
    sock.sendall(frame)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise EOFError("channel closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------- system calls
def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source, target, fstype, flags=0, data=None) -> None:
    enc = lambda s: None if s is None else str(s).encode()
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def no_new_privs() -> None:
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")


def die_with_parent() -> None:
    """SIGKILL when the parent process ends (e.g. the grader itself is killed)."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")


# --------------------------------------------------------------------------- the pre-warmed parent
class Refused(Exception):
    """A sandbox layer could not be set up; the message is the sentence shown to the instructor."""


def enter_namespaces() -> list[str]:
    """New network and mount namespaces (before any thread exists)."""
    try:
        unshare(CLONE_NEWNET | CLONE_NEWNS)
    except OSError as exc:
        raise Refused(f"the network and mount namespaces could not be created ({exc.strerror}); "
                      "run the grader as root (e.g. with sudo)") from None
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    return ["network namespace", "mount namespace"]


def prewarm(forbidden: list[str], modules: list[str]) -> list[str]:
    """Import what submissions and drivers use, once; never a forbidden module.

    Returns the folders of generated data worth sharing with submissions (optlab's cache).
    """
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    import numpy  # noqa: F401
    data_dirs = []
    if "torch" not in forbidden:
        import torch
        torch.set_num_threads(1)
        import optlab.data
        import optlab.plot  # noqa: F401
        data_dirs.append(str(optlab.data.cache_dir()))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config
    config = Config()
    config.HistoryManager.enabled = False
    InteractiveShell.instance(config=config)  # children inherit it, each with its own namespace
    import autograder.check  # noqa: F401  (the notebooks' setup cell imports it)
    import autograder.drivers  # noqa: F401
    for name in modules:  # what the assignment's notebook imports
        if name.split(".")[0] not in forbidden:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 -- the submission will meet the same error itself
                pass
    return data_dirs


def _under(path: str, others) -> bool:
    return any(path == o or path.startswith(o.rstrip("/") + "/") for o in others)


def cover(path: str, keep: list[str], options: str) -> None:
    """Mount a fresh tmpfs over the folder `path`, then bind back the paths of `keep` inside it."""
    kept = [k for k in keep if _under(k, [path]) and k != path]
    fds = [os.open(k, os.O_PATH) for k in kept]  # opened before the tmpfs hides them
    try:
        mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, options)
        for k, fd in zip(kept, fds):
            os.makedirs(k, exist_ok=True)
            mount(f"/proc/self/fd/{fd}", k, None, MS_BIND | MS_REC)
    finally:
        for fd in fds:
            os.close(fd)


def hide(paths: list[str], keep: list[str]) -> list[str]:
    """Mount an empty read-only tmpfs over each directory, /dev/null over each file; put `keep` back."""
    hidden = []
    for path in sorted({os.path.realpath(p) for p in paths}, key=len):
        if _under(path, hidden) or not os.path.exists(path):
            continue
        if os.path.isdir(path):
            cover(path, keep, "size=64k,mode=0755")
            mount(None, path, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        else:
            mount("/dev/null", path, None, MS_BIND)
        hidden.append(path)
    return hidden


def closed_ancestors(paths: list[str]) -> list[str]:
    """The topmost folder above each path that others may not enter (e.g. /root holding pyenv)."""
    found = []
    for path in paths:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            folder = "/" + "/".join(parts[:i])
            if not os.stat(folder).st_mode & 0o001:
                found.append(folder)
                break
    return found


def private_tmp(data_dirs: list[str], keep: list[str]) -> None:
    """Fresh, size-capped tmpfs on every world-writable place; shared data copied in read-only.

    What must stay readable (the Python installation, optlab) is bound back even when it lies
    under one of these places, e.g. a course checked out in /tmp."""
    data = {}  # e.g. optlab's generated-data cache, so a notebook need not regenerate it
    for src in data_dirs:
        if os.path.isdir(src):
            for name in os.listdir(src):
                if name.endswith(".npz"):
                    with open(os.path.join(src, name), "rb") as f:
                        data[name] = f.read()
    for path in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(path):
            cover(os.path.realpath(path), keep, "size=512m,mode=1777")
    os.makedirs("/tmp/data", mode=0o755, exist_ok=True)
    for name, content in data.items():
        target = os.path.join("/tmp/data", name)
        with open(target, "wb") as f:
            f.write(content)
        os.chmod(target, 0o444)
    os.environ["OPTLAB_CACHE"] = "/tmp/data"


def hide_processes() -> None:
    """A /proc where a submission sees only its own processes."""
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV, "hidepid=2")


def setup(cfg: dict) -> list[str]:
    layers = []
    if cfg["sandbox"]:
        if os.geteuid() != 0:
            raise Refused("the sandbox needs root to create namespaces and switch to an unprivileged "
                          "user; run the grader as root (e.g. with sudo)")
        layers += enter_namespaces()
    data_dirs = prewarm(cfg["forbidden"], cfg["prewarm"])
    if cfg["sandbox"]:
        keep = [os.path.realpath(p) for p in cfg["keep"] if os.path.exists(p)]
        try:
            hide(cfg["hide"] + closed_ancestors(keep), keep)
            private_tmp(data_dirs, keep)
            hide_processes()
        except OSError as exc:
            raise Refused(f"the filesystem could not be hidden from submissions ({exc}); "
                          "the mount namespace layer is missing") from None
        layers += ["hidden course, grader, gradebook and submissions", "private /tmp",
                   f"unprivileged uid {cfg['uid']}"]
    layers += ["resource limits (time, memory, processes, output)"]
    return layers


def reap_uid(uid: int) -> None:
    """Kill every process left running as `uid` (a fork bomb's children, a daemon)."""
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            try:
                os.setresuid(uid, uid, uid)
                os.kill(-1, signal.SIGKILL)  # every process this uid may signal, except itself
            except Exception:
                pass
            os._exit(0)
        os.waitpid(pid, 0)


def clean_tmp(keep: list[str]) -> None:
    """Empty the private /tmp after a submission, never entering the folders bound back into it
    (they are the real Python installation: removing files there would delete them)."""
    for base in ("/tmp", "/var/tmp", "/dev/shm"):
        for name in os.listdir(base) if os.path.isdir(base) else ():
            path = os.path.join(os.path.realpath(base), name)
            if (base == "/tmp" and name == "data") or any(_under(k, [path]) for k in keep):
                continue
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) and not os.path.islink(path) \
                else os.unlink(path)


def describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"killed by {signal.Signals(sig).name}" if sig in signal.Signals._value2member_map_ else f"signal {sig}"
    return f"exit code {os.WEXITSTATUS(status)}"


def serve(control: socket.socket, cfg: dict) -> None:
    from autograder.case import decode, encode
    while True:
        try:
            (n,) = HEADER.unpack(recv_exact(control, HEADER.size))
            msg = decode(recv_exact(control, n))
        except EOFError:
            return
        if msg["op"] == "spawn":
            channel, child_end = socket.socketpair()
            out_r, out_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                control.close(), channel.close(), os.close(out_r)
                child(child_end, out_w, msg, cfg)  # never returns
            child_end.close(), os.close(out_w)
            send(control, {"pid": pid}, encode, fds=[channel.fileno(), out_r])
            channel.close(), os.close(out_r)
        elif msg["op"] == "reap":
            _, status = os.waitpid(msg["pid"], 0)
            if cfg["sandbox"]:
                reap_uid(cfg["uid"])
                clean_tmp([os.path.realpath(p) for p in cfg["keep"]])
            send(control, {"exit": describe_exit(status)}, encode)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    die_with_parent()
    control = socket.socket(fileno=cfg["fd"])
    try:
        layers = setup(cfg)
    except Refused as exc:
        from autograder.case import encode
        send(control, {"refused": str(exc)}, encode)
        sys.exit(2)
    from autograder.case import encode
    send(control, {"ready": layers}, encode)
    serve(control, cfg)


# --------------------------------------------------------------------------- the child
def limit(cfg: dict) -> None:
    mem = cfg["memory_mb"] * 2**20
    for res, value in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_NPROC, cfg["max_procs"]),
                       (resource.RLIMIT_CPU, int(cfg["cpu_seconds"])),
                       (resource.RLIMIT_FSIZE, cfg["max_file_bytes"]), (resource.RLIMIT_NOFILE, 256),
                       (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(res, (value, value))


def drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    no_new_privs()


def child(channel: socket.socket, out_w: int, msg: dict, cfg: dict) -> None:
    code = 70
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0), os.dup2(out_w, 1), os.dup2(out_w, 2)
        os.close(null), os.close(out_w)
        sys.stdout = os.fdopen(1, "w", buffering=1, errors="replace", closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, errors="replace", closefd=False)
        signal.signal(signal.SIGTERM, signal.SIG_DFL), signal.signal(signal.SIGINT, signal.SIG_DFL)
        if cfg["sandbox"]:
            os.makedirs(WORKDIR, exist_ok=True)
            os.chown(WORKDIR, cfg["uid"], cfg["uid"])
            os.chdir(WORKDIR)
            limit(cfg)
            drop_privileges(cfg["uid"])
            die_with_parent()  # a uid change clears it, so set it after
            os.environ.update(HOME=WORKDIR, USER="student", LOGNAME="student")
        else:
            limit(cfg)
            die_with_parent()
        os.environ["NBGRADER_EXECUTION"] = "autograde"  # as nbgrader sets it: notebooks may skip demos
        code = run_submission(channel, msg)
    except BaseException:  # noqa: BLE001 -- a child never returns into the worker's loop
        code = 71
    os._exit(code)


def run_submission(channel: socket.socket, msg: dict) -> int:
    from IPython.core.interactiveshell import InteractiveShell

    from autograder import drivers
    from autograder.case import decode, encode, error_marker

    forbidden = set(msg["forbidden"])
    attempts = set()

    trusted = tuple(msg["trusted_dirs"])

    def audit(event, args):  # cannot be removed by the submission; blocks its forbidden imports
        if event != "import" or args[0].split(".")[0] not in forbidden:
            return
        frame = sys._getframe(1)
        while frame is not None and (frame.f_code.co_filename.startswith("<frozen")
                                     or "importlib" in frame.f_code.co_filename):
            frame = frame.f_back
        if frame is not None and not frame.f_code.co_filename.startswith(trusted):
            attempts.add(args[0].split(".")[0])  # imported by the submission, not by a library
            raise ImportError(f"{args[0]} may not be used in this assignment")

    sys.addaudithook(audit)
    imported = lambda: sorted(attempts)
    shell = InteractiveShell.instance()
    errors = []
    for index, source in msg["cells"]:
        result = shell.run_cell(source, store_history=False, silent=False)
        exc = result.error_before_exec or result.error_in_exec
        if exc is not None:
            errors.append({"cell": index, "error": error_marker(exc)})
    sys.stdout.flush()
    send(channel, {"executed": len(msg["cells"]), "cell_errors": errors[:50], "imported": imported()},
         encode)
    ns = shell.user_ns
    while True:
        try:
            (n,) = HEADER.unpack(recv_exact(channel, HEADER.size))
            request = decode(recv_exact(channel, n))
        except EOFError:
            return 0
        try:
            out = getattr(drivers, request["driver"])(ns, **request["inputs"])
            reply = {"output": out, "imported": imported()}
            data = encode(reply)
        except BaseException as exc:  # noqa: BLE001 -- reported as data, judged by the parent
            data = encode({"output": error_marker(exc), "imported": imported()})
        channel.sendall(HEADER.pack(len(data)) + data)


if __name__ == "__main__":
    main()
