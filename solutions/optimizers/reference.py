"""Reference solutions of the `optimizers` assignment (instructor-only; never released).

The solution cells of optimizers.ipynb hold exactly these definitions (a test checks it).
"""
import math

import numpy as np


def minibatch_indices(n, batch_size, rng, shuffle=True, drop_last=False):
    order = rng.permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def sgd_momentum(theta, g, state, lr=0.01, lam=0.9):
    m = lam * state.get("m", np.zeros_like(theta)) - lr * g
    return theta + m, {"m": m}


def adagrad(theta, g, state, lr=0.01, eps=1e-8):
    t = state.get("t", 0)
    sum_sq = state.get("sum_sq", np.zeros_like(theta)) + g * g
    sigma = np.sqrt(sum_sq / (t + 1))
    return theta - lr * g / (sigma + eps), {"t": t + 1, "sum_sq": sum_sq}


def rmsprop(theta, g, state, lr=0.01, alpha=0.9, eps=1e-8):
    if "sigma" in state:
        sigma = np.sqrt(alpha * state["sigma"] ** 2 + (1 - alpha) * g * g)
    else:
        sigma = np.abs(g)
    return theta - lr * g / (sigma + eps), {"sigma": sigma}


def adam(theta, g, state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    t = state.get("t", 0) + 1
    m = beta1 * state.get("m", np.zeros_like(theta)) + (1 - beta1) * g
    v = beta2 * state.get("v", np.zeros_like(theta)) + (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    return theta - lr * m_hat / (np.sqrt(v_hat) + eps), {"t": t, "m": m, "v": v}


def warmup_cosine_lr(step, total_steps, warmup_steps, peak_lr, final_lr=0.0):
    if not 0 <= warmup_steps < total_steps or not 0 <= step <= total_steps:
        raise ValueError("need 0 <= warmup_steps < total_steps and 0 <= step <= total_steps")
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return final_lr + (peak_lr - final_lr) * (1 + math.cos(math.pi * progress)) / 2


def transformer_lr(step, d_model, warmup_steps):
    if step < 1:
        raise ValueError("step counts from 1")
    return d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)
