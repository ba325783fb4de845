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
    """c/2 t1^2 + A log cosh t2 with c = VALLEY_C, A = VALLEY_A (NumPy)."""
    return 0.5 * VALLEY_C * t1**2 + VALLEY_A * np.log(np.cosh(t2))


def valley_grad(theta):
    """Gradient of :func:`valley_loss` at points ``theta`` of shape (..., 2)."""
    return np.stack([VALLEY_C * theta[..., 0], VALLEY_A * np.tanh(theta[..., 1])], axis=-1)
