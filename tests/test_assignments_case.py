"""autograder.case (channel, test-cell parsing, judges) and autograder.drivers, without any assignment."""
import nbformat
import numpy as np
import pytest

from autograder import drivers
from autograder.case import Batches, Close, Raises, decode, encode, judge_from_data, test_cells


# ----------------------------------------------------------------------------- channel
def test_encode_decode_round_trip_keeps_values_dtypes_and_shapes():
    obj = {"a": [np.arange(6, dtype=np.float32).reshape(2, 3), (1, 2.5, None, True, "s")],
           "c": np.array([1 + 2j]), "i": np.array([[1, -2]], dtype=">i4"), "z": np.zeros((0, 3)),
           "s": np.float32(1.5), "inf": [float("inf"), float("nan")],
           "e": {"__error__": "ValueError", "message": "bad"}}
    back = decode(encode(obj))
    assert back["a"][0].dtype == np.float32 and np.array_equal(back["a"][0], obj["a"][0])
    assert back["a"][1] == [1, 2.5, None, True, "s"]  # tuples arrive as lists
    assert back["c"].dtype == np.complex128 and back["c"][0] == 1 + 2j
    assert back["i"].dtype == np.int32 and back["i"].tolist() == [[1, -2]]
    assert back["z"].shape == (0, 3)
    assert back["s"].shape == () and back["s"].dtype == np.float32 and back["s"] == 1.5
    assert back["inf"][0] == float("inf") and np.isnan(back["inf"][1])
    assert back["e"] == {"__error__": "ValueError", "message": "bad"}


@pytest.mark.parametrize("obj", [object(), np.array([object()], dtype=object), {1: 2}, {"__ndarray__": 1},
                                 np.array(["s"]), lambda: 0])
def test_encode_rejects_what_is_not_plain_data(obj):
    with pytest.raises(ValueError):
        encode(obj)


@pytest.mark.parametrize("raw", [
    b'{"__ndarray__": "|O8", "shape": [1], "data": "AAAAAAAAAAA="}',      # object dtype
    b'{"__ndarray__": "<f8", "shape": [2], "data": "AAAAAAAAAAA="}',      # 8 bytes for 2 floats
    b'{"__ndarray__": "<f8", "shape": [1], "data": "AAAAAAAAAAA=", "x": 1}',
    b'{"__error__": "ValueError"}',
    b"\x80\x04\x95",                                                   # pickle bytes
    b"[" * 100_000,
    b"[" * 40 + b"1" + b"]" * 40,                                         # nested too deeply
])
def test_decode_rejects_malformed_or_unsafe_messages(raw):
    with pytest.raises(ValueError):
        decode(raw)


def test_decode_enforces_max_bytes():
    data = encode(np.zeros(1000))
    assert decode(data, max_bytes=len(data)).shape == (1000,)
    with pytest.raises(ValueError, match="exceeds"):
        decode(data, max_bytes=len(data) - 1)


# ----------------------------------------------------------------------------- test cells
def _notebook(tmp_path, *sources):
    nb = nbformat.v4.new_notebook()
    for i, src in enumerate(sources):
        cell = nbformat.v4.new_code_cell(src)
        cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True,
                                     "grade_id": f"t{i}", "points": i + 1, "schema_version": 3}
        nb.cells.append(cell)
    nb.cells.append(nbformat.v4.new_code_cell("x = 1"))  # not a test cell
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_test_cells_reads_ids_and_points_without_executing(tmp_path):
    path = _notebook(tmp_path, 'check("a")\n### BEGIN HIDDEN TESTS\ncheck("b")\ncheck("c")\n### END HIDDEN TESTS')
    (cell,) = test_cells(path)
    assert (cell.grade_id, cell.points, cell.case_ids) == ("t0", 1.0, ("a", "b", "c"))


@pytest.mark.parametrize("source", ['check("a"); import os', "check(name)", 'assert check("a")', "", 'check("a", 1)'])
def test_test_cells_rejects_anything_but_check_calls(tmp_path, source):
    with pytest.raises(ValueError):
        test_cells(_notebook(tmp_path, source))


# ----------------------------------------------------------------------------- judges
def _out(result, error=None, again=None):
    return {"result": result, "error": error, **({} if again is None else {"again": again})}


def test_close_accepts_within_tolerance_and_names_the_matching_mistake():
    exp = {"result": np.array([1.0, 2.0])}
    judge = Close(rtol=1e-5, mistakes=lambda inputs: {"sum instead of mean": np.array([2.0, 4.0])})
    assert judge({}, _out(np.array([1.0, 2.0 + 1e-6])), exp) is None
    assert "sum instead of mean" in judge({}, _out(np.array([2.0, 4.0])), exp)
    msg = judge({}, _out(np.array([1.0, 3.0])), exp)
    assert "relative error" in msg and "Likely" not in msg
    assert "shape" in judge({}, _out(np.array([1.0, 2.0, 3.0])), exp)
    assert "not finite" in judge({}, _out(np.array([np.nan, 2.0])), exp)
    assert "raised NotImplementedError" in judge({}, _out(None, {"__error__": "NotImplementedError", "message": ""}), exp)


def test_close_checks_dtype_and_immutability_when_asked():
    exp = {"result": np.array([1.0], dtype=np.float32)}
    assert "dtype float64, expected float32" in Close()({}, _out(np.array([1.0])), exp)
    assert Close(dtype=False)({}, _out(np.array([1.0])), exp) is None
    same, changed = np.array([1.0], np.float32), np.array([2.0], np.float32)
    assert Close()({}, _out(same, again=changed), exp) is None  # only looked at when asked
    assert Close(immutable=True)({}, _out(same, again=same), exp) is None
    assert "in place" in Close(immutable=True)({}, _out(same, again=changed), exp)
    assert "in place" in Close(immutable=True)({}, _out(same), exp)  # no second result: not credited


def test_judges_round_trip_through_data_without_reference_code():
    judge = Close(rtol=1e-3, mistakes=lambda inputs: {"off by one": np.array([3.0])})
    data = decode(encode(judge.as_data({})))
    rebuilt = judge_from_data(data)
    exp = {"result": np.array([2.0])}
    assert rebuilt({}, _out(np.array([2.0005])), exp) is None
    assert "off by one" in rebuilt({}, _out(np.array([3.0])), exp)
    assert judge_from_data(Raises().as_data({})) == Raises()
    assert judge_from_data(Batches().as_data({})) == Batches()


def test_raises_judge():
    inputs = {"calls": [[[-1], {}], [[5], {"k": 2}]]}
    ok = {"results": [{"result": None, "error": {"__error__": "ValueError", "message": ""}}] * 2}
    assert Raises()(inputs, ok, None) is None
    silent = {"results": [ok["results"][0], {"result": 0.5, "error": None}]}
    assert "returned 0.5 instead of raising ValueError" in Raises()(inputs, silent, None)


# ----------------------------------------------------------------------------- drivers
def test_call_reports_results_errors_and_in_place_changes():
    def scale(x, k=2.0):
        x *= k
        return x

    def boom(x):
        raise KeyError("nope")

    ns = {"scale": scale, "boom": boom}
    out = drivers.call(ns, "scale", [np.ones(2)], {"k": 3.0}, again=True)  # the same array, twice
    assert out["result"].tolist() == [3.0, 3.0] and out["again"].tolist() == [9.0, 9.0]
    assert drivers.call(ns, "boom", [np.ones(2)])["error"]["__error__"] == "KeyError"
    assert drivers.call(ns, "missing", [])["error"]["__error__"] == "NameError"
    assert decode(encode(drivers.call(ns, "scale", [np.ones(2)])))["result"].tolist() == [2.0, 2.0]


def test_optimizer_trajectory_runs_gradient_descent_on_the_quadratic():
    def gd(theta, g, state, lr=0.1):
        state["t"] = state.get("t", 0) + 1
        return theta - lr * g, state

    A, b = np.diag([1.0, 2.0]), np.array([1.0, 0.0])
    out = drivers.optimizer_trajectory({"gd": gd}, "gd", np.zeros(2, np.float32), A, b, 3, {"lr": 0.5})
    theta, expected = np.zeros(2), []
    for _ in range(3):
        theta = theta - 0.5 * (A @ theta - b)
        expected.append(theta)
    assert out["error"] is None and "again" not in out
    assert out["result"].dtype == np.float32 and np.allclose(out["result"], expected)


def test_optimizer_trajectory_passes_the_learning_rate_of_each_step():
    seen = []

    def gd(theta, g, state, lr=0.1):
        seen.append(lr)
        return theta - lr * g, state

    A, b, lrs = np.eye(2), np.ones(2), [0.5, 0.25, 0.125]
    out = drivers.optimizer_trajectory({"gd": gd}, "gd", np.zeros(2), A, b, 3, {"lr": 9.0}, lrs=lrs, again=True)
    theta, expected = np.zeros(2), []
    for lr in lrs:
        theta = theta - lr * (A @ theta - b)
        expected.append(theta)
    assert seen == [0.5, 0.5, 0.25, 0.25, 0.125, 0.125]  # the second call of a step gets the same rate
    assert np.allclose(out["result"], expected) and np.allclose(out["again"], expected)


def test_optimizer_trajectory_reports_in_place_update_and_bad_state():
    def inplace(theta, g, state, lr=0.1):
        theta -= lr * g
        return theta, state

    def no_state(theta, g, state):
        return theta, None

    def reuses_its_state(theta, g, state, lr=0.1):  # its own buffers: fine
        m = state.setdefault("m", np.zeros_like(theta))
        m *= 0.5
        m += g
        return theta - lr * m, state

    args = (np.ones(3), np.eye(3), np.zeros(3), 2)
    out = drivers.optimizer_trajectory({"f": inplace}, "f", *args, again=True)
    assert not np.allclose(out["result"], out["again"])  # the second call saw the changed theta
    out = drivers.optimizer_trajectory({"f": reuses_its_state}, "f", *args, again=True)
    assert np.array_equal(out["result"], out["again"])
    assert drivers.optimizer_trajectory({"f": no_state}, "f", *args)["error"]["__error__"] == "TypeError"


def test_minibatches_and_batches_judge():
    def good(n, batch_size, rng, shuffle=True, drop_last=False):
        idx = rng.permutation(n) if shuffle else np.arange(n)
        stop = n - n % batch_size if drop_last else n
        return [idx[i:i + batch_size] for i in range(0, stop, batch_size)]

    def unseeded(n, batch_size, rng, shuffle=True, drop_last=False):
        return good(n, batch_size, np.random.default_rng(), shuffle, drop_last)

    inputs = {"n": 23, "batch_size": 5, "shuffle": True, "drop_last": False, "seeds": [1, 1, 2]}
    assert Batches()(inputs, drivers.minibatches({"f": good}, "f", **inputs), None) is None
    assert "same seed" in Batches()(inputs, drivers.minibatches({"f": unseeded}, "f", **inputs), None)
    inputs["drop_last"] = True
    assert Batches()(inputs, drivers.minibatches({"f": good}, "f", **inputs), None) is None


def test_mlp_driver_orders_gradients_like_the_layer_arguments():
    class Lin:
        def __init__(self, W, b):
            self.W, self.b = W, b

        def forward(self, x):
            self.x = x
            return x @ self.W + self.b

        def backward(self, g):
            self.dW, self.db = self.x.T @ g, g.sum(0)
            return g @ self.W.T

    class Net:
        def __init__(self, layers):
            self.layers = layers

        def forward(self, x):
            for lay in self.layers:
                x = lay.forward(x)
            return x

        def backward(self, g):
            for lay in reversed(self.layers):
                g = lay.backward(g)
            return g

        def params(self):  # deliberately not in layer order
            return [p for lay in reversed(self.layers) for p in (lay.b, lay.W)]

        def grads(self):
            return [p for lay in reversed(self.layers) for p in (lay.db, lay.dW)]

    rng = np.random.default_rng(0)
    W1, b1, W2, b2 = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(4, 2)), rng.normal(size=2)
    x, g = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    out = drivers.mlp({"MLP": Net, "Linear": Lin}, [["Linear", [W1, b1]], ["Linear", [W2, b2]]], x, g)
    h = x @ W1 + b1
    gh = g @ W2.T
    assert np.allclose(out["result"]["grads"][0], x.T @ gh) and np.allclose(out["result"]["grads"][3], g.sum(0))
    assert np.allclose(out["result"]["grads"][2], h.T @ g)


def test_batches_judge_needs_every_run_and_the_rng_even_with_drop_last():
    inputs = {"n": 40, "batch_size": 8, "shuffle": True, "drop_last": True, "seeds": [1, 1, 2]}
    fixed = [np.arange(40)[::-1][i:i + 8] for i in range(0, 40, 8)]  # ignores rng
    assert "expected 3 runs" in Batches()(inputs, {"runs": [], "error": None}, None)
    assert "use the rng argument" in Batches()(inputs, {"runs": [fixed] * 3, "error": None}, None)


def test_decode_refuses_too_many_values_before_parsing():
    with pytest.raises(ValueError, match="values in one message"):
        decode(b"[" + b"{}," * 300_000 + b"{}]")
    assert decode(b'["a\\r\\nb"]', clean=False) == ["a\r\nb"]  # trusted frames arrive unchanged
    assert "\r" not in decode(b'["a\\r\\nb"]')[0]  # a submission's text is cleaned
