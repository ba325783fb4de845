"""Plumbing for the book's chapters: device choice, datasets, plots, seeding and timing.

The algorithms the course teaches are written out in the chapters themselves; nothing here
implements an optimizer, a loss or a gradient.
"""
from optlab.device import device
from optlab.seed import seed_everything
from optlab.timing import Timer

__all__ = ["device", "seed_everything", "Timer"]
