"""Test cases of the `classification` assignment (instructor-only; never released).

Tolerances, per element |out − ref| <= atol + rtol·|ref|: float64 rtol 1e-6; float32 rtol 1e-4 with
atol 1e-6 (probabilities, gradients and losses are O(1)), which accepts float32, torch, loops or
vectorized code. Softmax regression on the digits: the reference reaches 0.955–0.964 test accuracy over
seeds 0–9 with the settings below (0.04 s per fit); the threshold 0.90 leaves room for other
initialisations and batch orders while failing a model that did not learn.
"""
from functools import lru_cache

import numpy as np

from autograder.case import Accuracy, Case, Close, Raises, reference_outputs, sibling

ref = sibling(__file__, "reference")
# Distributions (with their dependencies) a submission's sandbox holds; any other module is absent.
PACKAGES = ["numpy", "torch", "matplotlib", "scikit-learn", "mnist1d", "platformdirs"]
FORBIDDEN_IMPORTS: list[str] = []

F64 = dict(rtol=1e-6, atol=1e-9)
F32 = dict(rtol=1e-4, atol=1e-6)
DIGITS_THRESHOLD = 0.90


def case(fn, inputs, judge, visible=False, driver="call", requires=()):
    return Case(driver=driver, inputs=inputs, judge=judge, visible=visible, requires=requires,
                expected=lambda inp: reference_outputs(driver, fn, getattr(ref, fn), inp))


def variants(fn, wrong, driver="call"):
    return lambda inp: {msg: reference_outputs(driver, fn, impl, inp)["result"] for msg, impl in wrong.items()}


def logits(shape, dtype=np.float64, scale=3.0, fixed=None):
    """Inputs ``{"fn", "args": [logits]}``; ``fixed`` gives the array instead of a random one."""
    def draw(rng):
        x = np.array(fixed, dtype=dtype) if fixed is not None else (rng.normal(size=shape) * scale).astype(dtype)
        return x
    return draw


def with_labels(fn, draw_logits):
    def inputs(rng):
        x = draw_logits(rng)
        return {"fn": fn, "args": [x, rng.integers(0, x.shape[-1], x.shape[0])]}
    return inputs


def only_logits(fn, draw_logits):
    return lambda rng: {"fn": fn, "args": [draw_logits(rng)]}


EXTREME = [[1e4, -1e4, 0.0, 5.0], [-1e4, -1e4 + 1.0, -1e4 + 2.0, -1e4], [3.0, 1e4, 1e4 - 0.5, -2.0]]
VISIBLE = [[1.0, 2.0, 3.0], [0.5, 0.5, -1.0]]


# ----------------------------------------------------------------------------- wrong variants
def softmax_axis0(x):
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def softmax_naive(x):
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def softmax_global_max(x):
    e = np.exp(x - x.max())
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax_naive(x):
    return np.log(ref.softmax(x))


def log_softmax_unstable(x):
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def targets(x, y, weight, eps, spread="all", weighted_smoothing=True):
    """Q with L = Σ_n Σ_c Q[n, c]·(−log p[n, c]) / D: the weight of each log-probability in the loss,
    for the right rule (spread over all C classes, weighted) and the wrong ones."""
    n, c = x.shape
    w = np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)
    onehot = np.eye(c)[y]
    s = np.broadcast_to(w if weighted_smoothing else np.ones(c), (n, c))
    s = s * (1 - onehot) / (c - 1) if spread == "others" else s / c
    return (1 - eps) * w[y][:, None] * onehot + eps * s


def ce_variant(denominator="weights", **rule):
    """(loss, grad) of the weighted, smoothed cross-entropy with one rule changed."""
    def both(x, y, weight=None, label_smoothing=0.0):
        q = targets(x, y, weight, label_smoothing, **rule)
        w = np.ones(x.shape[1]) if weight is None else np.asarray(weight, dtype=np.float64)
        d = {"weights": w[y].sum(), "n": len(y), "one": 1.0}[denominator]
        loss = float((-q * ref.log_softmax(x.astype(np.float64))).sum() / d)
        grad = (q.sum(axis=1, keepdims=True) * ref.softmax(x.astype(np.float64)) - q) / d
        return loss, grad.astype(x.dtype)
    return both


def loss_of(variant):
    return lambda *a, **k: variant(*a, **k)[0]


def grad_of(variant):
    return lambda *a, **k: variant(*a, **k)[1]


WEIGHTING_MISTAKES = {
    "the weighted loss is divided by N; torch divides by the sum of the weights of the labels, Σ_n w[y_n]":
        ce_variant(denominator="n"),
    "label smoothing spreads ε over the other C−1 classes; it gives ε/C to each of the C classes, the "
    "true one included": ce_variant(spread="others"),
    "the smoothing term ignores the class weights; it is (ε/C)·Σ_c w_c·(−log p_c)":
        ce_variant(weighted_smoothing=False),
    "the class weights are ignored": lambda x, y, weight=None, label_smoothing=0.0: ce_variant()(
        x, y, None, label_smoothing),
    "label_smoothing is ignored": lambda x, y, weight=None, label_smoothing=0.0: ce_variant()(x, y, weight, 0.0),
    "sum over the batch instead of the (weighted) mean": ce_variant(denominator="one"),
}


def cross_entropy_all_mean(x, y, weight=None, label_smoothing=0.0):
    return ref.cross_entropy(x, y, weight, label_smoothing) / x.shape[1]


def grad_sign(x, y, weight=None, label_smoothing=0.0):
    return -ref.cross_entropy_grad(x, y, weight, label_smoothing)


softmax_mistakes = variants("softmax", {
    "softmax over the wrong axis (normalise over the last axis, the classes)": softmax_axis0,
    "no max-subtraction: exp overflows for large logits (subtract each row's max first)": softmax_naive,
    "one global max subtracted instead of each row's own max (rows far below it underflow to 0/0)":
        softmax_global_max,
})
log_softmax_mistakes = variants("log_softmax", {
    "log(softmax(x)) underflows to log(0) = −inf: compute z − log Σ exp z with z = x − max(x)":
        log_softmax_naive,
    "no max-subtraction: exp overflows for large logits": log_softmax_unstable,
    "over the wrong axis (the classes are the last axis)": lambda x: x - np.log(np.exp(x).sum(axis=0)),
})
ce_mistakes = variants("cross_entropy", {
    **{msg: loss_of(v) for msg, v in WEIGHTING_MISTAKES.items()},
    "mean over all N·C entries instead of over the N examples": cross_entropy_all_mean,
    "no max-subtraction: exp overflows for large logits": lambda x, y, weight=None, label_smoothing=0.0: float(
        -log_softmax_unstable(x)[np.arange(len(y)), y].mean()),
})
grad_mistakes = variants("cross_entropy_grad", {
    **{msg: grad_of(v) for msg, v in WEIGHTING_MISTAKES.items()},
    "the sign is flipped: for one class, ∂(−log p_c)/∂z = p − e_c": grad_sign,
})


def weighted(fn, draw_logits, weights=True, smoothing=True, fixed=None):
    """Inputs ``{"fn", "args": [logits, labels], "kwargs": {weight, label_smoothing}}``; class weights in
    [0.2, 3] in the logits' dtype, ε in [0.05, 0.3]; ``fixed`` gives (labels, weight, ε) instead."""
    def inputs(rng):
        x = draw_logits(rng)
        if fixed is not None:
            y, w, eps = np.array(fixed[0]), fixed[1], fixed[2]
        else:
            y = rng.integers(0, x.shape[-1], x.shape[0])
            w = rng.uniform(0.2, 3.0, x.shape[-1]) if weights else None
            eps = float(rng.uniform(0.05, 0.3)) if smoothing else 0.0
        kwargs = {"label_smoothing": eps} | ({} if w is None else {"weight": np.asarray(w).astype(x.dtype)})
        return {"fn": fn, "args": [x, y], "kwargs": kwargs}
    return inputs


def ce_cases(fn, mistakes):
    close = lambda tol, **kw: Close(**tol, mistakes=mistakes, **kw)
    cases = {
        f"{fn}.visible": case(fn, weighted(fn, logits(None, fixed=VISIBLE), fixed=([2, 0], [1.0, 2.0, 0.5], 0.1)),
                              close(F64), visible=True),
        f"{fn}.weighted": case(fn, weighted(fn, logits((50, 10)), smoothing=False), close(F64)),
        f"{fn}.smoothing": case(fn, weighted(fn, logits((40, 6)), weights=False), close(F64)),
        f"{fn}.float32": case(fn, weighted(fn, logits((30, 7), np.float32)), close(F32)),
        f"{fn}.extreme": case(fn, weighted(fn, logits(None, fixed=EXTREME), fixed=([1, 3, 0], [0.5, 1.0, 2.0, 3.0], 0.2)),
                              close(F64)),
        f"{fn}.unchanged_args": case(fn, weighted(fn, logits((12, 5))), close(F64, immutable=True),
                                     requires=(f"{fn}.weighted", f"{fn}.smoothing", f"{fn}.float32")),
        f"{fn}.visible_float32": case(fn, weighted(fn, logits((4, 3), np.float32)), close(F32), visible=True),
        f"{fn}.visible_unchanged": case(fn, weighted(fn, logits((4, 3))), close(F64, immutable=True), visible=True,
                                        requires=(f"{fn}.weighted", f"{fn}.smoothing", f"{fn}.float32")),
    }
    if fn == "cross_entropy":  # the chapter's plain mean cross-entropy, shown first
        cases = {f"{fn}.plain": case(fn, lambda rng: {"fn": fn, "args": [np.array(VISIBLE), np.array([2, 0])]},
                                     close(F64), visible=True), **cases}
    return cases


CASES = {
    # one_hot
    "one_hot.visible": case("one_hot", lambda rng: {"fn": "one_hot", "args": [np.array([0, 2, 1, 2]), 3]},
                            Close(**F64), visible=True),
    "one_hot.random": case("one_hot", lambda rng: {"fn": "one_hot", "args": [
        rng.integers(0, 17, int(rng.integers(20, 60))), 17]}, Close(**F64, immutable=True)),
    "one_hot.visible_unchanged": case("one_hot", lambda rng: {"fn": "one_hot", "args": [
        rng.integers(0, 4, 6), 4]}, Close(**F64, immutable=True), visible=True, requires=("one_hot.random",)),
    "one_hot.empty": case("one_hot", lambda rng: {"fn": "one_hot", "args": [np.zeros(0, dtype=np.int64), 4]},
                          Close(**F64)),
    "one_hot.errors": case("one_hot", lambda rng: {"fn": "one_hot", "calls": [
        [[np.array([0, 3, 1]), 3], {}], [[np.array([0, -1]), 3], {}], [[np.array([5]), 2], {}]]}, Raises(),
        driver="call_each", requires=("one_hot.random",)),
    # softmax
    "softmax.visible": case("softmax", only_logits("softmax", logits(None, fixed=VISIBLE)),
                            Close(**F64, mistakes=softmax_mistakes), visible=True),
    "softmax.float32_3d": case("softmax", only_logits("softmax", logits((4, 5, 6), np.float32)),
                               Close(**F32, mistakes=softmax_mistakes)),
    "softmax.extreme": case("softmax", only_logits("softmax", logits(None, fixed=EXTREME)),
                            Close(**F64, mistakes=softmax_mistakes)),
    "softmax.unchanged_args": case("softmax", only_logits("softmax", logits((7, 3))),
                                   Close(**F64, immutable=True, mistakes=softmax_mistakes),
                                   requires=("softmax.float32_3d",)),
    "softmax.visible_float32": case("softmax", only_logits("softmax", logits((2, 3, 4), np.float32)),
                                    Close(**F32, mistakes=softmax_mistakes), visible=True),
    "softmax.visible_unchanged": case("softmax", only_logits("softmax", logits((3, 4))),
                                      Close(**F64, immutable=True, mistakes=softmax_mistakes), visible=True,
                                      requires=("softmax.float32_3d",)),
    # log_softmax
    "log_softmax.visible": case("log_softmax", only_logits("log_softmax", logits(None, fixed=VISIBLE)),
                                Close(**F64, mistakes=log_softmax_mistakes), visible=True),
    "log_softmax.float32_3d": case("log_softmax", only_logits("log_softmax", logits((3, 4, 8), np.float32)),
                                   Close(**F32, mistakes=log_softmax_mistakes)),
    "log_softmax.extreme": case("log_softmax", only_logits("log_softmax", logits(None, fixed=EXTREME)),
                                Close(**F64, mistakes=log_softmax_mistakes)),
    "log_softmax.visible_float32": case("log_softmax", only_logits("log_softmax", logits((2, 3, 4), np.float32)),
                                        Close(**F32, mistakes=log_softmax_mistakes), visible=True),
    # cross_entropy and its gradient (the reference equals torch.nn.functional.cross_entropy; a test checks it)
    **ce_cases("cross_entropy", ce_mistakes),
    **ce_cases("cross_entropy_grad", grad_mistakes),
}


# ----------------------------------------------------------------------------- softmax regression
def blobs(rng, n=150, classes=3):
    """Three well-separated Gaussian blobs in 2-D (visible case: any working fit scores ~100 %)."""
    centers = np.array([[0.0, 4.0], [4.0, -2.0], [-4.0, -2.0]])
    y = np.arange(n) % classes
    return (centers[y] + rng.normal(size=(n, 2))).astype(np.float64), y


@lru_cache(maxsize=1)
def digits_arrays():
    from optlab.data import digits

    split = digits()
    return tuple(t.numpy() for t in split)


def fit_inputs_blobs(rng):
    X, y = blobs(np.random.default_rng(0))
    return {"fn": "fit_softmax_regression", "args": [X, y, 3],
            "kwargs": {"lr": 0.1, "epochs": 20, "batch_size": 16, "seed": 0}}


def fit_inputs_digits(rng):
    X, y, _, _ = digits_arrays()
    return {"fn": "fit_softmax_regression", "args": [X, y, 10],
            "kwargs": {"lr": 0.5, "epochs": 20, "batch_size": 32, "seed": int(rng.integers(0, 2**31))}}


def blobs_test(inputs):
    return blobs(np.random.default_rng(1))


def digits_test(inputs):
    return digits_arrays()[2:]


CASES |= {
    "fit_softmax_regression.visible": Case(
        "call", fit_inputs_blobs, lambda inp: None,
        Accuracy(threshold=0.95, model="linear", test_data=blobs_test), visible=True),
    "fit_softmax_regression.digits": Case(
        "call", fit_inputs_digits, lambda inp: None,
        Accuracy(threshold=DIGITS_THRESHOLD, model="linear", test_data=digits_test), timeout=20.0),
}
