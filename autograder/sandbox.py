"""The trusted side of the sandbox: what a submission may see, its cgroup, its zygote and its process.

:func:`allow_list` turns an assignment's permitted packages into the read-only paths of the
submission's root; :class:`Cgroups` makes one cgroup per submission (v2, or v1 where that is what the
host has) bounding its memory, processes and CPU as a whole; :class:`Worker` owns one pre-warmed
zygote (``python -I -m autograder.zygote``, see that module for the namespaces) and :class:`Run` one
submission's process. Everything that comes back is decoded by :mod:`autograder.channel` (size-capped
JSON, never code); a process that runs too long, prints or sends too much, or dies becomes a
:class:`SandboxError` with a status name.
"""
from __future__ import annotations

import fcntl
import importlib.metadata as metadata
import os
import selectors
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from autograder.channel import HEADER, decode, recv_frame, send_frame

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# Packages every submission's process needs: the notebook runner (IPython) and the drivers.
RUNNER_PACKAGES = ["ipython", "numpy", "threadpoolctl"]
COURSE_DIST = "when-nets-wont-train"  # this project: its public packages are bound from their folders
FIRST_UID, UID_COUNT = 61000, 1000  # as root, each worker leases a uid of this range for the run
LEASES = Path("/run/autograder")
STDLIB = os.path.dirname(os.__file__)  # the base interpreter's (lib-dynload lies inside it)
SANDBOX_UID = 1000  # the submission's uid inside its user namespace (rootless mode)
DEVICES = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"]
# The system's shared libraries (the multiarch folder where there is one, not all of /usr/lib) and
# what the dynamic loader reads.
_ARCH = sysconfig.get_config_var("MULTIARCH") or ""
SYSTEM_PATHS = ([f"/usr/lib/{_ARCH}", f"/lib/{_ARCH}"] if _ARCH and os.path.isdir(f"/usr/lib/{_ARCH}")
                else ["/usr/lib", "/lib"]) + ["/usr/lib64", "/lib64", "/etc/ld.so.cache", "/etc/ld.so.conf",
                                              "/etc/ld.so.conf.d", "/etc/localtime"]
ENV = {"PATH": "/nonexistent", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg",
       "MPLCONFIGDIR": "/tmp/matplotlib", "IPYTHONDIR": "/tmp/ipython", "HOME": "/tmp/work", "USER": "student", "LOGNAME": "student",
       "NBGRADER_EXECUTION": "autograde", "OPTLAB_CACHE": "/var/cache/optlab", "PYTHONHASHSEED": "0"}


@dataclass
class Limits:
    timeout: float = 300.0  # wall seconds per submission (executing the notebook + all calls)
    memory_mb: int = 4096  # memory of the whole submission, all its processes together (cgroup)
    max_procs: int = 64  # processes and threads of the whole submission (cgroup)
    cpus: float = 1.0  # CPU share of the whole submission (cgroup)
    max_output: int = 1 << 20  # bytes the submission may print
    max_message: int = 4 << 20  # bytes of one reply on the channel
    max_transcript: int = 16 << 20  # bytes of all its replies together (what the grader holds per submission)
    max_file_bytes: int = 64 << 20  # largest file it may write
    tmp_mb: int = 256  # its private /tmp (charged to its memory too)


class SandboxError(Exception):
    """A submission's process hit a limit or died: `status` names it, the message explains."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class TranscriptFull(SandboxError):
    """The submission's replies together used up its transcript budget: none of its calls runs any more."""


class Refused(Exception):
    """The sandbox cannot be set up here; the message names the missing layer."""


# --------------------------------------------------------------------------- what a submission sees
def _requirements(dist: metadata.Distribution) -> list[str]:
    from packaging.requirements import Requirement
    names = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.append(req.name)
    return names


def _top_levels(dist: metadata.Distribution) -> set[str]:
    """The first path component, in site-packages, of every file the distribution installed."""
    tops = set()
    for f in dist.files or []:
        parts = Path(str(f)).parts
        if parts and parts[0] not in ("..", "__pycache__") and not parts[0].endswith(".pth"):
            tops.add(parts[0])
    return tops


def packages_of(modules: list[str]) -> list[str]:
    """Distribution names providing the given import names (unknown ones are skipped)."""
    mapping = metadata.packages_distributions()
    return sorted({d for m in modules for d in mapping.get(m.split(".")[0], [])})


def _distributions(packages: list[str], forbidden: set[str]):
    """(distribution, its top-level entries in site-packages, the modules they provide) for the
    runner's and `packages` with their dependencies, minus any that provides a `forbidden` module."""
    seen, todo = set(), [*RUNNER_PACKAGES, *packages]
    while todo:
        name = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen or key == COURSE_DIST:
            continue
        seen.add(key)
        tops = _top_levels(dist)
        provides = {t.split(".")[0] for t in tops if not t.endswith((".dist-info", ".libs"))}
        if provides & forbidden:
            continue
        yield dist, tops, provides
        todo += _requirements(dist)


def importable(packages: list[str], forbidden: list[str]) -> list[str]:
    """Top-level modules a submission can import besides the standard library (those of
    :func:`allow_list`'s packages and the course's public ones); any other is absent."""
    forbidden = {m.split(".")[0] for m in forbidden}
    names = {m for _, _, provides in _distributions(packages, forbidden) for m in provides}
    names |= {pkg for pkg in ("optlab", "autograder") if pkg not in forbidden}
    return sorted(n for n in names if n.isidentifier() and n not in sys.stdlib_module_names)


def allow_list(packages: list[str], forbidden: list[str]) -> list[list[str]]:
    """[source, target] read-only binds of a submission's root: the interpreter and its stdlib, the
    system's shared libraries, `packages` with their dependencies (minus any that provides a module
    of `forbidden`), optlab and the grader's public modules, optlab's cached data."""
    forbidden = {m.split(".")[0] for m in forbidden}
    site = Path(sysconfig.get_paths()["purelib"])
    paths = {STDLIB, os.path.realpath(sys.executable), *SYSTEM_PATHS}
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and os.path.isdir(libdir):
        paths |= {str(p) for p in Path(libdir).glob("libpython*.so*")}
    for _, tops, _ in _distributions(packages, forbidden):
        paths |= {str(site / t) for t in tops if (site / t).exists()}
    binds = [[p, p] for p in sorted(paths) if os.path.exists(p) and "__editable__" not in p]
    # the course's public packages (editable install: their source folders) and optlab's data
    binds += [[str(PACKAGE_ROOT / pkg), str(PACKAGE_ROOT / pkg)] for pkg in ("optlab", "autograder")
              if pkg not in forbidden]
    binds += [[str(p), str(site / p.name)] for p in site.glob("__editable__*when_nets_wont_train*")]
    cache = optlab_cache()
    if cache.is_dir():
        binds.append([str(cache), ENV["OPTLAB_CACHE"]])
    return binds


def masks() -> list[str]:
    """Folders inside the binds that must look empty: the base interpreter's own site-packages."""
    base = Path(STDLIB) / "site-packages"
    return [str(base)] if base.is_dir() and base != Path(sysconfig.get_paths()["purelib"]) else []


def optlab_cache() -> Path:
    """optlab's data cache (as optlab.data.cache_dir computes it, without importing torch)."""
    import platformdirs
    return Path(os.environ.get("OPTLAB_CACHE") or platformdirs.user_cache_dir("optlab"))


# --------------------------------------------------------------------------- cgroups
class Cgroups:
    """Where per-submission cgroups are made: one folder on cgroup v2, one per controller on v1.

    As root: ``autograder`` under the hierarchy's root. Without root: ``$AUTOGRADER_CGROUP``, a
    cgroup delegated to the instructor (a v2 folder, or a name under each v1 controller)."""

    V1 = ("memory", "pids", "cpu")

    def __init__(self, bases: dict[str, Path], v2: bool, run: str | None = None):
        # A cgroup's name is "<grader pid>-<run id>-<name>": several runs share a process (API calls in
        # threads, runs on one Dask worker), so the run id keeps their cgroups and their clean-up
        # apart, while the pid lets a later run remove those of a grader killed with -9.
        self.bases, self.v2, self.run = bases, v2, run or uuid.uuid4().hex[:16]

    @classmethod
    def find(cls, root: bool) -> "Cgroups":
        fs = Path("/sys/fs/cgroup")
        wanted = os.environ.get("AUTOGRADER_CGROUP", "autograder" if root else "")
        missing = ("the cgroup layer is missing: {}; the grader bounds each submission's memory, "
                   "processes and CPU as a whole with a cgroup")
        if not wanted:
            raise Refused(missing.format("without root, set AUTOGRADER_CGROUP to a cgroup delegated to "
                                         "you (e.g. from `systemd-run --user --scope -p Delegate=yes`)"))
        if (fs / "cgroup.controllers").is_file():
            base = Path(wanted) if os.path.isabs(wanted) else fs / wanted
            bases, v2 = {"v2": base}, True
        elif all((fs / c / "cgroup.procs").is_file() for c in cls.V1):
            bases = {c: (Path(wanted) if os.path.isabs(wanted) else fs / c / wanted) for c in cls.V1}
            v2 = False
        else:
            raise Refused(missing.format("no cgroup v2 hierarchy with the memory and pids controllers, "
                                         "nor cgroup v1 memory, pids and cpu hierarchies, under /sys/fs/cgroup"))
        try:
            for base in bases.values():
                base.mkdir(exist_ok=True)
            if v2:
                cls._enable_v2(bases["v2"])
        except OSError as exc:
            raise Refused(missing.format(f"cannot create cgroups under {list(bases.values())[0]} "
                                         f"({exc.strerror})")) from None
        found = cls(bases, v2)
        found.clean_stale()
        found.janitor = subprocess.Popen(  # removes this run's cgroups even if the grader is killed
            [sys.executable, "-I", "-m", "autograder.sandbox", "janitor", str(os.getpid()), found.run,
             str(int(v2)), *map(str, bases.values())], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd="/", env={"PATH": "/usr/bin:/bin"}, start_new_session=True)
        return found

    @staticmethod
    def _enable_v2(base: Path) -> None:
        parent = base.parent
        for folder in (parent, base):
            available = (folder / "cgroup.controllers").read_text().split()
            need = [c for c in ("memory", "pids", "cpu") if c in available]
            if "memory" not in need or "pids" not in need:
                raise OSError(95, f"memory and pids controllers not available in {folder}")
            try:
                (folder / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in need))
            except OSError:
                if folder is base:
                    raise

    def create(self, name: str, limits: Limits) -> "Cgroup":
        name = f"{os.getpid()}-{self.run}-{name}"
        group = Cgroup({k: b / name for k, b in self.bases.items()}, self.v2)
        group.make(limits)
        return group

    def clean_stale(self, owner: int | None = None) -> None:
        """Remove the cgroups of runs whose grader is gone (e.g. killed with -9), or with `owner` (the
        grader's pid) those of this run only, never another run of the same process."""
        mine = f"{owner}-{self.run}-"
        for controller, base in self.bases.items():
            for folder in base.iterdir() if base.is_dir() else ():
                pid = folder.name.split("-")[0]
                if folder.is_dir() and pid.isdigit() and (folder.name.startswith(mine) if owner
                                                          else not pid_alive(int(pid))):
                    Cgroup({controller: folder}, self.v2).destroy()

    def close(self) -> None:
        """The run is over: its janitor checks once more and leaves."""
        janitor = getattr(self, "janitor", None)
        if janitor is not None:
            janitor.stdin.close()
            janitor.wait()
            self.janitor = None


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (on this machine, in this PID namespace)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Cgroup:
    """One submission's cgroup: limits, membership, whether the OOM killer struck, removal."""

    def __init__(self, dirs: dict[str, Path], v2: bool):
        self.dirs, self.v2 = dirs, v2

    def _write(self, controller: str, name: str, value, optional: bool = False) -> None:
        try:
            (self.dirs[controller] / name).write_text(str(value))
        except OSError:
            if not optional:
                raise

    def make(self, limits: Limits) -> None:
        for d in self.dirs.values():
            d.mkdir(exist_ok=True)
        memory = limits.memory_mb << 20
        if self.v2:
            self._write("v2", "memory.max", memory)
            self._write("v2", "memory.swap.max", 0, optional=True)
            self._write("v2", "pids.max", limits.max_procs)
            self._write("v2", "cpu.max", f"{int(100000 * limits.cpus)} 100000", optional=True)
        else:
            self._write("memory", "memory.limit_in_bytes", memory)
            self._write("memory", "memory.memsw.limit_in_bytes", memory, optional=True)
            self._write("pids", "pids.max", limits.max_procs)
            self._write("cpu", "cpu.cfs_period_us", 100000, optional=True)
            self._write("cpu", "cpu.cfs_quota_us", int(100000 * limits.cpus), optional=True)

    def procs_fds(self) -> list[int]:
        """Open `cgroup.procs` files: the zygote's child writes "0" to them to join."""
        return [os.open(d / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC) for d in self.dirs.values()]

    def pids(self) -> set[int]:
        found = set()
        for d in self.dirs.values():
            try:
                found |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        return found

    def oom_killed(self) -> bool:
        name = "memory.events" if self.v2 else "memory.oom_control"
        try:
            text = (self.dirs["v2" if self.v2 else "memory"] / name).read_text()
        except (OSError, KeyError):
            return False
        counts = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        return int(counts.get("oom_kill", 0)) > 0 or (not self.v2 and self._failcnt() > 0 and
                                                       "oom_kill" not in counts)

    def _failcnt(self) -> int:
        try:
            return int((self.dirs["memory"] / "memory.failcnt").read_text())
        except (OSError, KeyError, ValueError):
            return 0

    def destroy(self) -> None:
        """Kill whatever is still inside, then remove the folders."""
        for _ in range(200):
            if self.v2 and (self.dirs["v2"] / "cgroup.kill").exists():
                self._write("v2", "cgroup.kill", 1, optional=True)
            left = self.pids()
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            removed = True
            for d in self.dirs.values():
                try:
                    d.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    removed = False
            if removed:
                return
            time.sleep(0.01)


# --------------------------------------------------------------------------- uid leases (root)
def lease_uid() -> tuple[int, int]:
    """(uid, fd): a uid of FIRST_UID.. that no other grading run holds, held while fd stays open."""
    LEASES.mkdir(mode=0o700, parents=True, exist_ok=True)
    for uid in range(FIRST_UID, FIRST_UID + UID_COUNT):
        fd = os.open(LEASES / f"uid-{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return uid, fd
        except BlockingIOError:
            os.close(fd)
    raise Refused(f"every sandbox uid ({FIRST_UID}..{FIRST_UID + UID_COUNT - 1}) is leased by another run")


# --------------------------------------------------------------------------- the zygote
@dataclass
class Setup:
    """What the zygote of one assignment needs: the root's binds and the modules to pre-import."""

    binds: list[list[str]]
    prewarm: list[str]
    sandbox: bool = True
    cgroups: Cgroups | None = field(default=None, repr=False)


def check_host(sandbox: bool) -> Cgroups | None:
    """The cgroup hierarchy to use; Refused with the missing layer named when there is none."""
    if not sandbox:
        return None
    if sys.platform != "linux":
        raise Refused("the sandbox needs Linux namespaces and cgroups; this is " + sys.platform)
    return Cgroups.find(os.geteuid() == 0)


class Worker:
    """One pre-warmed zygote: imports paid once, a fresh isolated process per submission."""

    command = [sys.executable, "-I", "-m", "autograder.zygote"]  # + the control socket's fd

    def __init__(self, index: int, setup: Setup, limits: Limits, log: Path):
        self.index, self.setup, self.limits, self.log = index, setup, limits, log
        self.proc = self.control = None
        self.layers: list[str] = []
        self.uid, self.lease = SANDBOX_UID, None
        self.spawned = 0

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the zygote; it imports and sets up while the caller does other work."""
        root = os.geteuid() == 0
        if root and self.setup.sandbox and self.lease is None:
            self.uid, self.lease = lease_uid()
        cfg = {"sandbox": self.setup.sandbox, "root": root, "uid": self.uid, "binds": self.setup.binds,
               "devices": DEVICES, "masks": masks(), "prewarm": self.setup.prewarm, "env": ENV,
               "cpu_seconds": int(self.limits.timeout) + 5,
               "max_file_bytes": self.limits.max_file_bytes, "tmp_mb": self.limits.tmp_mb,
               "max_cells_bytes": 64 << 20, "max_request_bytes": 256 << 20}
        self.control, theirs = socket.socketpair()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.command, str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/",
                # one BLAS thread: unshare(CLONE_NEWUSER) needs a single-threaded process
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "AUTOGRADER_PARENT": str(os.getpid()),
                     "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
                start_new_session=True)
        theirs.close()
        send_frame(self.control, cfg)

    def wait_ready(self, timeout: float = 300.0) -> None:
        self.control.settimeout(timeout)
        try:
            reply = recv_frame(self.control, 1 << 16)
        except (OSError, EOFError, ValueError) as exc:
            self.stop()
            raise Refused(f"the sandbox did not start ({exc}); see {self.log}") from None
        if "refused" in reply:
            self.stop()
            raise Refused(f"Refusing to grade: {reply['refused']}.")
        self.layers = reply["ready"]
        self.control.settimeout(None)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self, cells: list[tuple[int, str]], deadline: float) -> "Run":
        """A fresh process for one submission, in its own cgroup, running `cells`."""
        if not self.alive():
            self.start()
        self.spawned += 1
        group = None
        if self.setup.cgroups is not None:
            group = self.setup.cgroups.create(f"{self.index}-{self.spawned}", self.limits)
        procs = group.procs_fds() if group is not None else []
        try:
            send_frame(self.control, {"op": "spawn"}, fds=procs)
        finally:
            for fd in procs:
                os.close(fd)
        reply, fds = recv_frame(self.control, 1 << 16, want_fds=1)
        channel = socket.socket(fileno=fds[0])
        try:
            out_r, out_w = os.pipe()
            try:
                send_frame(channel, {"cells": [list(c) for c in cells]}, fds=[out_w])
            finally:
                os.close(out_w)
        except BaseException:
            Run(self, reply, channel, None, deadline, group).close()
            raise
        return Run(self, reply, channel, out_r, deadline, group)

    def reap(self, child: int) -> str:
        send_frame(self.control, {"op": "reap", "child": child})
        return recv_frame(self.control, 1 << 16)["exit"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.control is not None:
            self.control.close()
            self.control = None
        self.proc = None

    def release(self) -> None:
        self.stop()
        if self.lease is not None:
            os.close(self.lease)
            self.lease = None


class Run:
    """One submission's process: its output, its replies, its end."""

    OUTPUT_KEPT = 20_000  # bytes of the submission's printed output kept for feedback

    def __init__(self, worker: Worker, reply: dict, channel: socket.socket, out_fd: int | None,
                 deadline: float, group: Cgroup | None):
        self.worker, self.pid, self.child = worker, int(reply["pid"]), int(reply["child"])
        try:  # held from now on, a pidfd can never signal a recycled pid
            self.pidfd = os.pidfd_open(self.pid)
        except OSError:  # already gone
            self.pidfd = None
        self.channel, self.out_fd, self.deadline, self.group = channel, out_fd, deadline, group
        self.output = bytearray()
        self.output_bytes = 0
        self.exit: str | None = None
        self.buffer = bytearray()
        if out_fd is not None:
            os.set_blocking(out_fd, False)
        self.channel.setblocking(False)

    # -- receiving with a deadline while draining the child's output
    def _pump(self, until: float, need: int) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.channel, selectors.EVENT_READ, "channel")
        if self.out_fd is not None:
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
                        chunk = self.channel.recv(min(1 << 20, need - len(self.buffer)))
                        if not chunk:
                            raise self._died()
                        self.buffer += chunk
        finally:
            sel.close()

    def _died(self) -> SandboxError:
        self._drain_output()
        if self.group is not None and self.group.oom_killed():
            return SandboxError("memory", "memory limit exceeded (the submission was stopped)")
        return SandboxError("crashed", "the submission's process ended unexpectedly")

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
        self._keep(chunk)
        if self.output_bytes > self.worker.limits.max_output:
            raise SandboxError("output-limit",
                               f"printed more than {self.worker.limits.max_output} bytes of output")

    def _keep(self, chunk: bytes) -> None:
        self.output_bytes += len(chunk)
        if len(self.output) < self.OUTPUT_KEPT:
            self.output += chunk[: self.OUTPUT_KEPT - len(self.output)]

    def printed_so_far(self) -> bytes:
        """The output kept so far, with everything already in the pipe read first."""
        self._drain_output()
        return bytes(self.output)

    def _drain_output(self) -> None:
        while self.out_fd is not None and self.output_bytes <= self.worker.limits.max_output:
            try:
                chunk = os.read(self.out_fd, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                return
            self._keep(chunk)

    def receive(self, timeout: float):
        return self.receive_raw(timeout)[0]

    def receive_raw(self, timeout: float, budget: int | None = None):
        """The next reply, decoded (size- and budget-checked), and its bytes as received; a reply
        larger than `budget` (what is left of the transcript's bytes) is refused unread."""
        until = min(time.monotonic() + timeout, self.deadline)
        self._pump(until, HEADER.size)
        (n,) = HEADER.unpack(self.buffer[:HEADER.size])
        if n > self.worker.limits.max_message:
            raise SandboxError("output-limit", f"sent a reply of {n} bytes "
                                               f"(limit {self.worker.limits.max_message})")
        if budget is not None and n > budget:
            raise TranscriptFull("output-limit", f"sent more than {self.worker.limits.max_transcript} bytes "
                                                 f"of replies in all (the limit per submission)")
        self._pump(until, HEADER.size + n)
        data = bytes(self.buffer[HEADER.size:HEADER.size + n])
        del self.buffer[:HEADER.size + n]
        try:
            return decode(data, self.worker.limits.max_message), data
        except ValueError as exc:
            raise SandboxError("invalid-reply", f"sent something that is not plain data ({exc})") from None

    def request(self, driver: str, inputs: dict, timeout: float, budget: int | None = None):
        from autograder.channel import encode
        data = encode({"driver": driver, "inputs": inputs})
        self.channel.setblocking(True)
        self.channel.settimeout(max(0.1, self.deadline - time.monotonic()))
        try:
            self.channel.sendall(HEADER.pack(len(data)) + data)
        except (OSError, socket.timeout):
            raise SandboxError("crashed", "the submission's process stopped reading") from None
        finally:
            self.channel.setblocking(False)
        reply, raw = self.receive_raw(timeout, budget)
        if not isinstance(reply, dict) or "output" not in reply:
            raise SandboxError("invalid-reply", "sent a reply the grader does not understand")
        return reply, raw

    def close(self) -> str:
        """End the submission (whatever state it is in) and everything it started; how it ended."""
        if self.exit is None:
            if self.pidfd is not None:
                try:
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)  # its PID namespace's init: all die
                except ProcessLookupError:
                    pass
                os.close(self.pidfd)
            self.channel.close()
            if self.out_fd is not None:
                os.close(self.out_fd)
                self.out_fd = None
            self.exit = self.worker.reap(self.child)
            if self.group is not None:
                self.group.destroy()
        return self.exit

    def output_text(self) -> str:
        from autograder.channel import clean_text
        return clean_text(self.output.decode("utf-8", "replace"), self.OUTPUT_KEPT)


def memory_error(output) -> bool:
    """An error marker that says an allocation failed (numpy's MemoryError, torch's allocator)."""
    from autograder.channel import is_error
    return is_error(output) and (output["__error__"] == "MemoryError"
                                 or "can't allocate memory" in output["message"]
                                 or "not enough memory" in output["message"])


def janitor(owner: int, run: str, v2: bool, bases: list[str]) -> None:
    """Wait until the run `run` of grader `owner` ends (its end of our stdin closes: the run closed
    its cgroups, or the grader died), then remove that run's cgroups."""
    sys.stdin.buffer.read()
    names = ["v2"] if v2 else list(Cgroups.V1)
    Cgroups(dict(zip(names, map(Path, bases))), v2, run).clean_stale(owner)


if __name__ == "__main__" and sys.argv[1:2] == ["janitor"]:
    janitor(int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1", sys.argv[5:])
