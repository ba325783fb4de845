"""Test cases of the `optimizers` assignment (instructor-only; never released).

Trajectories run the student's update rule on f(θ) = ½ θᵀAθ − bᵀθ with a random positive-definite A
and compare every iterate with the reference; scheduled ones change the learning rate every step
(warmup, plateau, a drop to a tenth), where the lecture's momentum and PyTorch's differ. Tolerances (per element, |out − ref| <= atol + rtol·|ref|):
float64 rtol 1e-6; float32 rtol 2e-4, atol 1e-5 (θ is O(1)), which accepts float32 arithmetic, torch,
loops or vectorized code over 20 steps, and rejects every named mistake below.
"""
import math

import numpy as np

from autograder.case import Batches, Case, Close, Raises, reference_outputs, sibling

ref = sibling(__file__, "reference")
# Distributions (with their dependencies) a submission's sandbox holds; any other module is absent.
PACKAGES = ["numpy", "torch", "matplotlib", "scikit-learn", "mnist1d", "platformdirs"]
FORBIDDEN_IMPORTS: list[str] = []

F64 = dict(rtol=1e-6, atol=1e-9)
F32 = dict(rtol=2e-4, atol=1e-5)


def case(driver, fn, inputs, judge, visible=False, requires=()):
    return Case(driver=driver, inputs=inputs, judge=judge, visible=visible, requires=requires,
                expected=lambda inp: reference_outputs(driver, fn, getattr(ref, fn), inp))


def variants(driver, fn, wrong):
    """``mistakes`` for a Close judge: {message: result of the wrong implementation}."""
    return lambda inp: {msg: reference_outputs(driver, fn, impl, inp)["result"] for msg, impl in wrong.items()}


# ----------------------------------------------------------------------------- minibatch_indices
def batches(n, batch_size, shuffle, drop_last):
    def inputs(rng):
        size = lambda v: int(v(rng)) if callable(v) else v
        return {"fn": "minibatch_indices", "n": size(n), "batch_size": size(batch_size), "shuffle": shuffle,
                "drop_last": drop_last, "seeds": [int(s) for s in rng.integers(0, 2**31, 1)] * 2
                + [int(rng.integers(0, 2**31))]}
    return case("minibatches", "minibatch_indices", inputs, Batches())


CASES = {
    "minibatch_indices.visible": Case(
        "minibatches", lambda rng: {"fn": "minibatch_indices", "n": 10, "batch_size": 4, "shuffle": False,
                                    "drop_last": False, "seeds": [0, 0, 1]},
        lambda inp: None, Batches(), visible=True),
    "minibatch_indices.shuffle": batches(lambda r: r.integers(50, 300), lambda r: r.integers(7, 40), True, False),
    "minibatch_indices.drop_last": batches(lambda r: r.integers(50, 300), lambda r: r.integers(7, 40), True, True),
    "minibatch_indices.sizes": batches(lambda r: 8 * r.integers(5, 20), 8, True, False),
    "minibatch_indices.big_batch": batches(lambda r: r.integers(10, 30), 64, False, False),
}


# ----------------------------------------------------------------------------- update rules
def schedule(steps, rng):
    """A learning-rate factor per step as a scheduler makes it: a linear warmup, a plateau, then a
    drop to a tenth (the drop is where the lecture's momentum and PyTorch's part ways)."""
    warm, drop = int(rng.integers(2, 5)), int(rng.integers(steps // 2, steps - 2))
    return [float(min(1.0, (t + 1) / warm) * (0.1 if t >= drop else 1.0)) for t in range(steps)]


def trajectory(fn, shape, dtype, steps, kwargs, scale=1.0, scheduled=False):
    """Inputs for ``optimizer_trajectory``: random SPD A (eigenvalues in [0.5, 5]·scale), b, θ⁰; with
    ``scheduled`` the learning rate ``kwargs["lr"]`` is multiplied by :func:`schedule` step by step.

    θ⁰ starts 3 to 5 away from the minimum in every coordinate, further than the steps can go, so the
    iterates never reach the oscillation around the minimum where adaptive methods (g/σ ≈ ±1) turn
    rounding differences between correct float32 and float64 implementations into different paths.
    """
    def inputs(rng):
        d = math.prod(shape)
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        A = (q * rng.uniform(0.5, 5.0, d)) @ q.T * scale
        minimum = rng.normal(size=d)
        offset = rng.uniform(3.0, 5.0, d) * rng.choice([-1.0, 1.0], d)
        kw = kwargs(rng) if callable(kwargs) else dict(kwargs)
        out = {"fn": fn, "theta0": (minimum + offset).reshape(shape).astype(dtype), "A": A,
               "b": A @ minimum, "steps": steps, "kwargs": kw}
        if scheduled:
            out["lrs"] = [kw["lr"] * f for f in schedule(steps, rng)]
        return out
    return inputs


def hyper(**ranges):
    """Random hyper-parameters: a range is drawn uniformly, anything else is taken as it is."""
    return lambda rng: {k: float(rng.uniform(*v)) if isinstance(v, tuple) else v for k, v in ranges.items()}


def momentum_old_m(theta, g, state, lr=0.01, lam=0.9, nesterov=False):
    m = state.get("m", np.zeros_like(theta))
    new = lam * m - lr * g
    return theta + (lam * new - lr * g if nesterov else m), {"m": new}


def momentum_plus(theta, g, state, lr=0.01, lam=0.9, nesterov=False):
    m = lam * state.get("m", np.zeros_like(theta)) + lr * g
    return theta + (lam * m + lr * g if nesterov else m), {"m": m}


def momentum_torch_form(theta, g, state, lr=0.01, lam=0.9, nesterov=False):
    """torch.optim.SGD(momentum=lam, nesterov=...): v <- lam v + g, theta <- theta - lr (v or g + lam v)."""
    v = lam * state.get("v", np.zeros_like(theta)) + g
    return theta - lr * (g + lam * v if nesterov else v), {"v": v}


def momentum_no_nesterov(theta, g, state, lr=0.01, lam=0.9, nesterov=False):
    return ref.sgd_momentum(theta, g, state, lr, lam)


MOMENTUM_MISTAKES = {
    "the learning rate multiplies the whole accumulated movement (PyTorch's form v ← λv + g, θ ← θ − ηv): "
    "the same as the lecture's only while η is constant; in the lecture's form each gradient is scaled by "
    "the η of its own step, m ← λm − ηg": momentum_torch_form,
    "the step uses the previous momentum (update m first, then θ ← θ + m)": momentum_old_m,
    "the gradient enters with the wrong sign (the lecture's form is m ← λm − ηg, θ ← θ + m)": momentum_plus,
    "nesterov=True is ignored: Nesterov's step is θ ← θ + λm − ηg with the new m": momentum_no_nesterov,
}


def adamw_variant(t0=1, correct=True, eps_inside=False, decay="decoupled"):
    def adamw(theta, g, state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2):
        if decay == "l2":
            g = g + weight_decay * theta
        t = state.get("t", t0 - 1) + 1
        m = beta1 * state.get("m", np.zeros_like(theta)) + (1 - beta1) * g
        v = beta2 * state.get("v", np.zeros_like(theta)) + (1 - beta2) * g * g
        m_hat, v_hat = (m / (1 - beta1 ** t), v / (1 - beta2 ** t)) if correct else (m, v)
        denom = np.sqrt(v_hat + eps) if eps_inside else np.sqrt(v_hat) + eps
        step = lr * m_hat / denom
        if decay == "decoupled":
            return theta * (1 - lr * weight_decay) - step, {"t": t, "m": m, "v": v}
        if decay == "unscaled":
            return theta * (1 - weight_decay) - step, {"t": t, "m": m, "v": v}
        if decay == "after":
            return (theta - step) * (1 - lr * weight_decay), {"t": t, "m": m, "v": v}
        return theta - step, {"t": t, "m": m, "v": v}  # "l2" (already in g) or "none"
    return adamw


ADAMW_MISTAKES = {
    "weight decay is added to the gradient (g + λθ, the L2 penalty of torch.optim.Adam(weight_decay=...)); "
    "AdamW decays θ itself, outside Adam's scaling: θ ← θ(1 − ηλ) − η m̂/(√v̂ + ε)": adamw_variant(decay="l2"),
    "no weight decay: shrink θ to θ(1 − ηλ) before the Adam step": adamw_variant(decay="none"),
    "the decay is not scaled by the learning rate: θ ← θ(1 − ηλ), not θ(1 − λ)": adamw_variant(decay="unscaled"),
    "bias correction uses t starting at 0 (t is 1 on the first step)": adamw_variant(t0=0),
    "bias correction is one step ahead (t is 1 on the first step, not 2)": adamw_variant(t0=2),
    "no bias correction (divide m by 1−β₁ᵗ and v by 1−β₂ᵗ)": adamw_variant(correct=False),
    "eps is inside the square root (torch adds eps to √v̂)": adamw_variant(eps_inside=True),
}


def rule_cases(fn, wrong, spec):
    """``spec``: case name -> (shape, dtype, steps, hyper-parameters, scheduled, visible[, scale])."""
    mistakes = variants("optimizer_trajectory", fn, wrong)
    cases = {}
    for name, (shape, dtype, steps, kw, scheduled, visible, *scale) in spec.items():
        tol = F32 if dtype == np.float32 else F64
        cases[f"{fn}.{name}"] = case(
            "optimizer_trajectory", fn, trajectory(fn, shape, dtype, steps, kw, *scale, scheduled=scheduled),
            Close(**tol, mistakes=mistakes), visible=visible)
    values = tuple(f"{fn}.{name}" for name, s in spec.items() if not s[5])
    for name, visible in (("unchanged_args", False), ("visible_unchanged", True)):
        cases[f"{fn}.{name}"] = case(
            "optimizer_trajectory", fn, trajectory(fn, (4,), np.float64, 3, spec[next(iter(spec))][3]),
            Close(**F64, immutable=True, mistakes=mistakes), visible=visible, requires=values)
    return cases


MOMENTUM = hyper(lr=(0.01, 0.1), lam=(0.5, 0.95))
NESTEROV = hyper(lr=(0.01, 0.1), lam=(0.5, 0.95), nesterov=True)
CASES |= rule_cases("sgd_momentum", MOMENTUM_MISTAKES, {
    "visible": ((3,), np.float64, 5, dict(lr=0.05, lam=0.9), False, True),
    "schedule": ((3,), np.float64, 12, dict(lr=0.05, lam=0.9), True, True),
    "float32": ((2, 3), np.float32, 20, MOMENTUM, True, False),
    "nesterov": ((3,), np.float64, 5, dict(lr=0.05, lam=0.9, nesterov=True), False, True),
    "nesterov_float32": ((2, 3), np.float32, 20, NESTEROV, True, False),
    "visible_float32": ((2, 3), np.float32, 8, dict(lr=0.05, lam=0.9), True, True),
    "visible_nesterov_float32": ((2, 3), np.float32, 8, dict(lr=0.05, lam=0.9, nesterov=True), True, True),
})

ADAMW = hyper(lr=(1e-2, 5e-2), beta1=(0.8, 0.95), beta2=(0.95, 0.999), weight_decay=(0.05, 0.5))
CASES |= rule_cases("adamw", ADAMW_MISTAKES, {
    "visible": ((3,), np.float64, 5, dict(lr=0.05, weight_decay=0.1), False, True),
    "float32": ((2, 3), np.float32, 20, ADAMW, True, False, 0.1),  # small gradients: λθ matters in g + λθ
    "large_eps": ((5,), np.float64, 10, hyper(lr=(1e-3, 5e-2), eps=(0.05, 0.2), weight_decay=(0.05, 0.5)),
                  True, False, 1e-2),
    "visible_float32": ((2, 3), np.float32, 8, dict(lr=0.03, beta1=0.9, beta2=0.99, weight_decay=0.2), True, True,
                        0.1),
})


# ----------------------------------------------------------------------------- clip_grad_norm
def clip_each(grads, max_norm):
    return [ref.clip_grad_norm([g], max_norm)[0][0] for g in grads], ref.clip_grad_norm(grads, max_norm)[1]


def clip_always(grads, max_norm):
    total = ref.clip_grad_norm(grads, max_norm)[1]
    return [g * (max_norm / (total + 1e-6)) for g in grads], total


def clip_norm_after(grads, max_norm):
    clipped, _ = ref.clip_grad_norm(grads, max_norm)
    return clipped, ref.clip_grad_norm(clipped, max_norm)[1]


clip_mistakes = variants("call", "clip_grad_norm", {
    "each array is clipped by its own norm; use ONE scale for all, from the norm of all gradients "
    "together, √(Σ‖g‖²)": clip_each,
    "gradients whose total norm is below max_norm are scaled up; the scale is min(1, max_norm/(norm + 1e-6))":
        clip_always,
    "returned the norm after clipping; return the total norm before clipping": clip_norm_after,
})


def gradients(dtype, shapes, norm):
    """A list of random arrays whose total norm is ``norm(rng)``."""
    def inputs(rng):
        arrays = [rng.normal(size=s) for s in shapes]
        total = math.sqrt(sum(float(np.sum(a * a)) for a in arrays))
        target = norm(rng)
        return {"fn": "clip_grad_norm", "args": [[(a * target / total).astype(dtype) for a in arrays],
                                                 float(rng.uniform(0.5, 2.0))]}
    return inputs


def above(rng):
    return float(rng.uniform(3.0, 30.0))


def below(rng):
    return float(rng.uniform(0.05, 0.45))


CASES |= {
    "clip_grad_norm.visible": case("call", "clip_grad_norm", lambda rng: {"fn": "clip_grad_norm", "args": [
        [np.array([3.0, 0.0]), np.array([[0.0], [4.0]])], 1.0]}, Close(**F64, mistakes=clip_mistakes), visible=True),
    "clip_grad_norm.float32": case("call", "clip_grad_norm", gradients(np.float32, [(4, 3), (3,), (2, 2, 2)], above),
                                   Close(**F32, mistakes=clip_mistakes)),
    "clip_grad_norm.visible_float32": case("call", "clip_grad_norm", gradients(np.float32, [(2, 2), (3,)], above),
                                           Close(**F32, mistakes=clip_mistakes), visible=True),
    "clip_grad_norm.below": case("call", "clip_grad_norm", gradients(np.float64, [(5,), (2, 3)], below),
                                 Close(**F64, mistakes=clip_mistakes)),
    "clip_grad_norm.unchanged_args": case("call", "clip_grad_norm", gradients(np.float64, [(3, 2), (4,)], above),
                                          Close(**F64, immutable=True, mistakes=clip_mistakes),
                                          requires=("clip_grad_norm.float32", "clip_grad_norm.below")),
    "clip_grad_norm.visible_unchanged": case("call", "clip_grad_norm", gradients(np.float64, [(2, 2), (3,)], above),
                                             Close(**F64, immutable=True, mistakes=clip_mistakes), visible=True,
                                             requires=("clip_grad_norm.float32", "clip_grad_norm.below")),
}


# ----------------------------------------------------------------------------- schedules
def warmup_off_by_one(step, total_steps, warmup_steps, peak_lr, final_lr=0.0):
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    return ref.warmup_cosine_lr(step, total_steps, warmup_steps, peak_lr, final_lr)


def cosine_from_zero(step, total_steps, warmup_steps, peak_lr, final_lr=0.0):
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    return final_lr + (peak_lr - final_lr) * (1 + math.cos(math.pi * step / total_steps)) / 2


def schedule_calls(fn, draw, steps):
    def inputs(rng):
        args = draw(rng)
        return {"fn": fn, "calls": [[[s, *args], {}] for s in steps(args, rng)]}
    return inputs


def warmup_args(rng):
    total = int(rng.integers(50, 500))
    return [total, int(rng.integers(1, total // 3)), float(rng.uniform(0.01, 1.0)), float(rng.uniform(0, 1e-3))]


def all_steps(args, rng):
    return list(range(args[0] + 1))


warmup_mistakes = variants("call_many", "warmup_cosine_lr", {
    "warmup uses step/warmup_steps; it is peak_lr·(step+1)/warmup_steps": warmup_off_by_one,
    "the cosine phase is measured from step 0; it starts at step = warmup_steps": cosine_from_zero,
})

CASES |= {
    "warmup_cosine_lr.visible": case("call_many", "warmup_cosine_lr", schedule_calls(
        "warmup_cosine_lr", lambda rng: [20, 5, 0.1, 0.001], all_steps), Close(**F64, mistakes=warmup_mistakes),
        visible=True),
    "warmup_cosine_lr.values": case("call_many", "warmup_cosine_lr", schedule_calls(
        "warmup_cosine_lr", warmup_args, all_steps), Close(**F64, mistakes=warmup_mistakes)),
    "warmup_cosine_lr.no_warmup": case("call_many", "warmup_cosine_lr", schedule_calls(
        "warmup_cosine_lr", lambda rng: [int(rng.integers(10, 100)), 0, 0.5, 0.0], all_steps),
        Close(**F64, mistakes=warmup_mistakes)),
    "warmup_cosine_lr.errors": case("call_each", "warmup_cosine_lr", lambda rng: {
        "fn": "warmup_cosine_lr", "calls": [[[-1, 100, 10, 0.1], {}], [[101, 100, 10, 0.1], {}],
                                            [[5, 100, 200, 0.1], {}], [[0, 100, -1, 0.1], {}]]}, Raises(),
        requires=("warmup_cosine_lr.values",)),
}
