"""Reference solutions of the `optimizers` assignment (instructor-only; never released).

The solution cells of optimizers.ipynb hold exactly these definitions (a test checks it).
"""
import math

import numpy as np


def minibatch_indices(n, batch_size, rng, shuffle=True, drop_last=False):
    order = rng.permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def sgd_momentum(theta, g, state, lr=0.01, lam=0.9, nesterov=False):
    m = lam * state.get("m", np.zeros_like(theta)) - lr * g
    step = lam * m - lr * g if nesterov else m
    return theta + step, {"m": m}


def adamw(theta, g, state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2):
    t = state.get("t", 0) + 1
    m = beta1 * state.get("m", np.zeros_like(theta)) + (1 - beta1) * g
    v = beta2 * state.get("v", np.zeros_like(theta)) + (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    decayed = theta * (1 - lr * weight_decay)
    return decayed - lr * m_hat / (np.sqrt(v_hat) + eps), {"t": t, "m": m, "v": v}


def clip_grad_norm(grads, max_norm):
    total = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
    scale = min(1.0, max_norm / (total + 1e-6))
    return [g * scale for g in grads], total


def warmup_cosine_lr(step, total_steps, warmup_steps, peak_lr, final_lr=0.0):
    if not 0 <= warmup_steps < total_steps or not 0 <= step <= total_steps:
        raise ValueError("need 0 <= warmup_steps < total_steps and 0 <= step <= total_steps")
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return final_lr + (peak_lr - final_lr) * (1 + math.cos(math.pi * progress)) / 2

