"""Test cases of the `optimizers` assignment (instructor-only; never released).

Trajectories run the student's update rule on f(θ) = ½ θᵀAθ − bᵀθ with a random positive-definite A
and compare every iterate with the reference. Tolerances (per element, |out − ref| <= atol + rtol·|ref|):
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
def trajectory(fn, shape, dtype, steps, kwargs, scale=1.0):
    """Inputs for ``optimizer_trajectory``: random SPD A (eigenvalues in [0.5, 5]·scale), b, θ⁰.

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
        return {"fn": fn, "theta0": (minimum + offset).reshape(shape).astype(dtype), "A": A,
                "b": A @ minimum, "steps": steps, "kwargs": kw}
    return inputs


def optimizer_cases(fn, wrong, defaults, eps_inside=None):
    """Visible float64 case; hidden float32 trajectory with random hyper-parameters; immutability."""
    mistakes = variants("optimizer_trajectory", fn, wrong)
    cases = {
        f"{fn}.visible": case("optimizer_trajectory", fn, trajectory(fn, (3,), np.float64, 5, defaults),
                              Close(**F64, mistakes=mistakes), visible=True),
        f"{fn}.float32": case("optimizer_trajectory", fn, trajectory(fn, (2, 3), np.float32, 20, defaults),
                              Close(**F32, mistakes=mistakes)),
        f"{fn}.unchanged_args": case("optimizer_trajectory", fn, trajectory(fn, (4,), np.float64, 3, defaults),
                                     Close(**F64, immutable=True, mistakes=mistakes), requires=(f"{fn}.float32",)),
    }
    if eps_inside is not None:  # large eps and small gradients: eps inside or outside the root differ
        cases[f"{fn}.large_eps"] = case("optimizer_trajectory", fn,
                                        trajectory(fn, (5,), np.float64, 10, eps_inside, scale=1e-2),
                                        Close(**F64, mistakes=mistakes))
    return cases


def momentum_old_m(theta, g, state, lr=0.01, lam=0.9):
    m = state.get("m", np.zeros_like(theta))
    return theta + m, {"m": lam * m - lr * g}


def momentum_plus(theta, g, state, lr=0.01, lam=0.9):
    m = lam * state.get("m", np.zeros_like(theta)) + lr * g
    return theta + m, {"m": m}


def adagrad_root_sum(theta, g, state, lr=0.01, eps=1e-8):
    s = state.get("s", np.zeros_like(theta)) + g * g
    return theta - lr * g / (np.sqrt(s) + eps), {"s": s}


def adagrad_eps_inside(theta, g, state, lr=0.01, eps=1e-8):
    t, s = state.get("t", 0), state.get("s", np.zeros_like(theta)) + g * g
    return theta - lr * g / np.sqrt(s / (t + 1) + eps), {"t": t + 1, "s": s}


def adagrad_t_plus_2(theta, g, state, lr=0.01, eps=1e-8):
    t, s = state.get("t", 0), state.get("s", np.zeros_like(theta)) + g * g
    return theta - lr * g / (np.sqrt(s / (t + 2)) + eps), {"t": t + 1, "s": s}


def rmsprop_torch_init(theta, g, state, lr=0.01, alpha=0.9, eps=1e-8):
    v = alpha * state.get("v", np.zeros_like(theta)) + (1 - alpha) * g * g
    return theta - lr * g / (np.sqrt(v) + eps), {"v": v}


def rmsprop_swapped(theta, g, state, lr=0.01, alpha=0.9, eps=1e-8):
    sigma = np.sqrt((1 - alpha) * state["sigma"] ** 2 + alpha * g * g) if "sigma" in state else np.abs(g)
    return theta - lr * g / (sigma + eps), {"sigma": sigma}


def rmsprop_eps_inside(theta, g, state, lr=0.01, alpha=0.9, eps=1e-8):
    v = alpha * state["v"] + (1 - alpha) * g * g if "v" in state else g * g
    return theta - lr * g / np.sqrt(v + eps), {"v": v}


def adam_variant(t0=1, correct=True, eps_inside=False):
    def adam(theta, g, state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        t = state.get("t", t0 - 1) + 1
        m = beta1 * state.get("m", np.zeros_like(theta)) + (1 - beta1) * g
        v = beta2 * state.get("v", np.zeros_like(theta)) + (1 - beta2) * g * g
        m_hat, v_hat = (m / (1 - beta1 ** t), v / (1 - beta2 ** t)) if correct else (m, v)
        denom = np.sqrt(v_hat + eps) if eps_inside else np.sqrt(v_hat) + eps
        return theta - lr * m_hat / denom, {"t": t, "m": m, "v": v}
    return adam


def hyper(**ranges):
    return lambda rng: {k: float(rng.uniform(*v)) for k, v in ranges.items()}


CASES |= optimizer_cases("sgd_momentum", {
    "the step uses the previous momentum (update m first, then θ ← θ + m)": momentum_old_m,
    "the gradient enters with the wrong sign (the lecture's form is m ← λm − ηg, θ ← θ + m)": momentum_plus,
}, hyper(lr=(0.01, 0.1), lam=(0.5, 0.95)))

CASES |= optimizer_cases("adagrad", {
    "σ is the root of the SUM of squared gradients (torch.optim.Adagrad); the lecture uses the root-MEAN-"
    "square, dividing by t+1": adagrad_root_sum,
    "eps is inside the square root (θ ← θ − ηg/(σ + eps))": adagrad_eps_inside,
    "the mean divides by t+2 instead of t+1 (the first step, t=0, averages one gradient)": adagrad_t_plus_2,
}, hyper(lr=(0.01, 0.05)), eps_inside=hyper(lr=(0.01, 0.05), eps=(0.05, 0.2)))

CASES |= optimizer_cases("rmsprop", {
    "σ starts from 0 as in torch.optim.RMSprop; the lecture's σ⁰ = |g⁰|": rmsprop_torch_init,
    "α and 1−α are swapped (σ² ← α σ² + (1−α) g², α weights the past)": rmsprop_swapped,
    "eps is inside the square root (θ ← θ − ηg/(σ + eps))": rmsprop_eps_inside,
}, hyper(lr=(0.01, 0.05), alpha=(0.8, 0.99)), eps_inside=hyper(lr=(0.01, 0.05), eps=(0.05, 0.2)))

CASES |= optimizer_cases("adam", {
    "bias correction uses t starting at 0 (t is 1 on the first step)": adam_variant(t0=0),
    "bias correction is one step ahead (t is 1 on the first step, not 2)": adam_variant(t0=2),
    "no bias correction (divide m by 1−β₁ᵗ and v by 1−β₂ᵗ)": adam_variant(correct=False),
    "eps is inside the square root (torch.optim.Adam adds eps to √v̂)": adam_variant(eps_inside=True),
}, hyper(lr=(1e-3, 5e-2), beta1=(0.8, 0.95), beta2=(0.95, 0.999)),
    eps_inside=hyper(lr=(1e-3, 5e-2), eps=(0.05, 0.2)))


# ----------------------------------------------------------------------------- schedules
def warmup_off_by_one(step, total_steps, warmup_steps, peak_lr, final_lr=0.0):
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    return ref.warmup_cosine_lr(step, total_steps, warmup_steps, peak_lr, final_lr)


def cosine_from_zero(step, total_steps, warmup_steps, peak_lr, final_lr=0.0):
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    return final_lr + (peak_lr - final_lr) * (1 + math.cos(math.pi * step / total_steps)) / 2


def noam_sqrt_warmup(step, d_model, warmup_steps):
    return d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -0.5)


def noam_no_scale(step, d_model, warmup_steps):
    return min(step ** -0.5, step * warmup_steps ** -1.5)


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
noam_mistakes = variants("call_many", "transformer_lr", {
    "the warmup term uses warmup_steps^−0.5; it is step·warmup_steps^−1.5": noam_sqrt_warmup,
    "the factor d_model^−0.5 is missing": noam_no_scale,
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
    "transformer_lr.visible": case("call_many", "transformer_lr", schedule_calls(
        "transformer_lr", lambda rng: [512, 4000], lambda a, rng: [1, 2, 100, 3999, 4000, 4001, 10**5]),
        Close(**F64, mistakes=noam_mistakes), visible=True),
    "transformer_lr.values": case("call_many", "transformer_lr", schedule_calls(
        "transformer_lr", lambda rng: [int(rng.choice([64, 128, 256, 1024])), int(rng.integers(10, 5000))],
        lambda a, rng: sorted({1, a[1], a[1] + 1, *map(int, rng.integers(1, 4 * a[1], 30))})),
        Close(**F64, mistakes=noam_mistakes)),
    "transformer_lr.errors": case("call_each", "transformer_lr", lambda rng: {
        "fn": "transformer_lr", "calls": [[[0, 512, 4000], {}], [[-3, 512, 4000], {}]]}, Raises(),
        requires=("transformer_lr.values",)),
}
