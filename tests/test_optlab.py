"""Unit tests for the optlab plumbing: device choice, datasets, seeding, timing and plots."""
import os
import stat
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import optlab
import optlab.data
import optlab.plot
from optlab.device import ENV_VAR


# --- device ---------------------------------------------------------------------------------

def test_device_defaults_to_an_available_device(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    dev = optlab.device()
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert dev == torch.device(expected)


def test_device_can_be_forced_to_cpu(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "CPU")
    assert optlab.device() == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_forcing_an_unavailable_device_is_one_clear_sentence(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "cuda")
    with pytest.raises(RuntimeError) as err:
        optlab.device()
    message = str(err.value)
    assert message == f"{ENV_VAR}=cuda was requested but no CUDA device is available on this machine."
    assert "\n" not in message


def test_an_unknown_device_name_is_rejected(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "tpu")
    with pytest.raises(ValueError, match="'tpu' is not one of cpu, cuda, mps"):
        optlab.device()


# --- seeding and timing ---------------------------------------------------------------------

def test_seed_everything_makes_torch_and_numpy_repeat():
    rng = optlab.seed_everything(3)
    a = (torch.randn(4), np.random.rand(3), rng.normal(size=2))
    rng = optlab.seed_everything(3)
    b = (torch.randn(4), np.random.rand(3), rng.normal(size=2))
    assert torch.equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    optlab.seed_everything(4)
    assert not torch.equal(a[0], torch.randn(4))


def test_timer_measures_elapsed_time():
    import time

    with optlab.Timer("cpu") as t:
        time.sleep(0.05)
    assert 0.04 < t.seconds < 1.0


# --- data -----------------------------------------------------------------------------------

@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(optlab.data.CACHE_ENV_VAR, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt by mnist1d to fetch its pickled copy fails the test."""
    import requests

    def refuse(*args, **kwargs):
        raise AssertionError("optlab.data tried to download something")

    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(requests.Session, "request", refuse)


def test_mnist1d_is_generated_offline_and_cached(cache, no_network):
    split = optlab.data.mnist1d(num_samples=200, seed=1)
    assert split.x_train.shape == (160, 40) and split.x_test.shape == (40, 40)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.int64
    assert set(split.y_train.tolist()) <= set(range(10))
    files = list(cache.glob("mnist1d-*.npz"))
    assert len(files) == 1
    again = optlab.data.mnist1d(num_samples=200, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(split, again))


def test_mnist1d_matches_the_library_generator(cache, no_network):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = 200, 1
    reference = make_dataset(args)
    split = optlab.data.mnist1d(num_samples=200, seed=1)
    np.testing.assert_allclose(split.x_train.numpy(), reference["x"], rtol=1e-6)
    np.testing.assert_array_equal(split.y_test.numpy(), reference["y_test"])


def test_mnist1d_does_not_disturb_numpy_global_state(cache):
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    optlab.data.mnist1d(num_samples=100, seed=5)
    assert np.random.rand() == expected


def test_mnist1d_regenerates_a_corrupt_cache_file(cache, no_network):
    first = optlab.data.mnist1d(num_samples=100, seed=2)
    (path,) = cache.glob("mnist1d-*.npz")
    path.write_bytes(b"not a numpy file")
    again = optlab.data.mnist1d(num_samples=100, seed=2)
    assert torch.equal(first.x_train, again.x_train)
    with np.load(path) as f:  # rewritten with good data
        assert f["x"].shape == (80, 40)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_mnist1d_works_with_an_unwritable_cache(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.setenv(optlab.data.CACHE_ENV_VAR, str(ro / "cache"))
    split = optlab.data.mnist1d(num_samples=100, seed=3)
    assert split.x_train.shape == (80, 40)


def test_mnist1d_works_when_the_cache_path_is_not_a_directory(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv(optlab.data.CACHE_ENV_VAR, str(blocker))
    split = optlab.data.mnist1d(num_samples=100, seed=3)
    assert split.x_train.shape == (80, 40)
    assert blocker.read_text().startswith("a file")


def test_digits_split_is_disjoint_and_scaled():
    split = optlab.data.digits(test_fraction=0.25, seed=0)
    assert split.x_train.shape[0] + split.x_test.shape[0] == 1797
    assert split.x_test.shape == (449, 64)
    assert 0.0 <= float(split.x_train.min()) and float(split.x_train.max()) <= 1.0
    rows = {tuple(r) for r in split.x_train.tolist()}
    overlap = sum(tuple(r) in rows for r in split.x_test.tolist())
    assert overlap < 10  # the digits set has a handful of exact duplicate images, no more


# --- plots ----------------------------------------------------------------------------------

def test_surface_draws_contours_and_each_path():
    path_a = np.array([[1.0, 1.0], [0.5, 0.4], [0.1, 0.0]])
    path_b = torch.tensor([[-1.0, 1.0], [-0.2, 0.1]])
    ax = optlab.plot.surface(lambda X, Y: X**2 + 3 * Y**2, (-2, 2), (-2, 2),
                             paths={"a": path_a, "b": path_b})
    assert ax.collections, "no contour drawn"
    labelled = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert set(labelled) == {"a", "b"}
    np.testing.assert_allclose(labelled["a"].get_xydata(), path_a)
    np.testing.assert_allclose(labelled["b"].get_xydata(), path_b.numpy())
    assert ax.get_legend() is not None
    plt.close("all")


def test_surface_log_levels_work_on_a_surface_with_zero_minimum():
    ax = optlab.plot.surface(lambda X, Y: X**2 + Y**2, (-1, 1), (-1, 1), log=True, levels=10)
    assert ax.collections
    plt.close("all")


def test_curves_draw_mean_and_band_for_runs():
    runs = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    ax = optlab.plot.curves({"runs": runs, "single": [3.0, 2.0, 1.0]}, logy=True)
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["runs"].get_ydata(), [2.0, 3.0, 4.0])
    np.testing.assert_allclose(lines["single"].get_ydata(), [3.0, 2.0, 1.0])
    assert len(ax.collections) == 1  # the min..max band of the runs
    assert ax.get_yscale() == "log"
    plt.close("all")


def test_mlp_has_the_given_widths_and_relu_between_layers_only():
    torch.manual_seed(0)
    net = optlab.mlp((40, 100, 100, 10))
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(40, 100), (100, 100), (100, 10)]
    assert [type(m).__name__ for m in net] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert net(torch.zeros(3, 40)).shape == (3, 10)


def test_mlp_draws_the_same_weights_as_the_layers_written_out():
    torch.manual_seed(1)
    ours = optlab.mlp((4, 3, 2))
    torch.manual_seed(1)
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)


def test_cpu_threads_sets_one_thread_on_cpu_only():
    before = torch.get_num_threads()
    try:
        optlab.cpu_threads(torch.device("cpu"))
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        optlab.cpu_threads(torch.device("meta"))      # not the CPU: nothing changes
        assert torch.get_num_threads() == 2
        optlab.cpu_threads()                           # no device: the CPU limit always applies
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_glue_all_glues_each_value_under_its_prefixed_name(monkeypatch):
    import myst_nb

    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.append((name, value, display)))
    optlab.glue_all("ch_", a=1, b=2.5)
    assert calls == [("ch_a", 1, False), ("ch_b", 2.5, False)]
    calls.clear()
    optlab.glue_all("ch-", {"x-y": 3}, z=4)
    assert calls == [("ch-x-y", 3, False), ("ch-z", 4, False)]


def test_glue_all_glues_numpy_and_torch_scalars_as_python_numbers(monkeypatch):
    import myst_nb

    calls = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.update({name: value}))
    optlab.glue_all("", a=np.float64(0.25), b=torch.tensor(3), c=np.arange(2), d="text")
    assert type(calls["a"]) is float and calls["a"] == 0.25
    assert type(calls["b"]) is int and calls["b"] == 3
    assert isinstance(calls["c"], np.ndarray) and calls["d"] == "text"      # arrays and strings as given


def test_stacked_forward_equals_each_mlp_run_alone():
    torch.manual_seed(2)
    nets = [optlab.mlp((5, 4, 3)) for _ in range(3)]
    params = [torch.stack([list(n.parameters())[i].T if i % 2 == 0 else list(n.parameters())[i][None]
                           for n in nets]) for i in range(4)]
    x = torch.randn(7, 5)
    with torch.no_grad():
        expected = torch.stack([n(x) for n in nets])
        torch.testing.assert_close(optlab.stacked_forward(params, x), expected)
        torch.testing.assert_close(optlab.stacked_forward(params, x.expand(3, -1, -1)), expected)


def test_surface_has_a_colorbar_and_a_title():
    ax = optlab.plot.surface(lambda X, Y: X**2 + Y**2, (-1, 1), (-1, 1), title="bowl")
    assert ax.get_title() == "bowl"
    assert len(ax.figure.axes) == 2, "no colorbar axes beside the contour plot"
    assert ax.figure.axes[1].get_ylabel() == "loss"
    plt.close("all")


def test_surface_window_grows_to_hold_every_path():
    path = np.array([[0.0, 0.0], [2.0, -3.0], [np.inf, 0.0]])   # a non-finite point is ignored
    ax = optlab.plot.surface(lambda X, Y: X**2 + Y**2, (-1, 1), (-1, 1), paths={"p": path})
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 == -1 and x1 > 2 and y0 < -3 and y1 == 1
    ax = optlab.plot.surface(lambda X, Y: X**2 + Y**2, (-1, 1), (-1, 1), paths={"p": path[:1]})
    assert ax.get_xlim() == (-1, 1) and ax.get_ylim() == (-1, 1)   # inside: the window is kept
    plt.close("all")


def test_plot_type_is_readable_at_page_width():
    # A figure up to MAX_WIDTH_IN wide, at 100 dpi, is scaled to the ~850 px column; the tick
    # labels must still show at >= 9 pt (1 pt = 4/3 px).
    import matplotlib

    scale = min(1.0, 850 / (optlab.plot.MAX_WIDTH_IN * 100))
    for key in ("xtick.labelsize", "ytick.labelsize", "axes.labelsize"):
        size_pt = matplotlib.font_manager.FontProperties(size=plt.rcParams[key]).get_size_in_points()
        assert size_pt * 100 / 72 * scale * 0.75 >= 9, key


def test_no_chapter_figure_is_wider_than_the_page_allows():
    import re

    from conftest import ROOT

    for chapter in sorted((ROOT / "book").glob("*.md")):
        for width in re.findall(r"figsize=\((\d+(?:\.\d+)?)", chapter.read_text()):
            assert float(width) <= optlab.plot.MAX_WIDTH_IN, f"{chapter.name}: figsize width {width} in"


def test_surfaces_values_and_gradient():
    from optlab import surfaces

    assert surfaces.saddle_loss(0.0, 0.0) == 1.0 and surfaces.saddle_loss(2.0, 0.5) == 0.0
    w = torch.tensor([0.3, -0.7], requires_grad=True)
    surfaces.saddle_loss(w[0], w[1]).backward()          # works on tensors, with autograd
    assert torch.allclose(w.grad, torch.tensor([-2 * -0.7 * (1 + 0.21), -2 * 0.3 * (1 + 0.21)]))
    theta = np.array([[1.5, -0.2], [-8.0, 2.0]])
    h = 1e-6
    for k in range(2):
        e = np.eye(2)[k] * h
        numeric = (surfaces.valley_loss(*(theta + e).T) - surfaces.valley_loss(*(theta - e).T)) / (2 * h)
        np.testing.assert_allclose(surfaces.valley_grad(theta)[:, k], numeric, rtol=1e-6)



def test_valley_loss_stays_finite_and_exact_far_out():
    """A diverging run reaches |theta_2| where cosh overflows: the loss is still A(|t| - log 2)."""
    from optlab import surfaces

    t2 = np.array([19.999, 20.0, 20.001, 800.0, -1e300])
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # no overflow warning
        loss = surfaces.valley_loss(np.zeros_like(t2), t2)
    np.testing.assert_allclose(loss, surfaces.VALLEY_A * (np.abs(t2) - np.log(2.0)), rtol=1e-12)
    assert surfaces.valley_loss(0.0, 1e-70) == 0.0 and surfaces.valley_loss(0.0, 1e-5) > 0


def test_batches_cover_each_epoch_once_and_go_on():
    stream = optlab.data.batches(10, 4, seed=3)
    first = [next(stream) for _ in range(3)]                 # one epoch: 4 + 4 + 2
    assert [len(b) for b in first] == [4, 4, 2]
    assert torch.equal(torch.cat(first).sort().values, torch.arange(10))
    assert len(next(stream)) == 4                            # the next epoch starts
    dropped = optlab.data.batches(10, 4, seed=3, drop_last=True)
    assert [len(next(dropped)) for _ in range(3)] == [4, 4, 4]   # the short batch is skipped
    again = optlab.data.batches(10, 4, seed=3)
    assert all(torch.equal(a, next(again)) for a in first)   # a seed makes it reproducible


def test_batches_match_the_iterator_written_out():
    gen = torch.Generator().manual_seed(0)
    expected = []
    for _ in range(2):
        order = torch.randperm(9, generator=gen)
        expected += [order[s:s + 3] for s in range(0, 9 - 3 + 1, 3)]
    stream = optlab.data.batches(9, 3, seed=0, drop_last=True)
    assert all(torch.equal(e, next(stream)) for e in expected)
