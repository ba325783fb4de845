"""The three assignments' cases, in process (fast): the reference passes every case, visible cases
work from their released data alone, judges name common mistakes, and the references agree with
torch where the lecture's form and torch's coincide."""
import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autograder.case import load_cases, test_cells
from autograder.check import run_case

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ["optimizers", "classification", "backprop"]


def loaded(assignment):
    cases, forbidden = load_cases(assignment)
    module = __import__("sys").modules[f"_autograder_{assignment}_cases"]
    return cases, forbidden, module


def reference_ns(module):
    ref = module.ref
    return {name: getattr(ref, name) for name in dir(ref) if not name.startswith("_")}


@pytest.fixture(autouse=True)
def one_blas_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_case_of_the_notebook_exists_and_the_reference_passes_it(assignment):
    cases, _, module = loaded(assignment)
    ids = [c for cell in test_cells(ROOT / "solutions" / assignment / f"{assignment}.ipynb") for c in cell.case_ids]
    assert sorted(ids) == sorted(cases), "test cells and CASES must list the same case ids"
    assert len(ids) == len(set(ids))
    ns = reference_ns(module)
    failures = {cid: msg for cid in ids if (msg := run_case(cid, ns)) is not None}
    assert failures == {}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_each_function_has_a_visible_case_and_visible_cells_hold_only_visible_cases(assignment):
    cases, _, _ = loaded(assignment)
    nb = json.loads((ROOT / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if "check(" not in src or not cell["metadata"].get("nbgrader", {}).get("grade"):
            continue
        visible_part = src.split("### BEGIN HIDDEN TESTS")[0]
        hidden_part = src[len(visible_part):]
        for cid in cases:
            if f'"{cid}"' in visible_part:
                assert cases[cid].visible, f"{cid} is shown to students but not marked visible"
            if f'"{cid}"' in hidden_part:
                assert not cases[cid].visible, f"{cid} is hidden but its data would be released"
    functions = {cid.split(".")[0] for cid in cases}
    assert functions == {cid.split(".")[0] for cid, c in cases.items() if c.visible}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_visible_cases_pass_for_the_reference_from_released_data_alone(assignment, tmp_path, monkeypatch):
    """A student has assignments/<a>/ but no solutions/: check() must work from visible_cases.json."""
    cases, _, module = loaded(assignment)
    monkeypatch.chdir(ROOT / "assignments" / assignment)
    ns = reference_ns(module)
    visible = [cid for cid, c in cases.items() if c.visible]
    assert visible
    for cid in visible:
        assert run_case(cid, ns, root=tmp_path) is None, cid
    hidden = next(cid for cid, c in cases.items() if not c.visible)
    with pytest.raises(LookupError, match="hidden tests run when"):
        run_case(hidden, ns, root=tmp_path)


def test_released_visible_data_gives_the_same_feedback_as_the_cases(tmp_path, monkeypatch):
    """The visible-data judge names the mistake, like the instructor-side judge."""
    _, _, module = loaded("optimizers")
    wrong = {"adam": module.adam_variant(correct=False)}
    expected = run_case("adam.visible", wrong)
    monkeypatch.chdir(ROOT / "assignments" / "optimizers")
    assert run_case("adam.visible", wrong, root=tmp_path) == expected
    assert "no bias correction" in expected


def _wrong_implementations():
    """(assignment, case id, namespace overrides, words the feedback must contain)."""
    opt = loaded("optimizers")[2]
    cls = loaded("classification")[2]
    bp = loaded("backprop")[2]

    def unseeded(n, batch_size, rng, shuffle=True, drop_last=False):
        return opt.ref.minibatch_indices(n, batch_size, np.random.default_rng(), shuffle, drop_last)

    def zero_fit(X, y, num_classes, lr, epochs, batch_size, seed):
        return np.zeros((X.shape[1], num_classes)), np.zeros(num_classes)

    def untrained(X, y, hidden_sizes, lr, epochs, batch_size, seed):
        return bp.ref.train_mlp(X, y, hidden_sizes, lr, 0, batch_size, seed)

    return [
        ("optimizers", "minibatch_indices.shuffle", {"minibatch_indices": unseeded}, "same seed"),
        ("optimizers", "sgd_momentum.float32", {"sgd_momentum": opt.momentum_old_m}, "previous momentum"),
        ("optimizers", "adagrad.float32", {"adagrad": opt.adagrad_root_sum}, "root of the SUM"),
        ("optimizers", "adagrad.large_eps", {"adagrad": opt.adagrad_eps_inside}, "eps is inside the square root"),
        ("optimizers", "rmsprop.float32", {"rmsprop": opt.rmsprop_torch_init}, "torch.optim.RMSprop"),
        ("optimizers", "adam.float32", {"adam": opt.adam_variant(t0=2)}, "bias correction is one step ahead"),
        ("optimizers", "adam.visible", {"adam": opt.adam_variant(t0=0)}, "t starting at 0"),
        ("optimizers", "adam.large_eps", {"adam": opt.adam_variant(eps_inside=True)}, "eps is inside"),
        ("optimizers", "warmup_cosine_lr.values", {"warmup_cosine_lr": opt.warmup_off_by_one}, "(step+1)"),
        ("optimizers", "warmup_cosine_lr.errors", {"warmup_cosine_lr": opt.cosine_from_zero}, "instead of raising"),
        ("optimizers", "transformer_lr.values", {"transformer_lr": opt.noam_sqrt_warmup}, "warmup_steps^−0.5"),
        ("classification", "one_hot.visible", {"one_hot": lambda y, c: np.eye(c, dtype=int)[y]}, "dtype int64"),
        ("classification", "softmax.float32_3d", {"softmax": cls.softmax_axis0}, "wrong axis"),
        ("classification", "softmax.extreme", {"softmax": cls.softmax_naive}, "max-subtraction"),
        ("classification", "log_softmax.extreme", {"log_softmax": cls.log_softmax_naive}, "log(softmax(x))"),
        ("classification", "cross_entropy.random", {"cross_entropy": cls.cross_entropy_sum}, "sum over the batch"),
        ("classification", "cross_entropy_grad.random", {"cross_entropy_grad": cls.grad_sum}, "batch size N"),
        ("classification", "fit_softmax_regression.digits", {"fit_softmax_regression": zero_fit}, "below the required"),
        ("backprop", "Linear.float32", {"Linear": bp.LinearTransposedGrad}, "transposed"),
        ("backprop", "Linear.square", {"Linear": bp.LinearNoTranspose}, "instead of Wᵀ"),
        ("backprop", "ReLU.float32", {"ReLU": bp.ReLUTimesOutput}, "0 elsewhere"),
        ("backprop", "Sigmoid.float32", {"Sigmoid": bp.SigmoidOfInput}, "uses x instead of σ(x)"),
        ("backprop", "softmax_cross_entropy.random", {"softmax_cross_entropy": bp.sce_sum}, "sum over the batch"),
        ("backprop", "MLP.deep", {"Linear": bp.LinearMeanBias}, "averages db"),
        ("backprop", "numerical_gradient.matrix", {"numerical_gradient": bp.forward_difference}, "forward difference"),
        ("backprop", "train_mlp.visible", {"train_mlp": untrained}, "below the required"),
    ]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the wrong variants overflow on purpose
@pytest.mark.parametrize("assignment, case_id, overrides, words", _wrong_implementations(),
                         ids=lambda v: v if isinstance(v, str) and "." in v else "")
def test_judges_name_the_mistake_of_a_wrong_implementation(assignment, case_id, overrides, words):
    ns = {**reference_ns(loaded(assignment)[2]), **overrides}
    message = run_case(case_id, ns)
    assert message is not None and words in message, message


def test_in_place_modification_is_caught_only_by_the_unchanged_args_case():
    opt = loaded("optimizers")[2]

    def inplace_adam(theta, g, state, **kw):
        new, state = opt.ref.adam(theta, g, state, **kw)
        theta[...] = new
        return theta, state

    ns = {"adam": inplace_adam}
    assert run_case("adam.float32", ns) is None
    assert "in place" in run_case("adam.unchanged_args", ns)


def test_fair_variants_pass_torch_and_loops():
    """torch.optim.Adam (float32 tensors) and a per-element loop Adagrad earn every case."""
    def torch_adam(theta, g, state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        if "opt" not in state:
            p = torch.nn.Parameter(torch.tensor(theta))
            state = {"p": p, "opt": torch.optim.Adam([p], lr=lr, betas=(beta1, beta2), eps=eps)}
        with torch.no_grad():
            state["p"].copy_(torch.tensor(theta))
        state["p"].grad = torch.tensor(g)
        state["opt"].step()
        return state["p"].detach().numpy().copy(), state

    def loop_adagrad(theta, g, state, lr=0.01, eps=1e-8):
        out, sums = theta.copy(), state.setdefault("sums", [0.0] * theta.size)
        state["t"] = state.get("t", 0) + 1
        for i in range(theta.size):
            sums[i] += float(g.flat[i]) ** 2
            out.flat[i] = theta.flat[i] - lr * g.flat[i] / ((sums[i] / state["t"]) ** 0.5 + eps)
        return out, state

    cases = loaded("optimizers")[0]
    for fn, impl in [("adam", torch_adam), ("adagrad", loop_adagrad)]:
        for cid in [c for c in cases if c.startswith(fn + ".")]:
            assert run_case(cid, {fn: impl}) is None, cid


# ----------------------------------------------------------------------------- references vs torch
def test_reference_optimizers_match_torch():
    ref = loaded("optimizers")[2].ref
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(25, 3, 4))
    for rule, make, kwargs in [
        (ref.adam, lambda p: torch.optim.Adam([p], lr=0.01, betas=(0.8, 0.99), eps=1e-6),
         dict(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6)),
        (ref.sgd_momentum, lambda p: torch.optim.SGD([p], lr=0.05, momentum=0.7), dict(lr=0.05, lam=0.7)),
    ]:
        theta, state = np.ones((3, 4)), {}
        p = torch.nn.Parameter(torch.ones(3, 4, dtype=torch.float64))
        opt = make(p)
        for g in grads:
            theta, state = rule(theta, g, state, **kwargs)
            p.grad = torch.tensor(g)
            opt.step()
        np.testing.assert_allclose(theta, p.detach().numpy(), rtol=1e-10)


def test_reference_adagrad_is_torch_adagrad_with_the_mean_instead_of_the_sum():
    """The lecture divides by √(mean g²); torch by √(Σ g²): with η·√(t+1) torch matches the lecture."""
    ref = loaded("optimizers")[2].ref
    grads = np.random.default_rng(1).normal(size=(10, 5))
    theta, state = np.zeros(5), {}
    p = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    opt = torch.optim.Adagrad([p], lr=0.1, eps=0.0)
    for t, g in enumerate(grads):
        theta, state = ref.adagrad(theta, g, state, lr=0.1, eps=0.0)
        opt.param_groups[0]["lr"] = 0.1 * np.sqrt(t + 1)
        p.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(theta, p.detach().numpy(), rtol=1e-10)


def test_reference_classification_matches_torch():
    ref = loaded("classification")[2].ref
    rng = np.random.default_rng(2)
    z, y = rng.normal(size=(8, 5)) * 4, rng.integers(0, 5, 8)
    zt = torch.tensor(z, requires_grad=True)
    loss = F.cross_entropy(zt, torch.tensor(y))
    loss.backward()
    assert ref.cross_entropy(z, y) == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(ref.cross_entropy_grad(z, y), zt.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(ref.softmax(z), torch.softmax(torch.tensor(z), -1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(ref.log_softmax(np.array([[1e4, -1e4, 0.0]])),
                               F.log_softmax(torch.tensor([[1e4, -1e4, 0.0]], dtype=torch.float64), -1).numpy())


def test_reference_backprop_matches_autograd():
    ref = loaded("backprop")[2].ref
    rng = np.random.default_rng(3)
    W1, b1, W2, b2 = rng.normal(size=(4, 6)), rng.normal(size=6), rng.normal(size=(6, 3)), rng.normal(size=3)
    x, y = rng.normal(size=(5, 4)), rng.integers(0, 3, 5)
    net = ref.MLP([ref.Linear(W1.copy(), b1.copy()), ref.Sigmoid(), ref.Linear(W2.copy(), b2.copy()), ref.ReLU()])
    loss, grad = ref.softmax_cross_entropy(net.forward(x), y)
    grad_x = net.backward(grad)
    ts = [torch.tensor(a, requires_grad=True) for a in (W1, b1, W2, b2, x)]
    out = torch.relu(torch.sigmoid(ts[4] @ ts[0] + ts[1]) @ ts[2] + ts[3])
    tloss = F.cross_entropy(out, torch.tensor(y))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    for mine, t in zip(net.grads() + [grad_x], ts[:4] + [ts[4]]):
        np.testing.assert_allclose(mine, t.grad.numpy(), rtol=1e-10, atol=1e-14)
    f = lambda v: float(np.sum(np.sin(v) * v))
    v = rng.normal(size=(2, 3))
    before = v.copy()
    np.testing.assert_allclose(ref.numerical_gradient(f, v), np.sin(before) + before * np.cos(before), rtol=1e-8)
    assert np.array_equal(v, before)


# ----------------------------------------------------------------------------- one home for the code
def _definitions(source: str) -> dict[str, str]:
    """Top-level function/class definitions without docstrings, as ast dumps."""
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            for n in ast.walk(node):
                body = getattr(n, "body", None)
                if (isinstance(n, (ast.FunctionDef, ast.ClassDef)) and body and isinstance(body[0], ast.Expr)
                        and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
                    n.body = body[1:] or [ast.Pass()]
            out[node.name] = ast.dump(node)
    return out


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_cells_are_exactly_the_reference_module(assignment):
    nb = json.loads((ROOT / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    cells = "\n".join("".join(c["source"]) for c in nb["cells"]
                      if c["cell_type"] == "code" and c["metadata"].get("nbgrader", {}).get("solution"))
    reference = (ROOT / "solutions" / assignment / "reference.py").read_text()
    assert _definitions(cells) == _definitions(reference)


def test_a_result_that_is_not_plain_data_fails_with_a_message():
    assert "cannot be checked" in run_case("one_hot.visible", {"one_hot": lambda labels, c: object()})


@pytest.mark.parametrize("released", [False, True], ids=["instructor", "student"])
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_an_import_grading_lacks_fails_the_next_check_once(assignment, released, tmp_path, monkeypatch):
    """One rule before and after submission: a module absent from the grader's sandbox (a package
    the assignment does not allow, a file of the student's own) fails the first check after its
    import, by name, once; the same check then judges the code as grading will. Modules the
    sandbox holds are not reported."""
    import autograder.check as check_module
    cases, forbidden, module = loaded(assignment)
    visible = sorted(cid for cid, c in cases.items() if c.visible)
    if released:   # a student's machine: no solutions/, the released data beside the notebook
        monkeypatch.setenv("AUTOGRADER_COURSE", str(tmp_path))
        monkeypatch.chdir(ROOT / "assignments" / assignment)
    monkeypatch.setattr(check_module, "_reported", set())
    absent = ["my_helpers", *forbidden]           # torch, sklearn... where the assignment forbids them
    history = ["", "import numpy as np\nimport math\nfrom matplotlib import pyplot as plt",
               "%matplotlib inline\n" + "\n".join(f"import {m}" for m in absent)]
    ns = {**reference_ns(module), "In": history[:2], "check": check_module.check}
    exec(f"check({visible[0]!r})", ns)                               # allowed imports only: passes
    ns["In"] = history
    with pytest.raises(AssertionError) as err:
        exec(f"check({visible[0]!r})", ns)
    assert str(err.value) == (f"import {', '.join(absent)}: not available when this notebook is graded; "
                              "remove the import and the code that uses it")
    exec(f"check({visible[1]!r})", ns)                               # reported once, then judged
