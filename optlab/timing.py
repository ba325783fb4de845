"""Wall-clock timing that waits for the GPU, so device work is actually counted."""
import time

import torch


def synchronize(dev) -> None:
    """Block until queued work on ``dev`` has finished (a no-op on the CPU)."""
    dev = torch.device(dev)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


class Timer:
    """Context manager: ``with Timer(dev) as t: ...`` then ``t.seconds``."""

    def __init__(self, dev="cpu"):
        self.dev = torch.device(dev)
        self.seconds = float("nan")

    def __enter__(self):
        synchronize(self.dev)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        synchronize(self.dev)
        self.seconds = time.perf_counter() - self._start
        return False
