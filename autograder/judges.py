"""Judges: plain callables ``(inputs, outputs, expected) -> None | message``, run on the trusted side.

The ones built from the classes here (:class:`Close`, :class:`Raises`, :class:`Batches`,
:class:`Accuracy`) can also be written out as data (``as_data``), which is how visible cases reach
students without any reference code; :func:`judge_from_data` rebuilds them.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from autograder.channel import is_error
from autograder.messages import HIDDEN, Msg

# While a hidden case is judged, messages name what is wrong but echo no value: neither the hidden
# inputs or expected outputs, nor anything the submission chose to return (which it can make of
# what it was given: a shape, keys, a repr, an error between its output and the expected one).
_HIDDEN = HIDDEN        # one flag: messages.Msg drops every field it does not know to be safe


@contextmanager
def hidden_case(hidden: bool = True):
    token = _HIDDEN.set(hidden)
    try:
        yield
    finally:
        _HIDDEN.reset(token)


def _say(shown: Msg, hidden: Msg) -> Msg:
    """`shown` for a visible case, `hidden` (no values) for a hidden one. Every message is a
    :class:`~autograder.messages.Msg` (a template with named fields, in the feedback's language):
    the hidden one's fields hold nothing a hidden case gave or the submission returned."""
    return hidden if _HIDDEN.get() else shown

def _at(key, why: Msg) -> Msg:
    """Where in a nested result `why` happened; for a hidden case only `why` (the position of the
    first wrong item is the submission's choice)."""
    return why if _HIDDEN.get() else Msg("[{key}]: {why}", key=key, why=why)


def _arrays_close(out, exp, rtol, atol) -> tuple[bool, str]:
    """Recursive comparison: same structure, same shapes, values within atol + rtol*|expected|."""
    if isinstance(exp, dict):
        if not isinstance(out, dict):
            return False, Msg("expected a dict, got {type}", type=type(out).__name__)
        if set(out) != set(exp):
            return False, _say(Msg("expected keys {expected}, got {got}", expected=sorted(exp), got=_short(sorted(out))),
                               Msg("returned a dict with other keys than expected"))
        for k in exp:
            ok, why = _arrays_close(out[k], exp[k], rtol, atol)
            if not ok:
                return False, _at(repr(k), why)
        return True, ""
    if isinstance(exp, (list, tuple)):
        if not isinstance(out, (list, tuple)):
            return False, Msg("expected a sequence of {count}, got {type}", count=len(exp), type=type(out).__name__)
        if len(out) != len(exp):
            return False, _say(Msg("expected {count} items, got {got}", count=len(exp), got=len(out)),
                               Msg("returned the wrong number of items"))
        for i, (o, e) in enumerate(zip(out, exp)):
            ok, why = _arrays_close(o, e, rtol, atol)
            if not ok:
                return False, _at(i, why)
        return True, ""
    if exp is None or isinstance(exp, str):
        same = out is None if exp is None else (isinstance(out, str) and out == exp)
        return same, _say(Msg("expected {expected}, got {type}", expected=repr(exp), type=type(out).__name__),
                          Msg("returned the wrong value"))
    if is_error(out):
        return False, Msg("got an error {error}", error=out["__error__"])
    if isinstance(out, (str, dict, list)) or out is None:
        return False, Msg("expected a number or array, got {type}", type=type(out).__name__)
    e = np.asarray(exp)
    o = np.asarray(out)
    if o.dtype.kind not in "biufc":
        return False, _say(Msg("expected numbers, got {dtype}", dtype=o.dtype), Msg("expected numbers"))
    if o.shape != e.shape:
        return False, _say(Msg("expected shape {expected}, got {got}", expected=e.shape, got=o.shape),
                           Msg("returned an array of the wrong shape"))
    e = e.astype(np.complex128 if e.dtype.kind == "c" else np.float64)
    o = o.astype(np.complex128 if o.dtype.kind == "c" else np.float64)
    if not np.isfinite(o[np.isfinite(e)]).all():
        return False, Msg("not finite (nan or inf) where the expected values are finite")
    bad_nonfinite = ~np.isfinite(e) & ~((o == e) | (np.isnan(o) & np.isnan(e)))
    if bad_nonfinite.any():
        return False, Msg("expected inf/nan values do not match")
    fin = np.isfinite(e)
    err = np.abs(o[fin] - e[fin]) / (atol + rtol * np.abs(e[fin])) if fin.any() else np.zeros(1)
    if err.size and err.max() > 1:
        rel = np.abs(o[fin] - e[fin]) / np.maximum(np.abs(e[fin]), atol)
        return False, _say(Msg("values differ: max relative error {error} (tolerance rtol={rtol}, atol={atol})",
                               error=f"{rel.max():.2e}", rtol=f"{rtol:g}", atol=f"{atol:g}"),
                           Msg("values differ beyond the tolerance (rtol={rtol}, atol={atol})",
                               rtol=f"{rtol:g}", atol=f"{atol:g}"))
    return True, ""


def _dtype_problem(out, exp) -> Msg | None:
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
            return Msg("returned dtype {got}, expected {expected} (results keep the input's float dtype)",
                       got=out.dtype, expected=exp.dtype)
    return None


def _error_text(err: dict) -> Msg:
    if err["__error__"] == "NotImplementedError":
        return Msg("raised NotImplementedError: write your code in place of `raise NotImplementedError()`")
    if _HIDDEN.get():  # which exception a function raises is its choice too: a channel of its own
        return Msg("raised an exception (its type and message are not shown for a hidden case)")
    return Msg("raised {error}: {message}", error=err["__error__"], message=err["message"]) if err["message"] \
        else Msg("raised {error}", error=err["__error__"])


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
            return Msg("the grader received no result")
        if outputs.get("error") is not None:
            return _error_text(outputs["error"])
        result, exp = outputs["result"], expected["result"]
        ok, why = _arrays_close(result, exp, self.rtol, self.atol)
        if ok and self.immutable and not _arrays_close(outputs.get("again"), exp, self.rtol, self.atol)[0]:
            return Msg("modified its array arguments in place: called again with the same arrays it "
                       "returned different values (leave the inputs unchanged)")
        if ok:
            return _dtype_problem(result, exp) if self.dtype else None
        if mistakes is None:
            mistakes = self.mistakes(inputs) if self.mistakes else {}
        for message, wrong in mistakes.items():
            if _arrays_close(result, wrong, self.rtol, self.atol)[0]:
                mistake = Msg(message)  # the assignment's own sentence: translated by its catalog
                return _say(Msg("Likely mistake: {mistake} ({why})", mistake=mistake, why=why),
                            Msg("Likely mistake: {mistake}", mistake=mistake))  # most useful first
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
                return _say(Msg("({call}) returned {result} instead of raising {exception}", call=shown,
                                result=repr(out.get("result")), exception=self.exception),
                            Msg("a call with invalid arguments returned instead of raising {exception}",
                                exception=self.exception))
            if err["__error__"] != self.exception:
                return _say(Msg("({call}) raised {error} instead of {exception}: {message}", call=shown,
                                error=err["__error__"], exception=self.exception, message=err["message"]),
                            Msg("a call with invalid arguments raised another exception than {exception}",
                                exception=self.exception))
        if len(outputs["results"]) != len(inputs["calls"]):
            return Msg("the grader received too few results")
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
            return Msg("expected {count} runs of batches, got {type}", count=len(inputs["seeds"]),
                       type=type(runs).__name__)
        for batches in runs:
            if not isinstance(batches, list) or not all(isinstance(b, np.ndarray) and b.ndim == 1
                                                        and b.dtype.kind in "iu" for b in batches):
                return Msg("expected a list of 1-D integer arrays")
            sizes = [len(b) for b in batches]
            full, rest = divmod(n, bs)
            want = [bs] * full + ([] if drop_last or rest == 0 else [rest])
            if sizes != want:
                return _say(Msg("n={n}, batch_size={batch_size}, drop_last={drop_last}: expected batch sizes "
                                "{expected}, got {got}", n=n, batch_size=bs, drop_last=drop_last,
                                expected=_short(want), got=_short(sizes)),
                            Msg("drop_last={drop_last}: the batch sizes are not the expected ones",
                                drop_last=drop_last))
            flat = np.concatenate(batches) if batches else np.zeros(0, int)
            if drop_last:
                if len(np.unique(flat)) != len(flat) or (len(flat) and (flat.min() < 0 or flat.max() >= n)):
                    return Msg("with drop_last the batches must hold distinct indices from range(n)")
            elif not np.array_equal(np.sort(flat), np.arange(n)):
                return Msg("the batches do not cover range(n) exactly once")
            if not shuffle and not np.array_equal(flat, np.arange(len(flat))):
                return Msg("with shuffle=False the batches must be in order 0, 1, 2, ...")
        if shuffle:
            first, again, other = (np.concatenate(r) if r else np.zeros(0, int) for r in runs[:3])
            if n >= 10 and np.array_equal(first, np.arange(len(first))):
                return Msg("shuffle=True but the indices come out in order")
            if not np.array_equal(first, again):
                return Msg("two generators with the same seed gave different batches: draw from rng only")
            if n >= 10 and np.array_equal(first, other):
                return Msg("generators with different seeds gave the same batches: use the rng argument")
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
            raise ValueError(Msg("expected (W, b)"))
        W, b = (np.asarray(a, dtype=np.float64) for a in result)
        if W.ndim != 2 or W.shape[:1] != X.shape[1:] or b.shape != W.shape[1:] or W.shape[1] > MAX_WIDTH:
            raise ValueError(Msg("W of shape {w} and b of shape {b} do not fit {features} features",
                                 w=W.shape, b=b.shape, features=X.shape[1]))
        return X @ W + b
    h = X.astype(np.float64)
    if not isinstance(result, list) or len(result) > MAX_LAYERS:
        raise ValueError(Msg("expected a list of at most {limit} layers", limit=MAX_LAYERS))
    for lay in result:
        kind = lay.get("kind") if isinstance(lay, dict) else None
        if kind == "Linear":
            W, b = (np.asarray(lay[k], dtype=np.float64) for k in ("W", "b"))
            if W.ndim != 2 or W.shape[0] != h.shape[1] or W.shape[1] > MAX_WIDTH \
                    or b.shape not in ((W.shape[1],), (1, W.shape[1])):
                raise ValueError(Msg("a Linear layer's W {w} / b {b} do not fit its input", w=W.shape, b=b.shape))
            h = h @ W + b.reshape(-1)
        elif kind == "ReLU":
            h = np.maximum(h, 0)
        elif kind == "Sigmoid":
            h = 1 / (1 + np.exp(-h))
        else:
            raise ValueError(Msg("unknown layer {kind} (expected Linear, ReLU or Sigmoid)", kind=repr(kind)))
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
            why = exc.args[0] if exc.args and isinstance(exc.args[0], Msg) else str(exc)
            return _say(Msg("could not evaluate the returned model: {error}", error=why),
                        Msg("could not evaluate the returned model"))  # which exception: the model's choice
        if logits.shape != (len(y), logits.shape[-1]) or not np.isfinite(logits).all():
            return Msg("the model's outputs on the test data are not finite")
        accuracy = float((logits.argmax(axis=1) == np.asarray(y)).mean())
        if accuracy < self.threshold:
            # the accuracy is the returned model's to choose: for a hidden case, only that it fell short
            return _say(Msg("test accuracy {accuracy} is below the required {threshold}", accuracy=f"{accuracy:.3f}",
                            threshold=f"{self.threshold:.2f}"),
                        Msg("test accuracy is below the required {threshold}", threshold=f"{self.threshold:.2f}"))
        return None

    def as_data(self, inputs) -> dict:
        X, y = self.test_data(inputs)
        return {"name": self.name, "threshold": self.threshold, "model": self.model, "X": X, "y": y}

    @classmethod
    def from_data(cls, data):
        judge = cls(threshold=data["threshold"], model=data["model"])
        return lambda inputs, outputs, expected: judge(inputs, outputs, expected, (data["X"], data["y"]))


def _short(sizes):
    return sizes if len(sizes) <= 6 else Msg("{first} ... {last} ({count} batches)", first=sizes[:3],
                                             last=sizes[-2:], count=len(sizes))


JUDGES = {"close": Close, "raises": Raises, "batches": Batches, "accuracy": Accuracy}


def judge_from_data(data: dict):
    """A visible case's judge rebuilt from ``as_data`` output (no reference code involved)."""
    return JUDGES[data["name"]].from_data(data)
