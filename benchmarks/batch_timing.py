"""Record time per update and per epoch against batch size for the batch-size chapter's MLP.

The chapter (book/batch-size.md) plots the committed file ``book/data/batch-timing-cuda.json``
beside the curve it measures live. Record it on a CUDA machine from the repository root:

    python benchmarks/batch_timing.py                 # writes book/data/batch-timing-<device>.json
    python benchmarks/batch_timing.py --out some.json

(outside the project's virtualenv, put the repository root on the path: ``PYTHONPATH=.``).
Needs only torch, numpy and optlab's device and timing plumbing; runs in well under two minutes
on a GPU. Timing does not depend on the values, so the data are random of MNIST-1D's shape:
4000 training examples of 40 features, 10 classes.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from optlab.batchtime import record, time_updates
from optlab.device import device
from optlab.models import mlp

N, D, CLASSES = 4000, 40, 10
WIDTHS = (D, 100, 100, CLASSES)  # the chapter's MLP
LR = 0.05
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000, 4000)


def sgd_updater(model, x, y, lr=LR):
    """update(B): one SGD update on B random rows of (x, y), gathered on the device."""
    params = list(model.parameters())

    def update(b: int):
        idx = torch.randint(len(x), (b,), device=x.device)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= lr * g

    return update


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="JSON file to write (default book/data/batch-timing-<device>.json)")
    parser.add_argument("--repeats", type=int, default=20, help="timed blocks per batch size (median taken)")
    parser.add_argument("--max-updates", type=int, default=200, help="updates per timed block at most")
    args = parser.parse_args(argv)

    dev = device()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.standard_normal((N, D)), dtype=torch.float32, device=dev)
    y = torch.as_tensor(rng.integers(0, CLASSES, N), device=dev)
    model = mlp(WIDTHS).to(dev)

    start = time.perf_counter()
    curve = time_updates(sgd_updater(model, x, y), BATCH_SIZES, N, dev, repeats=args.repeats, max_updates=args.max_updates, warmup=10)
    rec = record(dev, curve, model="MLP " + "-".join(map(str, WIDTHS)) + " ReLU, float32, cross-entropy, plain SGD",
                 dataset=f"random data of MNIST-1D's shape: {N} x {D}, {CLASSES} classes",
                 protocol=f"median over {args.repeats} blocks of up to {args.max_updates} consecutive updates",
                 seconds_total=round(time.perf_counter() - start, 2))
    out = args.out or Path(__file__).resolve().parents[1] / "book" / "data" / f"batch-timing-{dev.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1) + "\n")
    print(f"{rec['device_name']} ({rec['device_type']}), torch {rec['torch']}, {rec['date']}")
    print(f"{'batch':>6} {'ms/update':>10} {'s/epoch':>9}")
    for b, u, e in zip(curve["batch_size"], curve["seconds_per_update"], curve["seconds_per_epoch"]):
        print(f"{b:>6} {1e3 * u:>10.3f} {e:>9.4f}")
    print(f"wrote {out} in {rec['seconds_total']} s")
    return out


if __name__ == "__main__":
    main()
