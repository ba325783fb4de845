"""The channel between the trusted grader and a submission's process: plain data, bounded, never code.

Frames are a 4-byte big-endian length and JSON in which arrays travel as dtype, shape and base64 of
their little-endian bytes, and an exception travels as ``{"__error__": name, "message": text}``.
:func:`decode` is the only way bytes from a submission become Python objects on the trusted side: it
refuses anything over its byte, node, depth and element budgets before building the value, so what a
student sends costs the grader at most a fixed amount of memory and time. Every string that arrives
is cleaned by :func:`clean_text` (no lone surrogates, no control characters, capped length).
"""
from __future__ import annotations

import base64
import json
import math
import re
import socket
import struct

import numpy as np

HEADER = struct.Struct(">I")
MAX_DEPTH = 32
MAX_NODES = 200_000  # JSON values in one message
MAX_ELEMENTS = 4_000_000  # array elements in one message
MAX_STRING = 2000  # characters kept of any string that arrives
_RESERVED = ("__ndarray__", "__error__")
_DTYPE = re.compile(r"[<|][biufc][0-9]{1,2}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufff9-\ufffb]")


def clean_text(text, limit: int = MAX_STRING) -> str:
    """Hostile text made safe to store and show: valid UTF-8, no control characters, at most `limit`."""
    if not isinstance(text, str):
        text = str(text)
    text = text[: limit * 4].encode("utf-8", "replace").decode("utf-8")  # lone surrogates -> "?"
    text = _CONTROL.sub("\ufffd", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_marker(exc: BaseException) -> dict:
    """``{"__error__": name, "message": str}``; the name is the first built-in class of its MRO."""
    name = next((k.__name__ for k in type(exc).__mro__ if k.__module__ == "builtins"), "Exception")
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 -- a student's __str__ may raise
        message = "(message unavailable)"
    return {"__error__": name, "message": clean_text(message)}


def is_error(obj) -> bool:
    return isinstance(obj, dict) and "__error__" in obj


def _to_json(obj, depth: int):
    if depth > MAX_DEPTH:
        raise ValueError("nested too deeply")
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if isinstance(obj, (np.ndarray, np.number, np.bool_, int, float)):
        arr = np.asarray(obj)  # numpy scalars and int/float subclasses become 0-d arrays
        if arr.dtype.kind not in "biufc":
            raise ValueError(f"cannot send arrays of dtype {arr.dtype}")
        arr = np.array(arr, dtype=arr.dtype.newbyteorder("<"), order="C")
        return {"__ndarray__": arr.dtype.str, "shape": list(arr.shape),
                "data": base64.b64encode(arr.tobytes()).decode("ascii")}
    if isinstance(obj, (list, tuple)):
        return [_to_json(x, depth + 1) for x in obj]
    if isinstance(obj, dict):
        if "__error__" in obj:
            if set(obj) != {"__error__", "message"} or not all(isinstance(v, str) for v in obj.values()):
                raise ValueError("malformed error marker")
            return dict(obj)
        if not all(type(k) is str for k in obj):
            raise ValueError("dict keys must be str")
        if any(k in _RESERVED for k in obj):
            raise ValueError("dict uses a reserved key")
        return {k: _to_json(v, depth + 1) for k, v in obj.items()}
    raise ValueError(f"cannot send {type(obj).__name__}")


def encode(obj) -> bytes:
    """Plain data -> JSON bytes (arrays as dtype, shape and base64 of little-endian bytes)."""
    return json.dumps(_to_json(obj, 0), allow_nan=True, separators=(",", ":")).encode("utf-8")


class _Budget:
    def __init__(self):
        self.nodes = 0
        self.elements = 0

    def node(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ValueError(f"more than {MAX_NODES} values in one message")


def _array(obj, budget: _Budget):
    if set(obj) != {"__ndarray__", "shape", "data"}:
        raise ValueError("malformed array")
    dtype, shape, data = obj["__ndarray__"], obj["shape"], obj["data"]
    if not (isinstance(dtype, str) and _DTYPE.fullmatch(dtype)):
        raise ValueError("array dtype not allowed")
    if not (isinstance(shape, list) and len(shape) <= MAX_DEPTH
            and all(type(n) is int and 0 <= n <= MAX_ELEMENTS for n in shape) and isinstance(data, str)):
        raise ValueError("malformed array")
    dt = np.dtype(dtype)
    if dt.kind not in "biufc":
        raise ValueError("array dtype not allowed")
    count = math.prod(shape)
    budget.elements += count
    if budget.elements > MAX_ELEMENTS:
        raise ValueError(f"more than {MAX_ELEMENTS} array elements in one message")
    if len(data) != 4 * math.ceil(count * dt.itemsize / 3):
        raise ValueError("array data does not match its shape")
    raw = base64.b64decode(data.encode("ascii"), validate=True)
    if len(raw) != count * dt.itemsize:
        raise ValueError("array data does not match its shape")
    return np.frombuffer(raw, dtype=dt).reshape(tuple(shape)).astype(dt.newbyteorder("="))


def _from_json(obj, depth: int, budget: _Budget, clean: bool = True):
    budget.node()
    if depth > MAX_DEPTH:
        raise ValueError("nested too deeply")
    if obj is None or isinstance(obj, (bool, int, float)):
        if type(obj) is int and abs(obj) > 1 << 64:
            raise ValueError("integer out of range")
        return obj
    if isinstance(obj, str):
        return clean_text(obj) if clean else obj
    if isinstance(obj, list):
        return [_from_json(x, depth + 1, budget, clean) for x in obj]
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            return _array(obj, budget)
        if "__error__" in obj:
            if set(obj) != {"__error__", "message"} or not all(isinstance(v, str) for v in obj.values()):
                raise ValueError("malformed error marker")
            return {"__error__": clean_text(obj["__error__"], 80), "message": clean_text(obj["message"])}
        return {(clean_text(k, 200) if clean else k): _from_json(v, depth + 1, budget, clean) for k, v in obj.items()}
    raise ValueError(f"unexpected JSON value {type(obj).__name__}")


def decode(data: bytes, max_bytes: int = 64 * 2**20, clean: bool = True):
    """JSON bytes -> plain data; never executes code; ValueError for anything not plain data or over
    a budget (bytes, values, nesting, array elements). Tuples arrive as lists. `clean` (for what
    comes from a submission) cleans every string; the sandbox reads the trusted side's frames, notebook
    cells included, exactly as sent (clean=False)."""
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError("expected bytes")
    if len(data) > max_bytes:
        raise ValueError(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    if clean and data.count(b",") + data.count(b"[") + data.count(b"{") > MAX_NODES:
        raise ValueError(f"more than {MAX_NODES} values in one message")  # refused before parsing
    try:
        obj = json.loads(bytes(data).decode("utf-8"), parse_constant=float)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise ValueError(f"not valid JSON: {type(exc).__name__}") from None
    try:
        return _from_json(obj, 0, _Budget(), clean)
    except (RecursionError, TypeError, OverflowError, base64.binascii.Error) as exc:
        raise ValueError(f"malformed message: {type(exc).__name__}") from None


# --------------------------------------------------------------------------- framing
def recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise EOFError("channel closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def send_frame(sock: socket.socket, obj, fds=()) -> None:
    data = encode(obj)
    frame = HEADER.pack(len(data)) + data
    if fds:  # the descriptors ride on the frame's header
        socket.send_fds(sock, [frame[:HEADER.size]], list(fds))
        frame = frame[HEADER.size:]
    sock.sendall(frame)


def recv_frame(sock: socket.socket, max_bytes: int, want_fds: int = 0, clean: bool = True):
    """One frame (at most `max_bytes`); with `want_fds`, also the descriptors sent with it."""
    fds = []
    if want_fds:
        head, fds, _, _ = socket.recv_fds(sock, HEADER.size, want_fds)
        if not head:
            raise EOFError("channel closed")
        head += recv_exact(sock, HEADER.size - len(head)) if len(head) < HEADER.size else b""
    else:
        head = recv_exact(sock, HEADER.size)
    (n,) = HEADER.unpack(head)
    if n > max_bytes:
        raise ValueError(f"frame of {n} bytes exceeds the limit of {max_bytes}")
    obj = decode(recv_exact(sock, n), max_bytes, clean)
    return (obj, fds) if want_fds else obj
