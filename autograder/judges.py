"""Judges: plain callables ``(inputs, outputs, expected) -> None | message``, run on the trusted side.

The ones built from the classes here (:class:`Close`, :class:`Raises`, :class:`Batches`,
:class:`Accuracy`) can also be written out as data (``as_data``), which is how visible cases reach
students without any reference code; :func:`judge_from_data` rebuilds them.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from autograder.channel import is_error

# While a hidden case is judged, messages name what is wrong but echo no value: neither the hidden
# inputs or expected outputs, nor anything the submission chose to return (which it can make of
# what it was given: a shape, keys, a repr, an error between its output and the expected one).
_HIDDEN: ContextVar[bool] = ContextVar("judging_a_hidden_case", default=False)


@contextmanager
def hidden_case(hidden: bool = True):
    token = _HIDDEN.set(hidden)
    try:
        yield
    finally:
        _HIDDEN.reset(token)


def _say(shown: str, hidden: str) -> str:
    """`shown` for a visible case, `hidden` (no values) for a hidden one."""
    return hidden if _HIDDEN.get() else shown

def _arrays_close(out, exp, rtol, atol) -> tuple[bool, str]:
    """Recursive comparison: same structure, same shapes, values within atol + rtol*|expected|."""
    if isinstance(exp, dict):
        if not isinstance(out, dict):
            return False, f"expected a dict, got {type(out).__name__}"
        if set(out) != set(exp):
            return False, _say(f"expected keys {sorted(exp)}, got {_short(sorted(out))}",
                               "returned a dict with other keys than expected")
        for k in exp:
            ok, why = _arrays_close(out[k], exp[k], rtol, atol)
            if not ok:
                return False, f"[{k!r}]: {why}"
        return True, ""
    if isinstance(exp, (list, tuple)):
        if not isinstance(out, (list, tuple)):
            return False, f"expected a sequence of {len(exp)}, got {type(out).__name__}"
        if len(out) != len(exp):
            return False, _say(f"expected {len(exp)} items, got {len(out)}", "returned the wrong number of items")
        for i, (o, e) in enumerate(zip(out, exp)):
            ok, why = _arrays_close(o, e, rtol, atol)
            if not ok:
                return False, f"[{i}]: {why}"
        return True, ""
    if exp is None or isinstance(exp, str):
        same = out is None if exp is None else (isinstance(out, str) and out == exp)
        return same, _say(f"expected {exp!r}, got {type(out).__name__}", "returned the wrong value")
    if is_error(out):
        return False, f"got an error {out['__error__']}"
    if isinstance(out, (str, dict, list)) or out is None:
        return False, f"expected a number or array, got {type(out).__name__}"
    e = np.asarray(exp)
    o = np.asarray(out)
    if o.dtype.kind not in "biufc":
        return False, _say(f"expected numbers, got {o.dtype}", "expected numbers")
    if o.shape != e.shape:
        return False, _say(f"expected shape {e.shape}, got {o.shape}", "returned an array of the wrong shape")
    e = e.astype(np.complex128 if e.dtype.kind == "c" else np.float64)
    o = o.astype(np.complex128 if o.dtype.kind == "c" else np.float64)
    if not np.isfinite(o[np.isfinite(e)]).all():
        return False, "not finite (nan or inf) where the expected values are finite"
    bad_nonfinite = ~np.isfinite(e) & ~((o == e) | (np.isnan(o) & np.isnan(e)))
    if bad_nonfinite.any():
        return False, "expected inf/nan values do not match"
    fin = np.isfinite(e)
    err = np.abs(o[fin] - e[fin]) / (atol + rtol * np.abs(e[fin])) if fin.any() else np.zeros(1)
    if err.size and err.max() > 1:
        rel = np.abs(o[fin] - e[fin]) / np.maximum(np.abs(e[fin]), atol)
        return False, _say(f"values differ: max relative error {rel.max():.2e} (tolerance rtol={rtol:g}, atol={atol:g})",
                           f"values differ beyond the tolerance (rtol={rtol:g}, atol={atol:g})")
    return True, ""


def _dtype_problem(out, exp) -> str | None:
    """An output array whose float dtype differs from the expected array's."""
    if isinstance(exp, dict) and isinstance(out, dict):
        for k in exp:
            if k in out:
                p = _dtype_problem(out[k], exp[k])
                if p:
                    return p
        return None
    if isinstance(exp, (list, tuple)) and isinstance(out, (list, tuple)):
        for o, e in zip(out, exp):
            p = _dtype_problem(o, e)
            if p:
                return p
        return None
    if isinstance(exp, np.ndarray) and exp.dtype.kind == "f" and isinstance(out, np.ndarray):
        if out.dtype != exp.dtype:
            return f"returned dtype {out.dtype}, expected {exp.dtype} (results keep the input's float dtype)"
    return None


def _error_text(err: dict) -> str:
    if err["__error__"] == "NotImplementedError":
        return "raised NotImplementedError: write your code in place of `raise NotImplementedError()`"
    if _HIDDEN.get():  # which exception a function raises is its choice too: a channel of its own
        return "raised an exception (its type and message are not shown for a hidden case)"
    return f"raised {err['__error__']}: {err['message']}" if err["message"] else f"raised {err['__error__']}"


@dataclass(frozen=True)
class Close:
    """Driver output ``{"result", "error"[, "again"]}`` matches the reference within tolerance.

    ``mistakes(inputs) -> {message: wrong result}`` runs on the trusted side: known wrong variants;
    a result close to one of them is reported with its message. ``rtol``/``atol`` are per-element:
    |out - exp| <= atol + rtol*|exp|.
    """

    rtol: float = 1e-6
    atol: float = 1e-9
    dtype: bool = True  # result arrays keep the reference's float dtype
    immutable: bool = False  # also compare a second call on the same arrays ("again") with the reference
    mistakes: Callable[[dict], dict] | None = field(default=None, compare=False)
    name: str = "close"

    def __call__(self, inputs, outputs, expected, mistakes=None):
        if not isinstance(outputs, dict) or "result" not in outputs:
            return "the grader received no result"
        if outputs.get("error") is not None:
            return _error_text(outputs["error"])
        result, exp = outputs["result"], expected["result"]
        ok, why = _arrays_close(result, exp, self.rtol, self.atol)
        if ok and self.immutable and not _arrays_close(outputs.get("again"), exp, self.rtol, self.atol)[0]:
            return ("modified its array arguments in place: called again with the same arrays it "
                    "returned different values (leave the inputs unchanged)")
        if ok:
            return _dtype_problem(result, exp) if self.dtype else None
        if mistakes is None:
            mistakes = self.mistakes(inputs) if self.mistakes else {}
        for message, wrong in mistakes.items():
            if _arrays_close(result, wrong, self.rtol, self.atol)[0]:
                return _say(f"Likely mistake: {message} ({why})", f"Likely mistake: {message}")  # most useful first
        return why

    def as_data(self, inputs) -> dict:
        mistakes = self.mistakes(inputs) if self.mistakes else {}
        return {"name": self.name, "rtol": self.rtol, "atol": self.atol, "dtype": self.dtype,
                "immutable": self.immutable, "mistakes": [[m, w] for m, w in mistakes.items()]}

    @classmethod
    def from_data(cls, data):
        judge = cls(rtol=data["rtol"], atol=data["atol"], dtype=data["dtype"], immutable=data["immutable"])
        mistakes = {m: w for m, w in data["mistakes"]}
        return lambda inputs, outputs, expected: judge(inputs, outputs, expected, mistakes)


@dataclass(frozen=True)
class Raises:
    """Driver output of ``call_each``: every call raised the expected exception type."""

    exception: str = "ValueError"
    name: str = "raises"

    def __call__(self, inputs, outputs, expected):
        for (args, kwargs), out in zip(inputs["calls"], outputs["results"]):
            err = out.get("error")
            shown = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
            if err is None:
                return _say(f"({shown}) returned {out.get('result')!r} instead of raising {self.exception}",
                            f"a call with invalid arguments returned instead of raising {self.exception}")
            if err["__error__"] != self.exception:
                return _say(f"({shown}) raised {err['__error__']} instead of {self.exception}: {err['message']}",
                            f"a call with invalid arguments raised another exception than {self.exception}")
        if len(outputs["results"]) != len(inputs["calls"]):
            return "the grader received too few results"
        return None

    def as_data(self, inputs) -> dict:
        return {"name": self.name, "exception": self.exception}

    @classmethod
    def from_data(cls, data):
        return cls(exception=data["exception"])


@dataclass(frozen=True)
class Batches:
    """Driver output of ``minibatches``: a partition of range(n) into batches of the right sizes."""

    name: str = "batches"

    def __call__(self, inputs, outputs, expected):
        if outputs.get("error") is not None:
            return _error_text(outputs["error"])
        n, bs, shuffle, drop_last = (inputs[k] for k in ("n", "batch_size", "shuffle", "drop_last"))
        runs = outputs.get("runs")
        if not isinstance(runs, list) or len(runs) != len(inputs["seeds"]):
            return f"expected {len(inputs['seeds'])} runs of batches, got {type(runs).__name__}"
        for batches in runs:
            if not isinstance(batches, list) or not all(isinstance(b, np.ndarray) and b.ndim == 1
                                                        and b.dtype.kind in "iu" for b in batches):
                return "expected a list of 1-D integer arrays"
            sizes = [len(b) for b in batches]
            full, rest = divmod(n, bs)
            want = [bs] * full + ([] if drop_last or rest == 0 else [rest])
            if sizes != want:
                return _say(f"n={n}, batch_size={bs}, drop_last={drop_last}: expected batch sizes "
                            f"{_short(want)}, got {_short(sizes)}",
                            f"drop_last={drop_last}: the batch sizes are not the expected ones")
            flat = np.concatenate(batches) if batches else np.zeros(0, int)
            if drop_last:
                if len(np.unique(flat)) != len(flat) or (len(flat) and (flat.min() < 0 or flat.max() >= n)):
                    return "with drop_last the batches must hold distinct indices from range(n)"
            elif not np.array_equal(np.sort(flat), np.arange(n)):
                return "the batches do not cover range(n) exactly once"
            if not shuffle and not np.array_equal(flat, np.arange(len(flat))):
                return "with shuffle=False the batches must be in order 0, 1, 2, ..."
        if shuffle:
            first, again, other = (np.concatenate(r) if r else np.zeros(0, int) for r in runs[:3])
            if n >= 10 and np.array_equal(first, np.arange(len(first))):
                return "shuffle=True but the indices come out in order"
            if not np.array_equal(first, again):
                return "two generators with the same seed gave different batches: draw from rng only"
            if n >= 10 and np.array_equal(first, other):
                return "generators with different seeds gave the same batches: use the rng argument"
        return None

    def as_data(self, inputs) -> dict:
        return {"name": self.name}

    @classmethod
    def from_data(cls, data):
        return cls()


MAX_LAYERS, MAX_WIDTH = 64, 4096  # bound what evaluating a returned model costs the trusted side


def _forward(model: str, result, X):
    """Logits of a returned model: "linear" = [W, b]; "mlp" = [{"kind", "W", "b"}, ...] (drivers.trained_layers)."""
    if model == "linear":
        if not (isinstance(result, list) and len(result) == 2):
            raise ValueError("expected (W, b)")
        W, b = (np.asarray(a, dtype=np.float64) for a in result)
        if W.ndim != 2 or W.shape[:1] != X.shape[1:] or b.shape != W.shape[1:] or W.shape[1] > MAX_WIDTH:
            raise ValueError(f"W of shape {W.shape} and b of shape {b.shape} do not fit {X.shape[1]} features")
        return X @ W + b
    h = X.astype(np.float64)
    if not isinstance(result, list) or len(result) > MAX_LAYERS:
        raise ValueError(f"expected a list of at most {MAX_LAYERS} layers")
    for lay in result:
        kind = lay.get("kind") if isinstance(lay, dict) else None
        if kind == "Linear":
            W, b = (np.asarray(lay[k], dtype=np.float64) for k in ("W", "b"))
            if W.ndim != 2 or W.shape[0] != h.shape[1] or W.shape[1] > MAX_WIDTH \
                    or b.shape not in ((W.shape[1],), (1, W.shape[1])):
                raise ValueError(f"a Linear layer's W {W.shape} / b {b.shape} do not fit its input")
            h = h @ W + b.reshape(-1)
        elif kind == "ReLU":
            h = np.maximum(h, 0)
        elif kind == "Sigmoid":
            h = 1 / (1 + np.exp(-h))
        else:
            raise ValueError(f"unknown layer {kind!r} (expected Linear, ReLU or Sigmoid)")
    return h


@dataclass(frozen=True)
class Accuracy:
    """A trained model (driver ``call`` or ``trained_layers``) classifies held-out data well enough.

    ``test_data(inputs) -> (X, y)`` runs on the trusted side; the model is evaluated there.
    """

    threshold: float
    model: str = "linear"  # "linear": result (W, b); "mlp": layers from drivers.trained_layers
    test_data: Callable[[dict], tuple] | None = field(default=None, compare=False)
    name: str = "accuracy"

    def __call__(self, inputs, outputs, expected, data=None):
        if outputs.get("error") is not None:
            return _error_text(outputs["error"])
        if data is None and isinstance(expected, dict) and "hidden" in expected:
            data = expected["hidden"]
        X, y = data if data is not None else self.test_data(inputs)
        try:
            with np.errstate(all="ignore"):
                logits = _forward(self.model, outputs["result"], np.asarray(X, dtype=np.float64))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return _say(f"could not evaluate the returned model: {exc}",
                        f"could not evaluate the returned model ({type(exc).__name__})")
        if logits.shape != (len(y), logits.shape[-1]) or not np.isfinite(logits).all():
            return "the model's outputs on the test data are not finite"
        accuracy = float((logits.argmax(axis=1) == np.asarray(y)).mean())
        if accuracy < self.threshold:
            return f"test accuracy {accuracy:.3f} is below the required {self.threshold:.2f}"
        return None

    def as_data(self, inputs) -> dict:
        X, y = self.test_data(inputs)
        return {"name": self.name, "threshold": self.threshold, "model": self.model, "X": X, "y": y}

    @classmethod
    def from_data(cls, data):
        judge = cls(threshold=data["threshold"], model=data["model"])
        return lambda inputs, outputs, expected: judge(inputs, outputs, expected, (data["X"], data["y"]))


def _short(sizes):
    return sizes if len(sizes) <= 6 else f"{sizes[:3]} ... {sizes[-2:]} ({len(sizes)} batches)"


JUDGES = {"close": Close, "raises": Raises, "batches": Batches, "accuracy": Accuracy}


def judge_from_data(data: dict):
    """A visible case's judge rebuilt from ``as_data`` output (no reference code involved)."""
    return JUDGES[data["name"]].from_data(data)
