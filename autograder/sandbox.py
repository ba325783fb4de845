"""The trusted side of the sandbox: start a pre-warmed worker, run one submission in a child of it.

:class:`Worker` owns one ``python -m autograder.worker`` process (see that module for the layers)
and :class:`Run` one forked child executing one submission. Everything that comes back is decoded
with :func:`autograder.case.decode` (JSON, size-capped, never code); a child that runs too long,
prints too much, sends too much or dies becomes a :class:`SandboxError` with a status name.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from autograder.case import decode, encode, is_error
from autograder.worker import HEADER, recv_exact, send

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# What a submission may read: the Python installation and the course's public plumbing (optlab).
TRUSTED_DIRS = sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                       str(PACKAGE_ROOT / "optlab")})
FIRST_UID = 61000  # worker i runs submissions as uid FIRST_UID + i (no such user needs to exist)


@dataclass
class Limits:
    timeout: float = 300.0  # wall seconds per submission (executing the notebook + all calls)
    memory_mb: int = 4096  # RLIMIT_AS of the process running a submission
    max_procs: int = 64  # processes and threads of the submission's uid
    max_output: int = 1 << 20  # bytes the submission may print
    max_message: int = 64 << 20  # bytes of one reply on the channel
    max_file_bytes: int = 64 << 20  # largest file it may write (in its private /tmp)


class SandboxError(Exception):
    """A submission's process hit a limit or died: `status` names it, the message explains."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class Refused(Exception):
    """The sandbox cannot be set up here; the message names the missing layer."""


class Worker:
    """One pre-warmed worker process: imports paid once, a fresh child per submission."""

    command = [sys.executable, "-m", "autograder.worker"]  # + the settings as JSON

    def __init__(self, index: int, *, sandbox: bool, hide: list[str], forbidden: list[str],
                 limits: Limits, log: Path, prewarm: list[str] = ()):
        self.index, self.sandbox, self.limits = index, sandbox, limits
        self.cfg = {"sandbox": sandbox, "uid": FIRST_UID + index, "forbidden": forbidden,
                    "prewarm": list(prewarm), "hide": [str(p) for p in hide], "keep": TRUSTED_DIRS, "memory_mb": limits.memory_mb,
                    "max_procs": limits.max_procs, "cpu_seconds": int(limits.timeout) + 5,
                    "max_file_bytes": limits.max_file_bytes}
        self.log = log
        self.proc = None
        self.layers: list[str] = []

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the worker process; it imports and sets up while the caller does other work."""
        self.control, theirs = socket.socketpair()
        self.cfg["fd"] = theirs.fileno()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(PACKAGE_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([*self.command, json.dumps(self.cfg)],
                                         pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, cwd="/", env=env)
        theirs.close()

    def wait_ready(self, timeout: float = 300.0) -> None:
        self.control.settimeout(timeout)
        try:
            reply = self._recv()
        except (OSError, EOFError, ValueError) as exc:
            self.stop()
            raise Refused(f"the sandbox worker did not start ({exc}); see {self.log}") from None
        if "refused" in reply:
            self.stop()
            raise Refused(f"Refusing to grade: {reply['refused']}.")
        self.layers = reply["ready"]
        self.control.settimeout(None)

    def _recv(self):
        (n,) = HEADER.unpack(recv_exact(self.control, HEADER.size))
        return decode(recv_exact(self.control, n), self.limits.max_message)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self, cells: list[tuple[int, str]], forbidden: list[str], deadline: float) -> "Run":
        if not self.alive():
            self.start()
        send(self.control, {"op": "spawn", "cells": [list(c) for c in cells], "forbidden": forbidden,
                            "trusted_dirs": [*TRUSTED_DIRS, str(PACKAGE_ROOT / "autograder")]}, encode)
        head, fds, _, _ = socket.recv_fds(self.control, HEADER.size, 2)  # fds ride on the header
        head += recv_exact(self.control, HEADER.size - len(head)) if len(head) < HEADER.size else b""
        (n,) = HEADER.unpack(head)
        pid = decode(recv_exact(self.control, n))["pid"]
        return Run(self, pid, socket.socket(fileno=fds[0]), fds[1], deadline)

    def reap(self, pid: int) -> str:
        send(self.control, {"op": "reap", "pid": pid}, encode)
        return self._recv()["exit"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if getattr(self, "control", None) is not None:
            self.control.close()
        self.proc = None


class Run:
    """One child process executing one submission and answering driver calls."""

    OUTPUT_KEPT = 20_000  # characters of the submission's printed output kept for feedback

    def __init__(self, worker: Worker, pid: int, channel: socket.socket, out_fd: int, deadline: float):
        self.worker, self.pid, self.channel, self.out_fd, self.deadline = worker, pid, channel, out_fd, deadline
        self.output = bytearray()
        self.output_bytes = 0
        self.exit: str | None = None
        os.set_blocking(out_fd, False)
        self.channel.setblocking(False)
        self.buffer = bytearray()

    # -- receiving with a deadline while draining the child's output
    def _pump(self, until: float, need: int) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.channel, selectors.EVENT_READ, "channel")
        out_open = self.out_fd is not None
        if out_open:
            sel.register(self.out_fd, selectors.EVENT_READ, "output")
        try:
            while len(self.buffer) < need:
                left = until - time.monotonic()
                if left <= 0:
                    raise SandboxError("timeout", "time limit exceeded")
                for key, _ in sel.select(left):
                    if key.data == "output":
                        self._read_output(sel)
                    else:
                        chunk = self.channel.recv(1 << 20)
                        if not chunk:
                            self._drain_output()
                            raise SandboxError("crashed", "the submission's process ended unexpectedly")
                        self.buffer += chunk
        finally:
            sel.close()

    def _read_output(self, sel) -> None:
        try:
            chunk = os.read(self.out_fd, 1 << 16)
        except BlockingIOError:
            return
        if not chunk:
            sel.unregister(self.out_fd)
            os.close(self.out_fd)
            self.out_fd = None
            return
        self.output_bytes += len(chunk)
        if len(self.output) < self.OUTPUT_KEPT:
            self.output += chunk[: self.OUTPUT_KEPT - len(self.output)]
        if self.output_bytes > self.worker.limits.max_output:
            raise SandboxError("output-limit",
                               f"printed more than {self.worker.limits.max_output} bytes of output")

    def _drain_output(self) -> None:
        while self.out_fd is not None:
            try:
                chunk = os.read(self.out_fd, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                return
            if len(self.output) < self.OUTPUT_KEPT:
                self.output += chunk[: self.OUTPUT_KEPT - len(self.output)]
            self.output_bytes += len(chunk)
            if self.output_bytes > self.worker.limits.max_output:
                return

    def receive(self, timeout: float):
        until = min(time.monotonic() + timeout, self.deadline)
        self._pump(until, HEADER.size)
        (n,) = HEADER.unpack(self.buffer[:HEADER.size])
        if n > self.worker.limits.max_message:
            raise SandboxError("output-limit", f"sent a reply of {n} bytes "
                                               f"(limit {self.worker.limits.max_message})")
        self._pump(until, HEADER.size + n)
        data = bytes(self.buffer[HEADER.size:HEADER.size + n])
        del self.buffer[:HEADER.size + n]
        try:
            return decode(data, self.worker.limits.max_message)
        except ValueError as exc:
            raise SandboxError("invalid-reply", f"sent something that is not plain data ({exc})") from None

    def request(self, driver: str, inputs: dict, timeout: float):
        data = encode({"driver": driver, "inputs": inputs})
        self.channel.setblocking(True)
        self.channel.settimeout(max(0.1, self.deadline - time.monotonic()))
        try:
            self.channel.sendall(HEADER.pack(len(data)) + data)
        except (OSError, socket.timeout):
            raise SandboxError("crashed", "the submission's process stopped reading") from None
        finally:
            self.channel.setblocking(False)
        reply = self.receive(timeout)
        if not isinstance(reply, dict) or "output" not in reply:
            raise SandboxError("invalid-reply", "sent a reply the grader does not understand")
        return reply

    def close(self) -> str:
        """End the child (whatever state it is in) and return how it exited."""
        if self.exit is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.channel.close()
            if self.out_fd is not None:
                os.close(self.out_fd)
                self.out_fd = None
            self.exit = self.worker.reap(self.pid)
        return self.exit

    def output_text(self) -> str:
        return self.output.decode("utf-8", "replace")


def memory_error(output) -> bool:
    """An error marker that says an allocation failed (numpy's MemoryError, torch's allocator)."""
    return is_error(output) and (output["__error__"] == "MemoryError"
                                 or "can't allocate memory" in output["message"]
                                 or "not enough memory" in output["message"])
