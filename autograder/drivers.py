"""Drivers: call the student's functions on given inputs and return plain data.

A driver ``name(ns, **inputs)`` takes the student's notebook namespace ``ns`` and the case's inputs,
calls the student's code and returns plain data (arrays, numbers, lists, dicts; see
``autograder.channel.encode``). Drivers run next to student code (in the sandbox, or in the student's
kernel for the in-kernel check), so they hold no reference solution and decide nothing: the
comparison happens on the trusted side. An exception raised by student code is returned as an
error marker ``{"__error__": type name, "message": ...}`` under ``"error"``.
"""
from __future__ import annotations

import contextlib

import numpy as np

from autograder.channel import error_marker


class _Missing(Exception):
    pass


def plain(obj):
    """Student return values -> plain data: tensors to arrays, tuples to lists, scalars kept."""
    if type(obj).__module__.startswith("torch") and hasattr(obj, "detach"):
        return obj.detach().cpu().numpy()
    if isinstance(obj, (list, tuple)):
        return [plain(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray) and type(obj) is not np.ndarray:
        return np.array(obj)  # array subclasses become plain arrays
    return obj


def _lookup(ns, name):
    if name not in ns:
        raise _Missing(f"{name} is not defined: run the cell that defines it first")
    return ns[name]


def _copy(obj):
    """A deep copy of plain data, so a later call cannot change a result already taken."""
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, list):
        return [_copy(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    return obj


def _twice(run, again: bool) -> dict:
    """``run()`` once, or (``again``) twice on the very same argument objects: a function that changes
    its arguments in place shows it in the second result, which the trusted side compares with the
    reference like the first. Nothing here reports on the function; the values speak."""
    first = _copy(run())
    if not again:
        return {"result": first, "error": None}
    return {"result": first, "again": _copy(run()), "error": None}


_limited = False


@contextlib.contextmanager
def _one_thread():
    """numpy's BLAS limited to one thread: these problems are small, and many threads on a busy or
    sandboxed machine make them many times slower. Re-entrant: nested drivers limit once."""
    global _limited
    if _limited:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(1)
    _limited = True
    try:
        with limits:
            yield
    finally:
        _limited = False


def _guard(run):
    """Run ``run()`` (BLAS on one thread) and turn a student exception into the ``error`` field."""
    try:
        with _one_thread():
            return run()
    except _Missing as exc:
        return {"result": None, "error": {"__error__": "NameError", "message": str(exc)}}
    except Exception as exc:  # student code raised: report it as data
        return {"result": None, "error": error_marker(exc)}


def call(ns, fn, args=(), kwargs=None, again=False):
    """``ns[fn](*args, **kwargs)`` -> ``{"result", "error"}`` (and ``"again"``: see :func:`_twice`)."""
    def run():
        f = _lookup(ns, fn)
        return _twice(lambda: plain(f(*args, **(kwargs or {}))), again)
    return _guard(run)


def call_many(ns, fn, calls):
    """``calls = [[args, kwargs], ...]`` -> ``{"result": [results], "error": first error or None}``."""
    with _one_thread():
        results = []
        for args, kwargs in calls:
            out = call(ns, fn, args, kwargs)
            if out["error"] is not None:
                return {"result": None, "error": out["error"]}
            results.append(out["result"])
        return {"result": results, "error": None}


def call_each(ns, fn, calls):
    """``calls = [[args, kwargs], ...]`` -> ``{"results": [{"result", "error"}, ...]}``."""
    with _one_thread():
        return {"results": [call(ns, fn, a, kw) for a, kw in calls]}


def optimizer_trajectory(ns, fn, theta0, A, b, steps, kwargs=None, lrs=None, again=False):
    """``steps`` updates of ``ns[fn]`` on f(θ) = ½ θᵀAθ − bᵀθ (θ flattened), from ``theta0``.

    ``lrs``, if given, is the learning rate of each step, passed as ``lr=`` (a schedule).

    Returns ``{"result": (steps, *theta0.shape) array of the iterates, "error"}``; the gradient is
    computed in θ's dtype. With ``again``, every step is also taken a second time with the same θ and
    g objects (and a copy of the same state): ``"again"`` holds those iterates, which differ from the
    first ones when the function changes θ or g in place. State is the function's own: each call
    gets a copy, so reusing its buffers is fine.
    """
    def run():
        f = _lookup(ns, fn)
        theta, state, thetas, seconds = np.array(theta0), {}, [], []
        A_ = np.asarray(A, dtype=theta.dtype)
        b_ = np.asarray(b, dtype=theta.dtype)

        def step(theta, g, state, t):
            hyper = dict(kwargs or {}, **({} if lrs is None else {"lr": lrs[t]}))
            out = f(theta, g, _copy(state) if again else state, **hyper)
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError(f"{fn} must return a tuple (theta, state)")
            if not isinstance(out[1], dict):
                raise TypeError(f"{fn} must return its state as a dict, got {type(out[1]).__name__}")
            new = np.array(plain(out[0]), copy=True)
            if new.shape != theta.shape:
                raise ValueError(f"{fn} returned theta of shape {new.shape}, expected {theta.shape}")
            return new, out[1]

        for t in range(steps):
            g = (A_ @ theta.reshape(-1) - b_).reshape(theta.shape).astype(theta.dtype)
            arg = theta.copy()
            new, next_state = step(arg, g, state, t)
            if again:
                seconds.append(step(arg, g, state, t)[0])
            theta, state = new, next_state
            thetas.append(theta)
        out = {"result": np.stack(thetas), "error": None}
        if again:
            out["again"] = np.stack(seconds)
        return out
    return _guard(run)


def minibatches(ns, fn, n, batch_size, shuffle, drop_last, seeds):
    """One ``ns[fn](n, batch_size, rng, shuffle, drop_last)`` per seed -> ``{"runs": [...]}``."""
    def run():
        f = _lookup(ns, fn)
        runs = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            out = f(n, batch_size, rng, shuffle=shuffle, drop_last=drop_last)
            runs.append([np.asarray(plain(b)) for b in out])
        return {"runs": runs, "error": None}
    out = _guard(run)
    out.setdefault("runs", [])
    return out


def layer(ns, cls, args, x, grad_out, attrs=(), again=False):
    """``ns[cls](*args)``: forward(x), backward(grad_out) and the attributes ``attrs`` afterwards.

    ``result`` = ``{"out", "grad_in", attr: ...}``; with ``again`` a second layer is built from the
    same ``args`` and run on the same ``x`` and ``grad_out`` (see :func:`_twice`).
    """
    def once():
        obj = _lookup(ns, cls)(*args)
        result = {"out": plain(obj.forward(x)), "grad_in": plain(obj.backward(grad_out))}
        for name in attrs:
            result[name] = plain(getattr(obj, name, None))
        return result
    return _guard(lambda: _twice(once, again))


def _param_order(params, wanted):
    """Index into ``params`` of each array in ``wanted`` (matched by shape and value)."""
    order = []
    for w in wanted:
        match = [i for i, p in enumerate(params)
                 if isinstance(p, np.ndarray) and p.shape == w.shape and np.array_equal(p, w) and i not in order]
        order.append(match[0] if match else None)
    return order


def mlp(ns, layers, x, grad_out):
    """Build ``MLP([ns[name](*args) for name, args in layers])``, run forward and backward.

    ``result`` = ``{"out", "grad_in", "grads"}`` with ``grads`` in the order of the array arguments
    of ``layers`` (matched through ``params()``), None where ``params()`` lacks one.
    """
    def run():
        model = _lookup(ns, "MLP")([_lookup(ns, name)(*args) for name, args in layers])
        out = plain(model.forward(x))
        grad_in = plain(model.backward(grad_out))
        params = [np.asarray(plain(p)) for p in model.params()]
        grads = [plain(g) for g in model.grads()]
        if len(params) != len(grads):
            raise ValueError(f"params() has {len(params)} entries but grads() has {len(grads)}")
        wanted = [a for _, args in layers for a in args if isinstance(a, np.ndarray)]
        order = _param_order(params, wanted)
        result = {"out": out, "grad_in": grad_in,
                  "grads": [grads[i] if i is not None else None for i in order]}
        return {"result": result, "error": None}
    return _guard(run)


# Scalar test functions for numerical_gradient (fixed here so that only names cross the boundary).
FUNCTIONS = {
    "weighted_sin": lambda x: float(np.sum(np.sin(x) * np.arange(1, x.size + 1).reshape(x.shape))),
    "quartic": lambda x: float(np.sum(x ** 4) - 3.0 * np.sum(x) ** 2),
    "logsumexp": lambda x: float(np.log(np.sum(np.exp(x - x.max()))) + x.max()),
}


def numerical_gradient(ns, fn, func, x, h=1e-5, again=False):
    """``ns[fn](FUNCTIONS[func], x, h)`` -> ``{"result": gradient, "error"}`` (and ``"again"``)."""
    return call(ns, fn, (FUNCTIONS[func], x), {"h": h}, again)


def trained_layers(ns, fn, args=(), kwargs=None):
    """Call a training function returning a model with ``.layers``; return its layers as data.

    ``result`` = ``[{"kind": class name, "W": ..., "b": ...}, ...]`` (W and b only for layers that
    have them); the trusted side evaluates the model.
    """
    def run():
        model = _lookup(ns, fn)(*args, **(kwargs or {}))
        layers = []
        for lay in getattr(model, "layers", None) or []:
            entry = {"kind": type(lay).__name__}
            for name in ("W", "b"):
                if hasattr(lay, name):
                    entry[name] = np.asarray(plain(getattr(lay, name)))
            layers.append(entry)
        if not layers:
            raise TypeError(f"{fn} must return an MLP whose .layers lists its layers")
        return {"result": layers, "error": None}
    return _guard(run)
