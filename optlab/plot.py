"""Plot helpers shared by the chapters: error surfaces with optimizer paths, and curves."""
from __future__ import annotations

from collections.abc import Callable, Mapping

import matplotlib.pyplot as plt
import numpy as np

# Type sizes for figures up to 10 in wide: the page's column (about 850 px) scales a 10 in figure
# (1000 px at 100 dpi) by 0.85, so 11 pt tick labels show at about 9.7 pt. Keep figures <= 10 in.
MAX_WIDTH_IN = 10.0
STYLE = {"font.size": 11, "axes.labelsize": 11, "axes.titlesize": 11.5, "xtick.labelsize": 11,
         "ytick.labelsize": 11, "legend.fontsize": 10}


def style() -> None:
    """Apply the book's type sizes to matplotlib (done once when ``optlab.plot`` is imported)."""
    plt.rcParams.update(STYLE)


style()


def _as_numpy(values) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, on any device
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=float)


def _window_around(paths, xlim, ylim, margin=0.05):
    """The smallest window containing ``xlim`` x ``ylim`` and every finite point of ``paths``,
    widened by ``margin`` of its span on a side that a path crosses."""
    finite = [p[np.isfinite(p).all(axis=1)] for p in paths]
    points = np.concatenate(finite) if finite else np.empty((0, 2))
    window = []
    for (lo, hi), coords in zip((xlim, ylim), points.T if len(points) else ([], [])):
        new_lo, new_hi = min(lo, *coords, lo), max(hi, *coords, hi)
        span = new_hi - new_lo
        window.append((new_lo - margin * span if new_lo < lo else lo,
                       new_hi + margin * span if new_hi > hi else hi))
    return (tuple(window[0]), tuple(window[1])) if window else (xlim, ylim)


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
    colorbar: bool = True,
    zlabel: str = "loss",
    title: str | None = None,
):
    """Contour plot of ``f(X, Y)`` (vectorized over grids) with optimizer paths drawn on top.

    ``paths`` maps a legend label to a sequence of points of shape (T, 2); each path is drawn as a
    line with its start marked by a circle and its end by a cross. ``log=True`` spaces the contour
    levels logarithmically, which shows narrow valleys better. Where a path leaves the window
    ``xlim`` x ``ylim``, the window grows to hold it (plus a 5 % margin). A colorbar labelled ``zlabel`` gives
    the contours' values; ``title`` names the panel. Returns the axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5))
    paths = {label: _as_numpy(path).reshape(-1, 2) for label, path in (paths or {}).items()}
    xlim, ylim = _window_around(paths.values(), xlim, ylim)
    x = np.linspace(*xlim, resolution)
    y = np.linspace(*ylim, resolution)
    X, Y = np.meshgrid(x, y)
    Z = np.asarray(f(X, Y), dtype=float)
    if log:
        shift = 1e-12 - min(Z.min(), 0.0)
        levels = np.geomspace(Z.min() + shift, Z.max() + shift, levels if np.isscalar(levels) else len(levels)) - shift
    contours = ax.contour(X, Y, Z, levels=levels, cmap="viridis", linewidths=0.8)
    if colorbar:
        ax.figure.colorbar(contours, ax=ax, label=zlabel)   # one equal slot per contour level
    if title:
        ax.set_title(title)
    for label, p in paths.items():
        (line,) = ax.plot(p[:, 0], p[:, 1], ".-", ms=3, lw=1.2, label=label)
        ax.plot(*p[0], "o", color=line.get_color(), ms=6)
        ax.plot(*p[-1], "x", color=line.get_color(), ms=8, mew=2)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    if paths:
        ax.legend(loc="best")
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
        ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return ax
