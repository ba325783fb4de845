"""The sandboxed side of the grader: a pre-warmed zygote that forks one isolated child per submission.

Started by :mod:`autograder.sandbox` as ``python -I -m autograder.zygote FD`` with a scrubbed
environment; its settings arrive as the first frame on the control socket ``FD`` (never on the
command line). It then

1. enters new mount, network, IPC and UTS namespaces (and, without root, a user namespace that maps
   one unprivileged uid), and builds an **allow-list root**: an empty tmpfs holding, read-only, only
   the paths it was given (the Python installation's stdlib, the allowed packages, the public
   ``optlab`` and the grader's drivers, a few files of ``/dev``); it ``pivot_root``\\ s into it, so
   nothing else of the host exists for it or its children;
2. imports the heavy modules once (numpy, IPython, torch where allowed);
3. for each ``{"op": "spawn"}`` forks a child C, which enters new PID, mount, IPC, UTS and network
   namespaces and forks the submission's process G, PID 1 of its namespace: when G ends, everything
   the submission started ends with it. G mounts a private tmpfs on ``/tmp`` and ``/dev/shm``, hides
   ``/proc``, drops every capability and (as root) switches to the run's leased uid, then waits on
   its own channel for the notebook's cells. The zygote never receives a submission's cells or
   replies: those travel only between G and the trusted process, so no child inherits another
   student's data.

Protocol on the control socket (4-byte big-endian length + ``autograder.channel`` frames):
  parent -> zygote  settings (first frame)
  zygote -> parent  {"ready": layers} | {"refused": sentence}
  parent -> zygote  {"op": "spawn"}  ->  {"pid": G's host pid, "child": C's pid} + G's channel fd
  parent -> zygote  {"op": "reap", "child": C's pid}  ->  {"exit": how G ended}
On G's channel:
  G -> parent  {"executed": n, "cell_errors": [...]} after the cells ran
  parent -> G  {"driver": name, "inputs": {...}}  ->  {"output": plain data}
Nothing here decides a score; the trusted process judges what comes back.
"""
from __future__ import annotations

import ctypes
import importlib
import os
import resource
import signal
import socket
import sys

from autograder.channel import HEADER, decode, encode, error_marker, recv_frame, send_frame

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = \
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 1, 4, 24, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
WORKDIR = "/tmp/work"
_libc = ctypes.CDLL(None, use_errno=True)


class Refused(Exception):
    """A sandbox layer could not be set up; the message is the sentence shown to the instructor."""


# --------------------------------------------------------------------------- system calls
def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source, target, fstype, flags=0, data=None) -> None:
    enc = lambda s: None if s is None else str(s).encode()  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def prctl(option: int, arg: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl({option})")


def die_with_parent(parent: int) -> None:
    """SIGKILL when the parent process (pid `parent`, taken before the fork) ends."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent was already gone before the line above
        os._exit(1)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """No capability of any kind, now or after an execve; no way to gain privileges."""
    for cap in range(64):
        _libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0)  # fails harmlessly when absent
    _libc.prctl(PR_CAP_AMBIENT, ctypes.c_ulong(PR_CAP_AMBIENT_CLEAR_ALL), 0, 0, 0)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _check(_libc.syscall(126, ctypes.byref(header), ctypes.byref(data)), "capset")  # SYS_capset
    prctl(PR_SET_NO_NEW_PRIVS, 1)


# --------------------------------------------------------------------------- system calls refused
class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


# x86-64 numbers: namespaces and mounts (no way into a user namespace of its own, where it would
# hold capabilities again); state that outlives or crosses sandboxes (kernel keyrings; locks and
# inotify watches on the read-only files every sandbox shares); kernel interfaces a notebook never needs.
REFUSED_SYSCALLS = {"unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155,
                    "chroot": 161, "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321,
                    "userfaultfd": 323, "perf_event_open": 298, "io_uring_setup": 425, "ptrace": 101,
                    "flock": 73, "inotify_init": 253, "inotify_init1": 294, "fanotify_init": 300}
SYS_CLONE, SYS_CLONE3, CLONE_NEW_ANY = 56, 435, 0x7E020000  # every CLONE_NEW* flag
SYS_FCNTL, FCNTL_LOCKS = 72, (6, 7, 37, 38)  # F_SETLK, F_SETLKW, F_OFD_SETLK, F_OFD_SETLKW


def refuse_syscalls() -> bool:
    """A seccomp filter: the calls above fail with EPERM, clone with a CLONE_NEW* flag too, clone3
    with ENOSYS (its flags cannot be inspected; the C library then falls back to clone). x86-64
    only; elsewhere returns False and the other layers stand alone."""
    import platform
    if platform.machine() != "x86_64":
        return False
    ld, jeq, jset, ret = 0x20, 0x15, 0x45, 0x06
    allow, errno_eperm, errno_enosys, kill = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38, 0x80000000
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, 0xC000003E), (ret, 0, 0, kill),  # arch must be x86-64
            (ld, 0, 0, 0)]  # the syscall number
    for nr in REFUSED_SYSCALLS.values():
        prog += [(jeq, 0, 1, nr), (ret, 0, 0, errno_eperm)]
    n = len(FCNTL_LOCKS)
    prog += [(jeq, 0, 1, SYS_CLONE3), (ret, 0, 0, errno_enosys),                 # t0, t1
             (jeq, 3 + n, 0, SYS_CLONE),                                        # t2 -> clone's flags
             (jeq, 0, 1 + n, SYS_FCNTL),                                        # t3 -> allow unless fcntl
             (ld, 0, 0, 24)]                                                    # t4: fcntl's command
    prog += [(jeq, n - i + 2, 0, cmd) for i, cmd in enumerate(FCNTL_LOCKS)]    # -> the EPERM below
    prog += [(ret, 0, 0, allow),                                                # t5+n
             (ld, 0, 0, 16), (jset, 0, 1, CLONE_NEW_ANY),                       # clone's flags
             (ret, 0, 0, errno_eperm), (ret, 0, 0, allow)]
    filters = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), filters)
    _check(_libc.prctl(22, 2, ctypes.byref(fprog), 0, 0), "seccomp")  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    return True


# --------------------------------------------------------------------------- the allow-list root
def write_id_maps(outer_uid: int, outer_gid: int, inner: int) -> None:
    """In a fresh user namespace, map `inner` to our own outer uid and gid (all an unprivileged
    process may map)."""
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{inner} {outer_uid} 1\n")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{inner} {outer_gid} 1\n")


def enter_namespaces(cfg: dict) -> list[str]:
    layers = ["mount namespace", "network namespace (no network)", "IPC namespace", "UTS namespace"]
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    if not cfg["root"]:
        uid, gid = os.getuid(), os.getgid()
        try:
            unshare(CLONE_NEWUSER)
            write_id_maps(uid, gid, cfg["uid"])
        except OSError as exc:
            raise Refused(f"the user namespace layer is missing: an unprivileged user namespace could not "
                          f"be created ({exc.strerror}); run the grader as root, or enable unprivileged "
                          f"user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
                          f"user.max_user_namespaces > 0)") from None
        layers.insert(0, "user namespace")
    try:
        unshare(flags)
    except OSError as exc:
        raise Refused(f"the namespace layer is missing: mount, network, IPC and UTS namespaces could not "
                      f"be created ({exc.strerror})") from None
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    return layers


def _make_target(path: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.exists(path):
            open(path, "w").close()


def build_root(binds: list[list[str]], devices: list[str], masks: list[str]) -> None:
    """An empty root holding, read-only, only `binds` ([source, target] pairs) and `devices`;
    each folder of `masks` (inside a bind) covered by an empty read-only tmpfs."""
    sources = []
    for src, dest in binds + [[d, d] for d in devices]:
        try:
            sources.append((os.open(src, os.O_PATH), dest, os.path.isdir(src)))
        except OSError:
            continue  # an optional path missing on this host
    new_root = "/tmp"  # a mount point every host has; our tmpfs over it is private to this namespace
    mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=0755")
    for fd, dest, is_dir in sources:
        target = new_root + dest
        _make_target(target, is_dir)
        mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
        if dest not in devices:
            flags |= MS_NODEV
        mount(None, target, None, flags)
        os.close(fd)
    for path in masks:
        if os.path.isdir(new_root + path):
            mount("tmpfs", new_root + path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=0555")
    for path in ("/tmp", "/dev/shm", "/proc", WORKDIR.rsplit("/", 1)[0]):
        os.makedirs(new_root + path, exist_ok=True)
    os.chmod(new_root + "/tmp", 0o1777)
    os.chdir(new_root)
    _check(_libc.syscall(155, b".", b"."), "pivot_root")  # SYS_pivot_root: the old root now lies below
    _check(_libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    private_tmp(binds, "size=16m,mode=0700")  # the zygote's own
    importlib.invalidate_caches()


def private_tmp(binds: list[list[str]], options: str) -> None:
    """A fresh tmpfs on /tmp, with the allowed paths that lie under /tmp (a course or virtualenv
    checked out there) bound back, read-only, at the same place."""
    kept = [dest for _, dest in binds if dest.startswith("/tmp/") and os.path.exists(dest)]
    kept = [d for d in kept if not any(d.startswith(o + "/") for o in kept)]
    trees = []  # detached copies of those mounts (open_tree: no /proc needed, as there is none here)
    for dest in kept:
        fd = _libc.syscall(428, -100, dest.encode(), 1 | 0x8000 | os.O_CLOEXEC)  # open_tree(AT_FDCWD, CLONE|RECURSIVE)
        if fd < 0:
            _check(-1, f"open_tree {dest}")
        trees.append((fd, dest, os.path.isdir(dest)))
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, options)
    for fd, dest, is_dir in trees:
        _make_target(dest, is_dir)
        _check(_libc.syscall(429, fd, b"", -100, dest.encode(), 4), f"move_mount {dest}")  # F_EMPTY_PATH
        os.close(fd)


def prewarm(modules: list[str], cfg_env: dict) -> None:
    """Import what submissions and drivers use, once per zygote (never student code)."""
    os.environ.update(cfg_env)
    import numpy  # noqa: F401
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config
    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "NoColor"  # plain tracebacks in the feedback
    InteractiveShell.instance(config=config)  # each child gets its own namespace
    import autograder.drivers  # noqa: F401
    for name in modules:
        try:
            importlib.import_module(name)
            if name == "torch":
                sys.modules["torch"].set_num_threads(1)
            if name == "matplotlib":
                sys.modules["matplotlib"].use("Agg")
        except Exception:  # noqa: BLE001 -- the submission meets the same error itself
            pass


def setup(cfg: dict) -> list[str]:
    if not cfg["sandbox"]:
        prewarm(cfg["prewarm"], cfg["env"])
        return ["none (--allow-unsandboxed)"]
    layers = enter_namespaces(cfg)
    try:
        build_root(cfg["binds"], cfg["devices"], cfg["masks"])
    except OSError as exc:
        raise Refused(f"the allow-list filesystem could not be built ({exc}); the mount namespace "
                      f"layer is missing") from None
    layers.append("allow-list root (read-only: the Python stdlib, the allowed packages, optlab)")
    prctl(PR_SET_DUMPABLE, 0)
    prewarm(cfg["prewarm"], cfg["env"])
    return layers + ["PID namespace per submission", "private /tmp per submission",
                     "seccomp filter (no namespaces, mounts, keyrings, bpf, ptrace)",
                     "no capabilities" + (f", uid {cfg['uid']}" if cfg["root"] else ""),
                     "cgroup per submission (memory, processes, CPU)"]


# --------------------------------------------------------------------------- serving spawn requests
def describe_exit(code: int) -> str:
    """How G ended, from C's exit code (128 + signal number when G was killed)."""
    if code >= 128:
        sig = code - 128
        return f"killed by {signal.Signals(sig).name}" if sig in signal.Signals._value2member_map_ \
            else f"signal {sig}"
    return f"exit code {code}"


def serve(control: socket.socket, cfg: dict) -> None:
    while True:
        try:
            msg, cgroup_fds = recv_frame(control, 1 << 16, want_fds=4, clean=False)
        except (EOFError, ValueError):
            return
        if msg.get("op") == "spawn":
            parent_end, child_end = socket.socketpair()
            report_r, report_w = os.pipe()
            zygote = os.getpid()
            pid = os.fork()
            if pid == 0:
                die_with_parent(zygote)
                control.close(), parent_end.close(), os.close(report_r)
                intermediate(child_end, report_w, cgroup_fds, cfg)  # never returns
            child_end.close(), os.close(report_w)
            for fd in cgroup_fds:
                os.close(fd)
            with os.fdopen(report_r, "rb") as report:
                grandchild = int(report.read(32) or b"0")
            send_frame(control, {"pid": grandchild, "child": pid}, fds=[parent_end.fileno()])
            parent_end.close()
        elif msg.get("op") == "reap":
            _, status = os.waitpid(int(msg["child"]), 0)
            send_frame(control, {"exit": describe_exit(os.waitstatus_to_exitcode(status))})


def intermediate(channel: socket.socket, report_w: int, cgroup_fds: list[int], cfg: dict) -> None:
    """C: joins the submission's cgroup (the `cgroup.procs` files it was handed), enters new PID,
    mount, IPC, UTS and network namespaces, and starts their init; reports the init's pid and exits
    with the submission's exit code (128 + signal number when it was killed)."""
    code = 70
    try:
        for fd in cgroup_fds:  # before any fork: all the submission's processes are inside
            os.write(fd, b"0")
            os.close(fd)
        if cfg["sandbox"]:
            unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            if not cfg["sandbox"]:
                die_with_parent(parent)  # in a new PID namespace the parent is outside it: see init
            os.close(report_w)
            init(channel, cfg)  # never returns
        channel.close()
        os.write(report_w, str(pid).encode())
        os.close(report_w)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
    except BaseException:  # noqa: BLE001 -- never return into the zygote's loop
        code = 72
    os._exit(code)


def init(channel: socket.socket, cfg: dict) -> None:
    """PID 1 of the submission's namespace: private mounts, then the submission's process G; reaps
    orphans; when G ends, it ends, and the kernel ends everything else in the namespace."""
    code = 73
    try:
        if cfg["sandbox"]:
            die_with_parent(0)  # C lives outside this PID namespace: getppid() reads 0
            private_mounts(cfg)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            submission(channel, parent, cfg)  # never returns
        channel.close()
        while True:
            done, status = os.waitpid(-1, 0)
            if done == pid:
                code = os.waitstatus_to_exitcode(status)
                code = 128 - code if code < 0 else code
                break
    except BaseException:  # noqa: BLE001 -- never return into the zygote's loop
        pass
    os._exit(code)


# --------------------------------------------------------------------------- the submission's process
def limit(cfg: dict) -> None:
    # memory is bounded for all the submission's processes together by its cgroup, not per process
    for res, value in ((resource.RLIMIT_CPU, cfg["cpu_seconds"]),
                       (resource.RLIMIT_FSIZE, cfg["max_file_bytes"]), (resource.RLIMIT_NOFILE, 256),
                       (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(res, (value, value))


def private_mounts(cfg: dict) -> None:
    """G's own /tmp and /dev/shm (size-capped tmpfs); /proc hidden behind an empty one."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    size = cfg["tmp_mb"]
    private_tmp(cfg["binds"], f"size={size}m,mode=1777")
    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=1m,mode=1777")
    mount("tmpfs", "/proc", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, "size=4k,mode=0555")
    os.makedirs(WORKDIR, exist_ok=True)


def submission(channel: socket.socket, parent: int, cfg: dict) -> None:
    code = 70
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0), os.dup2(null, 1), os.dup2(null, 2)
        os.close(null)
        signal.signal(signal.SIGTERM, signal.SIG_DFL), signal.signal(signal.SIGINT, signal.SIG_DFL)
        if cfg["sandbox"]:
            os.chown(WORKDIR, cfg["uid"], cfg["uid"])
            os.chdir(WORKDIR)
            limit(cfg)
            if cfg["root"]:  # the bounding set needs CAP_SETPCAP: drop it before the uid change
                for cap in range(64):
                    _libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0)
                os.setgroups([])
                os.setresgid(cfg["uid"], cfg["uid"], cfg["uid"])
                os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
            drop_capabilities()
            refuse_syscalls()
        else:
            limit(cfg)
        die_with_parent(parent)  # a uid change clears it, so set it after
        os.environ.clear()
        os.environ.update(cfg["env"], HOME=WORKDIR)
        code = run(channel, cfg)
    except BaseException:  # noqa: BLE001 -- a child never returns into the zygote's loop
        code = 71
    os._exit(code)


def run(channel: socket.socket, cfg: dict) -> int:
    """Receive the cells (after the trusted side has put this process into its cgroup), run them with
    output on the pipe that came with them, then answer driver calls until the channel closes."""
    msg, fds = recv_frame(channel, cfg["max_cells_bytes"], want_fds=1, clean=False)
    if fds:
        os.dup2(fds[0], 1), os.dup2(fds[0], 2)
        os.close(fds[0])
    sys.stdout = os.fdopen(1, "w", buffering=1, errors="replace", closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, errors="replace", closefd=False)
    from IPython.core.interactiveshell import InteractiveShell

    from autograder import drivers
    shell = InteractiveShell.instance()
    errors = []
    for index, source in msg["cells"]:
        result = shell.run_cell(source, store_history=False, silent=False)
        exc = result.error_before_exec or result.error_in_exec
        if exc is not None:
            errors.append({"cell": index, "error": error_marker(exc)})
    sys.stdout.flush()
    send_frame(channel, {"executed": len(msg["cells"]), "cell_errors": errors[:50]})
    ns = shell.user_ns
    while True:
        try:
            request = recv_frame(channel, cfg["max_request_bytes"], clean=False)
        except EOFError:
            return 0
        try:
            data = encode({"output": getattr(drivers, request["driver"])(ns, **request["inputs"])})
        except BaseException as exc:  # noqa: BLE001 -- reported as data, judged by the parent
            data = encode({"output": error_marker(exc)})
        channel.sendall(HEADER.pack(len(data)) + data)


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    die_with_parent(int(os.environ.get("AUTOGRADER_PARENT", os.getppid())))
    cfg = recv_frame(control, 1 << 24, clean=False)
    try:
        layers = setup(cfg)
    except Refused as exc:
        send_frame(control, {"refused": str(exc)})
        sys.exit(2)
    send_frame(control, {"ready": layers})
    serve(control, cfg)


if __name__ == "__main__":
    main()
