"""One call that makes a chapter's random numbers reproducible."""
import random

import numpy as np
import torch


def seed_everything(seed: int = 0) -> np.random.Generator:
    """Seed Python, NumPy and PyTorch (all devices); return a fresh NumPy ``Generator``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA and MPS generators too
    return np.random.default_rng(seed)
