"""optlab.batchtime: the timing protocol behind the batch-size chapter's curve."""
import datetime
import json
import time

import pytest
import torch

from optlab.batchtime import device_name, record, time_updates


def test_calls_and_epoch_bookkeeping():
    calls = []
    curve = time_updates(calls.append, [3, 10, 1], n=10, dev="cpu", repeats=2, max_updates=5, warmup=1)
    # n=10: B=3 -> 4 updates per epoch (3+3+3+1), B=10 -> 1, B=1 -> 10 (only 5 timed per block)
    assert curve["batch_size"] == [3, 10, 1]
    assert curve["updates_per_epoch"] == [4, 1, 10]
    assert curve["epoch_measured"] == [True, True, False]
    assert calls == [3] * (1 + 2 * 4) + [10] * (1 + 2 * 1) + [1] * (1 + 2 * 5)
    for u, e, k in zip(curve["seconds_per_update"], curve["seconds_per_epoch"], curve["updates_per_epoch"]):
        assert e == pytest.approx(u * k)


def test_sleeping_update_is_timed_per_update():
    curve = time_updates(lambda b: time.sleep(0.002 * b), [1, 5], n=5, dev="cpu", repeats=3, max_updates=5, warmup=0)
    # a block of k calls sleeps k * 0.002 * B seconds; dividing by k gives at least 0.002 * B
    assert curve["seconds_per_update"][0] >= 0.002
    assert curve["seconds_per_update"][1] >= 0.010
    assert curve["seconds_per_update"][1] > curve["seconds_per_update"][0]


@pytest.mark.parametrize("bad", [0, 11])
def test_batch_size_outside_dataset_is_refused(bad):
    with pytest.raises(ValueError, match="not in 1..10"):
        time_updates(lambda b: None, [bad], n=10, dev="cpu")


def test_record_says_where_and_when():
    rec = record("cpu", {"batch_size": [1]}, model="m")
    assert rec["device_type"] == "cpu"
    assert rec["device_name"] == device_name("cpu") and rec["device_name"]
    assert rec["torch"] == torch.__version__
    assert rec["model"] == "m" and rec["curve"] == {"batch_size": [1]}
    datetime.date.fromisoformat(rec["date"])
    json.dumps(rec)  # serializable as is
