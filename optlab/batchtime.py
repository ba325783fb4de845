"""Time per update and per epoch against batch size.

One timing protocol shared by the batch-size chapter (its live curve) and
``benchmarks/batch_timing.py`` (the curve recorded on a GPU and committed), so the two curves
measure the same thing. The update itself is passed in; nothing here trains anything.
"""
from __future__ import annotations

import datetime
import math
import platform
import statistics
from collections.abc import Callable, Sequence

import torch

from optlab.timing import Timer


def device_name(dev) -> str:
    """A readable name for ``dev``: the GPU's name on CUDA, else the processor's model name."""
    dev = torch.device(dev)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "mps":
        return "Apple MPS (" + platform.machine() + ")"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def time_updates(
    update: Callable[[int], object],
    batch_sizes: Sequence[int],
    n: int,
    dev,
    repeats: int = 5,
    max_updates: int = 50,
    warmup: int = 3,
) -> dict:
    """Measure ``update(B)`` (one parameter update on a minibatch of ``B`` of ``n`` examples).

    For each batch size: ``warmup`` untimed calls, then ``repeats`` timed blocks of
    ``k = min(ceil(n / B), max_updates)`` consecutive calls, synchronizing ``dev`` only at the
    ends of a block. ``seconds_per_update`` is the median over blocks of block time / ``k``, and
    ``seconds_per_epoch`` is that times ``ceil(n / B)`` updates: a measured epoch when
    ``k == ceil(n / B)`` (``epoch_measured`` True), an extrapolation otherwise.
    Returns a dict of equally long lists keyed by ``batch_size``, ``updates_per_epoch``,
    ``seconds_per_update``, ``seconds_per_epoch``, ``epoch_measured``.
    """
    if repeats < 1 or max_updates < 1 or warmup < 0:
        raise ValueError("repeats and max_updates must be >= 1 and warmup >= 0")
    curve = {k: [] for k in ("batch_size", "updates_per_epoch", "seconds_per_update", "seconds_per_epoch", "epoch_measured")}
    for b in batch_sizes:
        if not 1 <= b <= n:
            raise ValueError(f"batch size {b} is not in 1..{n}")
        per_epoch = math.ceil(n / b)
        k = min(per_epoch, max_updates)
        for _ in range(warmup):
            update(b)
        blocks = []
        for _ in range(repeats):
            with Timer(dev) as t:
                for _ in range(k):
                    update(b)
            blocks.append(t.seconds / k)
        per_update = statistics.median(blocks)
        curve["batch_size"].append(int(b))
        curve["updates_per_epoch"].append(per_epoch)
        curve["seconds_per_update"].append(per_update)
        curve["seconds_per_epoch"].append(per_update * per_epoch)
        curve["epoch_measured"].append(k == per_epoch)
    return curve


def record(dev, curve: dict, **extra) -> dict:
    """The curve with where and when it was measured: device type and name, UTC date, torch version."""
    dev = torch.device(dev)
    return {
        "device_type": dev.type,
        "device_name": device_name(dev),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        **extra,
        "curve": curve,
    }
