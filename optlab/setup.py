"""Per-chapter setup that is not the lesson: CPU threads and quiet glue."""
import torch


def cpu_threads(dev=None, threads: int = 1) -> None:
    """Run torch's CPU operations with ``threads`` threads (default one).

    The chapters' models are tiny; one thread does not stall on a busy shared CPU and keeps
    timings steady. Given a ``dev`` that is not the CPU (CUDA, MPS) nothing changes; without one
    the limit always applies (for chapters whose exact checks run on the CPU whatever the device).
    """
    if dev is None or torch.device(dev).type == "cpu":
        torch.set_num_threads(threads)


def glue_all(prefix: str = "", names: dict | None = None, /, **values) -> None:
    """``myst_nb.glue(prefix + name, value, display=False)`` for every ``name=value``.

    Names that are not Python identifiers (``"ratio-epoch"``) go in the ``names`` dict. A NumPy or
    torch scalar is glued as the Python number it holds, so that ``{glue:text}`key:.3f``` can
    format it (its repr, ``np.float64(0.3)`` or ``tensor(0.3)``, is not a number).
    """
    from myst_nb import glue

    for name, value in {**(names or {}), **values}.items():
        if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
            value = value.item()
        glue(f"{prefix}{name}", value, display=False)
