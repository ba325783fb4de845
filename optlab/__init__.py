"""Plumbing for the book's chapters: device choice, datasets, models, plots, seeding and timing.

The algorithms the course teaches are written out in the chapters themselves; nothing here
implements an optimizer, a loss or a gradient.
"""
from optlab.device import device
from optlab.models import mlp, stacked_forward
from optlab.seed import seed_everything
from optlab.setup import cpu_threads, glue_all
from optlab.timing import Timer

__all__ = ["device", "mlp", "stacked_forward", "seed_everything", "cpu_threads", "glue_all", "Timer"]
