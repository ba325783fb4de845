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

from autograder.case import Close, load_cases, test_cells
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
    wrong = {"adamw": module.adamw_variant(decay="l2"), "sgd_momentum": module.momentum_torch_form}
    expected = {cid: run_case(cid, wrong) for cid in ("adamw.visible", "sgd_momentum.schedule")}
    monkeypatch.chdir(ROOT / "assignments" / "optimizers")
    assert {cid: run_case(cid, wrong, root=tmp_path) for cid in expected} == expected
    assert "added to the gradient" in expected["adamw.visible"]
    assert "PyTorch's form" in expected["sgd_momentum.schedule"]


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
        ("optimizers", "sgd_momentum.schedule", {"sgd_momentum": opt.momentum_torch_form}, "PyTorch's form"),
        ("optimizers", "sgd_momentum.float32", {"sgd_momentum": opt.momentum_torch_form}, "PyTorch's form"),
        ("optimizers", "sgd_momentum.nesterov", {"sgd_momentum": opt.momentum_no_nesterov}, "nesterov=True is ignored"),
        ("optimizers", "adamw.float32", {"adamw": opt.adamw_variant(decay="l2")}, "added to the gradient"),
        ("optimizers", "adamw.visible", {"adamw": opt.adamw_variant(decay="none")}, "no weight decay"),
        ("optimizers", "adamw.float32", {"adamw": opt.adamw_variant(decay="unscaled")}, "not scaled by the learning"),
        ("optimizers", "adamw.float32", {"adamw": opt.adamw_variant(t0=2)}, "bias correction is one step ahead"),
        ("optimizers", "adamw.visible", {"adamw": opt.adamw_variant(t0=0)}, "t starting at 0"),
        ("optimizers", "adamw.large_eps", {"adamw": opt.adamw_variant(eps_inside=True)}, "eps is inside"),
        ("optimizers", "clip_grad_norm.float32", {"clip_grad_norm": opt.clip_each}, "its own norm"),
        ("optimizers", "clip_grad_norm.below", {"clip_grad_norm": opt.clip_always}, "scaled up"),
        ("optimizers", "clip_grad_norm.visible", {"clip_grad_norm": opt.clip_norm_after}, "norm after clipping"),
        ("optimizers", "warmup_cosine_lr.values", {"warmup_cosine_lr": opt.warmup_off_by_one}, "(step+1)"),
        ("optimizers", "warmup_cosine_lr.errors", {"warmup_cosine_lr": opt.cosine_from_zero}, "instead of raising"),
        ("classification", "one_hot.visible", {"one_hot": lambda y, c: np.eye(c, dtype=int)[y]}, "dtype int64"),
        ("classification", "softmax.float32_3d", {"softmax": cls.softmax_axis0}, "wrong axis"),
        ("classification", "softmax.extreme", {"softmax": cls.softmax_naive}, "max-subtraction"),
        ("classification", "log_softmax.extreme", {"log_softmax": cls.log_softmax_naive}, "log(softmax(x))"),
        ("classification", "cross_entropy.plain", {"cross_entropy": cls.loss_of(cls.ce_variant(denominator="one"))},
         "sum over the batch"),
        ("classification", "cross_entropy.weighted", {"cross_entropy": cls.loss_of(cls.ce_variant(denominator="n"))},
         "divided by N"),
        ("classification", "cross_entropy.smoothing", {"cross_entropy": cls.loss_of(cls.ce_variant(spread="others"))},
         "other C−1 classes"),
        ("classification", "cross_entropy_grad.float32",
         {"cross_entropy_grad": cls.grad_of(cls.ce_variant(weighted_smoothing=False))}, "ignores the class weights"),
        ("classification", "cross_entropy_grad.weighted", {"cross_entropy_grad": cls.grad_sign}, "sign is flipped"),
        ("classification", "fit_softmax_regression.digits", {"fit_softmax_regression": zero_fit}, "below the required"),
        ("backprop", "Linear.float32", {"Linear": bp.LinearTransposedGrad}, "transposed"),
        ("backprop", "Linear.square", {"Linear": bp.LinearNoTranspose}, "instead of Wᵀ"),
        ("backprop", "ReLU.float32", {"ReLU": bp.ReLUTimesOutput}, "0 elsewhere"),
        ("backprop", "Sigmoid.float32", {"Sigmoid": bp.SigmoidOfInput}, "uses x instead of σ(x)"),
        ("backprop", "softmax_cross_entropy.random", {"softmax_cross_entropy": bp.sce_sum}, "sum over the batch"),
        ("backprop", "MLP.deep", {"Linear": bp.LinearMeanBias}, "averages db"),
        ("backprop", "LayerNorm.float32", {"LayerNorm": bp.layer_norm_variant(backward="constant")}, "as constants"),
        ("backprop", "LayerNorm.square", {"LayerNorm": bp.layer_norm_variant(backward="no_var")}, "through the variance"),
        ("backprop", "LayerNorm.small_variance", {"LayerNorm": bp.layer_norm_variant(eps_outside=True)},
         "inside the square root"),
        ("backprop", "LayerNorm.visible", {"LayerNorm": bp.layer_norm_variant(ddof=1)}, "biased variance"),
        ("backprop", "LayerNorm.float32", {"LayerNorm": bp.layer_norm_variant(axis=0)}, "BatchNorm"),
        ("backprop", "MLP.visible", {"MLP": bp.MLPOnlyLinear}, "leave out the LayerNorm"),
        ("backprop", "MLP.deep", {"LayerNorm": bp.layer_norm_variant(backward="constant")}, "LayerNorm.backward"),
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


def _float32_inputs(obj) -> bool:
    if isinstance(obj, np.ndarray):
        return obj.dtype == np.float32
    if isinstance(obj, dict):
        obj = list(obj.values())
    return isinstance(obj, (list, tuple)) and any(_float32_inputs(x) for x in obj)


def _rules(case) -> set:
    """The rules a Close case holds a function to besides its values: "unchanged" (arguments left
    unchanged) and "float32" (float32 inputs give float32 results within float32 tolerance)."""
    if not isinstance(case.judge, Close):
        return set()
    rules = {"unchanged"} if case.judge.immutable else set()
    return rules | {"float32"} if _float32_inputs(case.inputs(np.random.default_rng(0))) else rules


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_each_hidden_rule_has_a_visible_check_in_its_own_graded_cell(assignment):
    """One rule, one verdict: every graded cell that holds a hidden rule case (arguments unchanged,
    float32 kept) also holds a visible case of that rule with the same judge, and a visible rule case
    sits only in such a cell, so failing it costs exactly the points the hidden case costs."""
    cases, _, _ = loaded(assignment)
    for cell in test_cells(ROOT / "solutions" / assignment / f"{assignment}.ipynb"):
        for rule in ("unchanged", "float32"):
            held = [cid for cid in cell.case_ids if rule in _rules(cases[cid])]
            hidden = [cid for cid in held if not cases[cid].visible]
            visible = [cid for cid in held if cases[cid].visible and cid.split(".")[1].startswith("visible_")]
            assert bool(hidden) == bool(visible), (cell.grade_id, rule, held)
            for cid in visible:
                assert cases[cid].judge in [cases[h].judge for h in hidden], cid  # same tolerance and rule
                assert rule != "unchanged" or cases[cid].requires, f"{cid}: a claim needs value cases"


def _rule_breakers():
    """(assignment, function, rule, namespace overrides): a function right in value that breaks one rule."""
    opt = loaded("optimizers")[2]
    cls = loaded("classification")[2]
    bp = loaded("backprop")[2]

    def inplace_adamw(theta, g, state, **kw):
        new, state = opt.ref.adamw(theta, g, state, **kw)
        theta[...] = new
        return theta, state

    def inplace_clip(grads, max_norm):
        clipped, norm = opt.ref.clip_grad_norm(grads, max_norm)
        for g, c in zip(grads, clipped):
            g[...] = c
        return grads, norm

    def float64_momentum(theta, g, state, lr=0.01, lam=0.9, nesterov=False):
        m = lam * state.get("m", np.zeros(theta.shape)) - lr * g  # np.zeros is float64
        return theta + (lam * m - lr * g if nesterov else m), {"m": m}

    def float64_adamw(theta, g, state, **kw):
        return opt.ref.adamw(theta.astype(np.float64), g.astype(np.float64), state, **kw)

    def inplace_softmax(logits):
        logits -= logits.max(axis=-1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=-1, keepdims=True)
        return logits

    def float64_grad(logits, labels, weight=None, label_smoothing=0.0):
        return cls.ref.cross_entropy_grad(logits.astype(np.float64), labels,
                                          None if weight is None else weight.astype(np.float64), label_smoothing)

    def inplace_sce(logits, labels):
        n = len(labels)
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        loss = -log_p[np.arange(n), labels].mean()
        np.exp(log_p, out=logits)  # the gradient reuses the logits' memory
        logits[np.arange(n), labels] -= 1
        return float(loss), logits / n

    class Float64Sigmoid(bp.ref.Sigmoid):
        def forward(self, x):
            return super().forward(np.asarray(x, dtype=float))

    return [
        ("optimizers", "adamw", "unchanged", {"adamw": inplace_adamw}),
        ("optimizers", "clip_grad_norm", "unchanged", {"clip_grad_norm": inplace_clip}),
        ("optimizers", "sgd_momentum", "float32", {"sgd_momentum": float64_momentum}),
        ("optimizers", "adamw", "float32", {"adamw": float64_adamw}),
        ("classification", "softmax", "unchanged", {"softmax": inplace_softmax}),
        ("classification", "cross_entropy_grad", "float32", {"cross_entropy_grad": float64_grad}),
        ("backprop", "softmax_cross_entropy", "unchanged", {"softmax_cross_entropy": inplace_sce}),
        ("backprop", "Sigmoid", "float32", {"Sigmoid": Float64Sigmoid}),
    ]


RULE_WORDS = {"unchanged": "modified its array arguments in place",
              "float32": "returned dtype float64, expected float32"}


@pytest.mark.parametrize("assignment, fn, rule, overrides", _rule_breakers(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_a_broken_rule_fails_its_visible_check_and_costs_the_points_of_its_hidden_one(
        assignment, fn, rule, overrides, tmp_path, monkeypatch):
    """Modifying an argument in place, or returning float64 for float32 input, fails the function's
    visible check of that rule from the released data alone (a student's machine), under the rule's
    own name and nowhere else; graded, the hidden case of the rule fails too, and the submission
    loses the same points as it did before the visible rule cases existed."""
    from autograder.scoring import credited

    cases, _, module = loaded(assignment)
    ns = {**reference_ns(module), **overrides}
    mine = {cid: case for cid, case in cases.items() if cid.split(".")[0] == fn}
    breaking = {cid for cid, case in mine.items() if rule in _rules(case)}
    assert any(cases[c].visible for c in breaking) and any(not cases[c].visible for c in breaking)

    monkeypatch.chdir(ROOT / "assignments" / assignment)
    seen = {cid: run_case(cid, ns, root=tmp_path) for cid, case in mine.items() if case.visible}
    assert {cid for cid, msg in seen.items() if msg} == {c for c in breaking if cases[c].visible}, seen
    assert all(RULE_WORDS[rule] in msg for msg in seen.values() if msg), seen

    monkeypatch.chdir(ROOT)
    graded = {cid: run_case(cid, ns) for cid in mine}
    assert {cid for cid, msg in graded.items() if msg} == breaking, graded
    assert all(RULE_WORDS[rule] in graded[cid] for cid in breaking)
    cells = [c for c in test_cells(ROOT / "solutions" / assignment / f"{assignment}.ipynb")
             if set(c.case_ids) & set(mine)]
    new = {cid for cid in mine if cases[cid].visible and cid.split(".")[1].startswith("visible_")}

    def lost(without=()):
        kept = {cid: case for cid, case in mine.items() if cid not in without}
        outcomes = credited({cid: {"passed": graded[cid] is None} for cid in kept}, kept)
        return {c.grade_id for c in cells if not all(outcomes[cid]["passed"] for cid in c.case_ids if cid in kept)}

    assert lost() == lost(without=new) != set()


def test_fair_variants_pass_torch_and_loops():
    """torch.optim.AdamW (float32 tensors, its lr set before each step), a per-element loop momentum
    and torch's clip_grad_norm_ on copies earn every case."""
    def torch_adamw(theta, g, state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2):
        p = torch.nn.Parameter(torch.tensor(theta))  # a fresh optimizer on the state kept as arrays
        opt = torch.optim.AdamW([p], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)
        if state:
            opt.load_state_dict({"state": {0: {k: torch.tensor(v) for k, v in state.items()}},
                                 "param_groups": opt.state_dict()["param_groups"]})
        p.grad = torch.tensor(g)
        opt.step()
        return p.detach().numpy().copy(), {k: v.numpy().copy() for k, v in opt.state[p].items()}

    def loop_momentum(theta, g, state, lr=0.01, lam=0.9, nesterov=False):
        out, m = theta.copy(), state.setdefault("m", [0.0] * theta.size)
        for i in range(theta.size):
            m[i] = lam * m[i] - lr * float(g.flat[i])
            out.flat[i] = theta.flat[i] + (lam * m[i] - lr * g.flat[i] if nesterov else m[i])
        return out, state

    def torch_clip(grads, max_norm):
        params = [torch.nn.Parameter(torch.zeros_like(torch.tensor(g))) for g in grads]
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)  # a copy: clip_grad_norm_ scales it in place
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        return [p.grad.numpy() for p in params], float(norm)

    cases = loaded("optimizers")[0]
    for fn, impl in [("adamw", torch_adamw), ("sgd_momentum", loop_momentum), ("clip_grad_norm", torch_clip)]:
        for cid in [c for c in cases if c.startswith(fn + ".")]:
            assert run_case(cid, {fn: impl}) is None, cid


# ----------------------------------------------------------------------------- references vs torch
def test_reference_optimizers_match_torch():
    """AdamW equals torch.optim.AdamW even when the learning rate changes every step; momentum equals
    torch.optim.SGD (plain and Nesterov) while the learning rate is constant; clipping equals
    torch.nn.utils.clip_grad_norm_."""
    ref = loaded("optimizers")[2].ref
    rng = np.random.default_rng(0)
    grads, lrs = rng.normal(size=(25, 3, 4)), rng.uniform(0.001, 0.05, 25)
    for rule, make, kwargs, scheduled in [
        (ref.adamw, lambda p: torch.optim.AdamW([p], lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.3),
         dict(beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.3), True),
        (ref.sgd_momentum, lambda p: torch.optim.SGD([p], lr=0.05, momentum=0.7), dict(lam=0.7), False),
        (ref.sgd_momentum, lambda p: torch.optim.SGD([p], lr=0.05, momentum=0.7, nesterov=True),
         dict(lam=0.7, nesterov=True), False),
    ]:
        theta, state = np.ones((3, 4)), {}
        p = torch.nn.Parameter(torch.ones(3, 4, dtype=torch.float64))
        opt = make(p)
        for g, lr in zip(grads, lrs if scheduled else [0.05] * len(grads)):
            theta, state = rule(theta, g, state, lr=float(lr), **kwargs)
            opt.param_groups[0]["lr"] = float(lr)
            p.grad = torch.tensor(g)
            opt.step()
        np.testing.assert_allclose(theta, p.detach().numpy(), rtol=1e-10)
    for scale in (0.01, 10.0):
        gs = [rng.normal(size=(3, 2)) * scale, rng.normal(size=5) * scale]
        params = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in gs]
        for p, g in zip(params, gs):
            p.grad = torch.tensor(g)
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        clipped, mine = ref.clip_grad_norm(gs, 1.0)
        assert mine == pytest.approx(norm.item(), rel=1e-12)
        for c, p in zip(clipped, params):
            np.testing.assert_allclose(c, p.grad.numpy(), rtol=1e-12)


def test_reference_momentum_under_a_schedule_is_the_lectures_unrolled_sum():
    """With a learning rate per step, the lecture's movement is m^t = -Σ λ^(t-1-i) η^i g^i (each gradient
    scaled by its own step's η); PyTorch's form scales the whole sum by the current η instead."""
    opt = loaded("optimizers")[2]
    rng = np.random.default_rng(1)
    grads, etas, lam = rng.normal(size=(12, 4)), rng.uniform(0.01, 0.2, 12), 0.8
    theta, state, torch_theta, torch_state = np.zeros(4), {}, np.zeros(4), {}
    for t, (g, eta) in enumerate(zip(grads, etas)):
        before = theta
        theta, state = opt.ref.sgd_momentum(theta, g, state, lr=eta, lam=lam)
        unrolled = -sum(lam ** (t - i) * etas[i] * grads[i] for i in range(t + 1))
        np.testing.assert_allclose(theta - before, unrolled, rtol=1e-12)
        torch_theta, torch_state = opt.momentum_torch_form(torch_theta, g, torch_state, lr=eta, lam=lam)
    assert np.abs(torch_theta - theta).max() > 0.01


def test_reference_classification_matches_torch():
    ref = loaded("classification")[2].ref
    rng = np.random.default_rng(2)
    z, y = rng.normal(size=(8, 5)) * 4, rng.integers(0, 5, 8)
    for w, eps in [(None, 0.0), (rng.uniform(0.2, 3.0, 5), 0.0), (None, 0.25), (rng.uniform(0.2, 3.0, 5), 0.1)]:
        zt = torch.tensor(z, requires_grad=True)
        loss = F.cross_entropy(zt, torch.tensor(y), weight=None if w is None else torch.tensor(w), label_smoothing=eps)
        loss.backward()
        assert ref.cross_entropy(z, y, w, eps) == pytest.approx(loss.item(), rel=1e-12)
        np.testing.assert_allclose(ref.cross_entropy_grad(z, y, w, eps), zt.grad.numpy(), rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(ref.softmax(z), torch.softmax(torch.tensor(z), -1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(ref.log_softmax(np.array([[1e4, -1e4, 0.0]])),
                               F.log_softmax(torch.tensor([[1e4, -1e4, 0.0]], dtype=torch.float64), -1).numpy())


def test_reference_backprop_matches_autograd():
    ref = loaded("backprop")[2].ref
    rng = np.random.default_rng(3)
    W1, b1, W2, b2 = rng.normal(size=(4, 6)), rng.normal(size=6), rng.normal(size=(6, 3)), rng.normal(size=3)
    gamma, beta = 1 + 0.3 * rng.normal(size=6), 0.3 * rng.normal(size=6)
    x, y = rng.normal(size=(5, 4)), rng.integers(0, 3, 5)
    net = ref.MLP([ref.Linear(W1.copy(), b1.copy()), ref.LayerNorm(gamma.copy(), beta.copy()), ref.Sigmoid(),
                   ref.Linear(W2.copy(), b2.copy()), ref.ReLU()])
    loss, grad = ref.softmax_cross_entropy(net.forward(x), y)
    grad_x = net.backward(grad)
    ts = [torch.tensor(a, requires_grad=True) for a in (W1, b1, gamma, beta, W2, b2, x)]
    hidden = F.layer_norm(ts[6] @ ts[0] + ts[1], (6,), ts[2], ts[3], eps=1e-5)
    out = torch.relu(torch.sigmoid(hidden) @ ts[4] + ts[5])
    tloss = F.cross_entropy(out, torch.tensor(y))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    for mine, t in zip(net.grads() + [grad_x], ts):
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


def test_cases_load_whole_when_runs_in_threads_load_them_at_once(tmp_path):
    """Two grading runs in threads load one cases.py: neither may see it half-run."""
    import threading

    from autograder.case import import_file
    (tmp_path / "cases.py").write_text("import time\ntime.sleep(0.3)\nCASES = {'a': 1}\n")
    got, barrier = [], threading.Barrier(6)

    def load():
        barrier.wait()
        got.append(getattr(import_file(tmp_path / "cases.py", name="_autograder_threads_case"), "CASES", None))

    threads = [threading.Thread(target=load) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [{"a": 1}] * 6
