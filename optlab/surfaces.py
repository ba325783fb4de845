"""The toy error surfaces that several chapters share, each under one name.

Each works elementwise on NumPy arrays (grids for contour plots) and, where noted, on torch tensors.
"""
import numpy as np


def saddle_loss(w1, w2):
    """The lecture's saddle: y = w1 * w2 * x with x = 1 and target 1, squared error (1 - w1 w2)^2.

    Works on NumPy arrays and on torch tensors (autograd flows through it).
    """
    return (1 - w1 * w2) ** 2


# The elongated valley of the adaptive-learning-rate and scheduling chapters:
# L = c/2 theta_1^2 + A log cosh theta_2, gentle along theta_1, a steep wall along theta_2.
VALLEY_C, VALLEY_A = 0.01, 300.0
VALLEY_START = np.array([-8.0, 2.0])


def valley_loss(t1, t2):
    """c/2 t1^2 + A log cosh t2 with c = VALLEY_C, A = VALLEY_A (NumPy).

    log cosh is evaluated as |t2| - log 2 + log1p(exp(-2|t2|)) beyond |t2| = 20, where cosh would
    overflow for a diverging run; below that, as log(cosh(t2)), which keeps tiny losses exact.
    """
    a = np.abs(t2)
    far = a - np.log(2.0) + np.log1p(np.exp(-2.0 * a))
    return 0.5 * VALLEY_C * t1**2 + VALLEY_A * np.where(a < 20.0, np.log(np.cosh(np.minimum(a, 20.0))), far)


def valley_grad(theta):
    """Gradient of :func:`valley_loss` at points ``theta`` of shape (..., 2)."""
    return np.stack([VALLEY_C * theta[..., 0], VALLEY_A * np.tanh(theta[..., 1])], axis=-1)
