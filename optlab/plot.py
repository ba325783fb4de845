"""Plot helpers shared by the chapters: error surfaces with optimizer paths, and curves."""
from __future__ import annotations

from collections.abc import Callable, Mapping

import matplotlib.pyplot as plt
import numpy as np


def _as_numpy(values) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, on any device
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=float)


def surface(
    f: Callable[[np.ndarray, np.ndarray], np.ndarray],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    paths: Mapping[str, object] | None = None,
    ax=None,
    levels: int | np.ndarray = 30,
    resolution: int = 200,
    log: bool = False,
    labels: tuple[str, str] = (r"$\theta_1$", r"$\theta_2$"),
):
    """Contour plot of ``f(X, Y)`` (vectorized over grids) with optimizer paths drawn on top.

    ``paths`` maps a legend label to a sequence of points of shape (T, 2); each path is drawn as a
    line with its start marked by a circle and its end by a cross. ``log=True`` spaces the contour
    levels logarithmically, which shows narrow valleys better. Returns the axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5))
    x = np.linspace(*xlim, resolution)
    y = np.linspace(*ylim, resolution)
    X, Y = np.meshgrid(x, y)
    Z = np.asarray(f(X, Y), dtype=float)
    if log:
        shift = 1e-12 - min(Z.min(), 0.0)
        levels = np.geomspace(Z.min() + shift, Z.max() + shift, levels if np.isscalar(levels) else len(levels)) - shift
    ax.contour(X, Y, Z, levels=levels, cmap="viridis", linewidths=0.8)
    for label, path in (paths or {}).items():
        p = _as_numpy(path).reshape(-1, 2)
        (line,) = ax.plot(p[:, 0], p[:, 1], ".-", ms=3, lw=1.2, label=label)
        ax.plot(*p[0], "o", color=line.get_color(), ms=6)
        ax.plot(*p[-1], "x", color=line.get_color(), ms=8, mew=2)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    if paths:
        ax.legend(loc="best", fontsize="small")
    return ax


def curves(
    series: Mapping[str, object],
    xlabel: str = "update",
    ylabel: str = "loss",
    ax=None,
    x=None,
    logx: bool = False,
    logy: bool = False,
):
    """Line plot of named curves. A 2-D value (runs x points) is drawn as its mean with a band
    from the minimum to the maximum over runs, e.g. over seeds. Returns the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.8))
    for label, values in series.items():
        v = _as_numpy(values)
        xs = np.arange(v.shape[-1]) if x is None else _as_numpy(x)
        if v.ndim == 2:
            (line,) = ax.plot(xs, v.mean(axis=0), label=label)
            ax.fill_between(xs, v.min(axis=0), v.max(axis=0), color=line.get_color(), alpha=0.2)
        else:
            ax.plot(xs, v, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if len(series) > 1:
        ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    return ax
