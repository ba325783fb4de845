"""Datasets for the chapters, all made or shipped locally: nothing is downloaded.

* :func:`mnist1d` generates MNIST-1D with ``mnist1d.make_dataset`` (never its download path) and
  caches the arrays in a per-user cache directory, so later calls take milliseconds.
* :func:`digits` loads scikit-learn's bundled 8x8 digits.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import platformdirs
import torch

CACHE_ENV_VAR = "OPTLAB_CACHE"


class Split(NamedTuple):
    """Train and test tensors: inputs float32 of shape (N, D), labels int64 of shape (N,)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def to(self, dev) -> "Split":
        return Split(*(t.to(dev) for t in self))


def cache_dir() -> Path:
    """Where generated data is kept: ``$OPTLAB_CACHE`` or the per-user cache directory."""
    return Path(os.environ.get(CACHE_ENV_VAR) or platformdirs.user_cache_dir("optlab"))


def _mnist1d_args(num_samples: int, seed: int):
    from mnist1d.data import get_dataset_args

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    return args


def _generate_mnist1d(num_samples: int, seed: int) -> dict[str, np.ndarray]:
    from mnist1d.data import make_dataset

    state = np.random.get_state()  # make_dataset reseeds NumPy's global generator; restore it
    try:
        data = make_dataset(_mnist1d_args(num_samples, seed))
    finally:
        np.random.set_state(state)
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


def _save_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` via a temporary file; an unwritable cache is not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            np.savez(f, **arrays)
        os.replace(f.name, path)
    except OSError:
        pass


def mnist1d(num_samples: int = 5000, seed: int = 42, dev="cpu") -> Split:
    """MNIST-1D (Greydanus 2020): 40-sample 1-D signals of the ten digits, 80 % train / 20 % test.

    The defaults are the dataset's published settings (4000 train, 1000 test).
    """
    key = hashlib.sha256(json.dumps([num_samples, seed, "mnist1d-0.0.2"]).encode()).hexdigest()[:16]
    path = cache_dir() / f"mnist1d-{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError):  # missing or corrupt cache: generate again
        arrays = _generate_mnist1d(num_samples, seed)
        _save_atomically(path, arrays)
    split = Split(
        torch.as_tensor(arrays["x"], dtype=torch.float32),
        torch.as_tensor(arrays["y"], dtype=torch.int64),
        torch.as_tensor(arrays["x_test"], dtype=torch.float32),
        torch.as_tensor(arrays["y_test"], dtype=torch.int64),
    )
    return split.to(dev)


def digits(test_fraction: float = 0.25, seed: int = 0, dev="cpu") -> Split:
    """scikit-learn's 8x8 digits (1797 images, 64 features scaled to [0, 1]), split at random."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    x = torch.as_tensor(x / 16.0, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.int64)
    return Split(x[train], y[train], x[test], y[test]).to(dev)


def batches(n: int, batch_size: int, seed: int | None = None, drop_last: bool = False):
    """Endless minibatches of indices into ``n`` examples: each epoch a fresh random order of
    0..n-1 cut into consecutive batches (the iterator of the batch-size chapter, epoch after
    epoch). ``seed`` gives the stream its own generator; without it torch's global one is used.
    ``drop_last`` skips an epoch's last batch when it is shorter than ``batch_size``.
    """
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=gen)
        stop = n - batch_size + 1 if drop_last else n
        yield from (order[s:s + batch_size] for s in range(0, stop, batch_size))
