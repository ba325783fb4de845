"""Pick the device the chapters run on: CUDA, else Apple MPS, else CPU."""
import os

import torch

ENV_VAR = "OPTLAB_DEVICE"
_CHOICES = ("cpu", "cuda", "mps")


def _available(name: str) -> bool:
    if name == "cuda":
        return torch.cuda.is_available()
    if name == "mps":
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    return True


def device() -> torch.device:
    """The best available device, or the one forced by ``OPTLAB_DEVICE=cpu|cuda|mps``.

    Forcing a device that is not available raises ``RuntimeError`` with one sentence saying so.
    """
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced:
        if forced not in _CHOICES:
            raise ValueError(f"{ENV_VAR}={forced!r} is not one of {', '.join(_CHOICES)}.")
        if not _available(forced):
            raise RuntimeError(f"{ENV_VAR}={forced} was requested but no {forced.upper()} device is available on this machine.")
        return torch.device(forced)
    for name in ("cuda", "mps"):
        if _available(name):
            return torch.device(name)
    return torch.device("cpu")
