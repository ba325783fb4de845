"""Test cases of the `backprop` assignment (instructor-only; never released).

numpy only: torch, autograd, jax and tensorflow are forbidden in student code (the grader reports
`forbidden-import`). Tolerances, per element |out − ref| <= atol + rtol·|ref|: float64 rtol 1e-6; float32
rtol 1e-4 with atol 1e-6. Numerical gradients use h = 1e-4 or 1e-3, where a forward
difference is off by O(h) ≈ 1e-4 relative but two central differences agree to rounding (~1e-12).
MNIST-1D: the reference MLP (40-128-128-10, lr 0.2, 20 epochs, batch 32) reaches 0.653–0.679 test
accuracy over seeds 0–9 (about 1 s per fit); the threshold 0.55 leaves room for other initialisations
while failing a network that did not learn (a linear model reaches about 0.3).
"""
from functools import lru_cache

import numpy as np

from autograder.case import Accuracy, Case, Close, sibling

ref = sibling(__file__, "reference")
# Distributions (with their dependencies) a submission's sandbox holds; any other module is absent.
PACKAGES = ["numpy", "matplotlib", "mnist1d"]
FORBIDDEN_IMPORTS = ["torch", "autograd", "jax", "tensorflow", "sklearn"]

F64 = dict(rtol=1e-6, atol=1e-9)
F32 = dict(rtol=1e-4, atol=1e-6)
MNIST1D_THRESHOLD = 0.55
CLASSES = {"Linear": ref.Linear, "ReLU": ref.ReLU, "Sigmoid": ref.Sigmoid, "LayerNorm": ref.LayerNorm, "MLP": ref.MLP}


def expected_with(driver, names, impls=None):
    """Trusted side: run ``driver`` with the reference classes/functions (or ``impls`` replacing some)."""
    def run(inp):
        from autograder import drivers

        ns = {**CLASSES, **{n: getattr(ref, n) for n in names if n not in CLASSES}, **(impls or {})}
        with np.errstate(all="ignore"):
            return getattr(drivers, driver)(ns, **inp)
    return run


def case(driver, names, inputs, judge, visible=False, timeout=10.0, requires=()):
    return Case(driver=driver, inputs=inputs, expected=expected_with(driver, names), judge=judge,
                visible=visible, timeout=timeout, requires=requires)


def variants(driver, names, wrong):
    return lambda inp: {msg: expected_with(driver, names, impls)(inp)["result"] for msg, impls in wrong.items()}


# ----------------------------------------------------------------------------- layers
class LinearTransposedGrad(ref.Linear):
    def backward(self, grad_out):
        grad_in = super().backward(grad_out)
        self.dW = grad_out.T @ self.x
        return grad_in


class LinearMeanBias(ref.Linear):
    def backward(self, grad_out):
        grad_in = super().backward(grad_out)
        self.db = grad_out.mean(axis=0)
        return grad_in


class LinearNoTranspose(ref.Linear):
    def backward(self, grad_out):
        super().backward(grad_out)
        return grad_out @ self.W


class ReLUTimesOutput(ref.ReLU):
    def forward(self, x):
        self.y = super().forward(x)
        return self.y

    def backward(self, grad_out):
        return grad_out * self.y


class SigmoidOfInput(ref.Sigmoid):
    def forward(self, x):
        self.x = x
        return super().forward(x)

    def backward(self, grad_out):
        return grad_out * self.x * (1 - self.x)


def layer_inputs(cls, n, d_in, d_out=None, dtype=np.float64):
    """Inputs for the ``layer`` driver; activations get x of scale 4 (large |x|, never exactly 0)."""
    def inputs(rng):
        if cls == "Linear":
            args = [rng.normal(size=(d_in, d_out)).astype(dtype), rng.normal(size=d_out).astype(dtype)]
            x, attrs = rng.normal(size=(n, d_in)).astype(dtype), ["dW", "db"]
        else:
            args, x, attrs = [], (4 * rng.normal(size=(n, d_in))).astype(dtype), []
        g = rng.normal(size=(n, d_out or d_in)).astype(dtype)
        return {"cls": cls, "args": args, "x": x, "grad_out": g, "attrs": attrs}
    return inputs


linear_mistakes = variants("layer", [], {
    "the weight gradient is transposed: dW = xᵀ·grad_out has W's shape (in, out)": {"Linear": LinearTransposedGrad},
    "db averages over the batch; it is the sum over the batch (the loss already took the mean)":
        {"Linear": LinearMeanBias},
    "the input gradient uses W instead of Wᵀ: ∂/∂x = grad_out·Wᵀ": {"Linear": LinearNoTranspose},
})
relu_mistakes = variants("layer", [], {
    "backward multiplies by ReLU(x); the derivative is 1 where x > 0 and 0 elsewhere": {"ReLU": ReLUTimesOutput},
})
sigmoid_mistakes = variants("layer", [], {
    "backward uses x instead of σ(x): σ'(x) = σ(x)(1 − σ(x))": {"Sigmoid": SigmoidOfInput},
})

CASES = {
    "Linear.visible": case("layer", [], layer_inputs("Linear", 4, 3, 2), Close(**F64, mistakes=linear_mistakes),
                           visible=True),
    "Linear.float32": case("layer", [], layer_inputs("Linear", 7, 5, 4, np.float32),
                           Close(**F32, mistakes=linear_mistakes)),
    "Linear.square": case("layer", [], layer_inputs("Linear", 6, 5, 5), Close(**F64, mistakes=linear_mistakes)),
    "Linear.unchanged_args": case("layer", [], layer_inputs("Linear", 3, 4, 2),
                                  Close(**F64, immutable=True, mistakes=linear_mistakes),
                                  requires=("Linear.float32", "Linear.square")),
    "Linear.visible_float32": case("layer", [], layer_inputs("Linear", 3, 4, 2, np.float32),
                                   Close(**F32, mistakes=linear_mistakes), visible=True),
    "Linear.visible_unchanged": case("layer", [], layer_inputs("Linear", 3, 4, 2),
                                     Close(**F64, immutable=True, mistakes=linear_mistakes), visible=True,
                                     requires=("Linear.float32", "Linear.square")),
    "ReLU.visible": case("layer", [], layer_inputs("ReLU", 3, 4, None), Close(**F64, mistakes=relu_mistakes),
                         visible=True),
    "ReLU.float32": case("layer", [], layer_inputs("ReLU", 5, 6, None, np.float32),
                         Close(**F32, mistakes=relu_mistakes)),
    "ReLU.visible_float32": case("layer", [], layer_inputs("ReLU", 3, 4, None, np.float32),
                                 Close(**F32, mistakes=relu_mistakes), visible=True),
    "Sigmoid.visible": case("layer", [], layer_inputs("Sigmoid", 3, 4, None),
                            Close(**F64, mistakes=sigmoid_mistakes), visible=True),
    "Sigmoid.float32": case("layer", [], layer_inputs("Sigmoid", 5, 6, None, np.float32),
                            Close(**F32, mistakes=sigmoid_mistakes)),
    "Sigmoid.visible_float32": case("layer", [], layer_inputs("Sigmoid", 3, 4, None, np.float32),
                                    Close(**F32, mistakes=sigmoid_mistakes), visible=True),
    "Sigmoid.extreme": case("layer", [], lambda rng: {
        "cls": "Sigmoid", "args": [], "x": np.array([[-500.0, -30.0, 0.0, 30.0, 500.0]]),
        "grad_out": np.ones((1, 5)), "attrs": []}, Close(**F64, mistakes=sigmoid_mistakes)),
}


# ----------------------------------------------------------------------------- LayerNorm
def layer_norm_variant(axis=1, ddof=0, eps_outside=False, backward="full", dgamma="x_hat"):
    """A LayerNorm with one rule changed (axis 0 normalises over the batch, as BatchNorm does)."""
    class Wrong(ref.LayerNorm):
        def forward(self, x):
            mean = x.mean(axis=axis, keepdims=True)
            std = np.sqrt(x.var(axis=axis, keepdims=True, ddof=ddof) + (0 if eps_outside else self.eps))
            self.inv_std = 1 / (std + self.eps) if eps_outside else 1 / std
            self.x_hat = (x - mean) * self.inv_std
            return self.x_hat * self.gamma + self.beta

        def backward(self, grad_out):
            self.dgamma = (grad_out * self.x_hat).sum(axis=0) if dgamma == "x_hat" else grad_out.sum(axis=0)
            self.dbeta = grad_out.sum(axis=0)
            g = grad_out * self.gamma
            mean_g = g.mean(axis=axis, keepdims=True) if backward != "no_mean" else 0
            var_g = self.x_hat * (g * self.x_hat).mean(axis=axis, keepdims=True) if backward != "no_var" else 0
            return self.inv_std * (g if backward == "constant" else g - mean_g - var_g)
    return Wrong


LAYER_NORM_WRONG = {
    "backward treats the mean and the variance as constants: x̂ depends on every x of the row through "
    "them, ∂L/∂x = (g − mean(g) − x̂·mean(g·x̂))/σ with g = γ·grad_out": layer_norm_variant(backward="constant"),
    "the gradient through the mean is missing: subtract mean(g) over the row": layer_norm_variant(backward="no_mean"),
    "the gradient through the variance is missing: subtract x̂·mean(g·x̂) over the row":
        layer_norm_variant(backward="no_var"),
    "the variance divides by D−1; LayerNorm uses the biased variance, dividing by D": layer_norm_variant(ddof=1),
    "eps is added to σ; it goes inside the square root, √(var + eps)": layer_norm_variant(eps_outside=True),
    "normalised over the batch (axis 0, as BatchNorm does); LayerNorm normalises each row over its D features":
        layer_norm_variant(axis=0),
    "dgamma is the sum of grad_out; it is the sum of grad_out·x̂ (dbeta is the sum of grad_out)":
        layer_norm_variant(dgamma="sum"),
}
layer_norm_mistakes = variants("layer", [], {m: {"LayerNorm": c} for m, c in LAYER_NORM_WRONG.items()})


def layer_norm_inputs(n, d, dtype=np.float64, spread=(0.5, 3.0)):
    """Rows with their own offset and scale (scale drawn from ``spread``; a tiny one makes eps matter)."""
    def inputs(rng):
        x = rng.normal(size=(n, d)) * rng.uniform(*spread, (n, 1)) + rng.normal(0, 3, (n, 1))
        return {"cls": "LayerNorm", "args": [(1 + 0.3 * rng.normal(size=d)).astype(dtype),
                                             (0.3 * rng.normal(size=d)).astype(dtype)],
                "x": x.astype(dtype), "grad_out": rng.normal(size=(n, d)).astype(dtype), "attrs": ["dgamma", "dbeta"]}
    return inputs


CASES |= {
    "LayerNorm.visible": case("layer", [], layer_norm_inputs(3, 4), Close(**F64, mistakes=layer_norm_mistakes),
                              visible=True),
    "LayerNorm.float32": case("layer", [], layer_norm_inputs(6, 8, np.float32), Close(**F32, mistakes=layer_norm_mistakes)),
    "LayerNorm.square": case("layer", [], layer_norm_inputs(5, 5), Close(**F64, mistakes=layer_norm_mistakes)),
    "LayerNorm.small_variance": case("layer", [], layer_norm_inputs(4, 6, spread=(1e-3, 3e-3)),
                                     Close(**F64, mistakes=layer_norm_mistakes)),
    "LayerNorm.unchanged_args": case("layer", [], layer_norm_inputs(3, 5), Close(**F64, immutable=True,
                                     mistakes=layer_norm_mistakes),
                                     requires=("LayerNorm.float32", "LayerNorm.square", "LayerNorm.small_variance")),
    "LayerNorm.visible_float32": case("layer", [], layer_norm_inputs(3, 4, np.float32),
                                      Close(**F32, mistakes=layer_norm_mistakes), visible=True),
    "LayerNorm.visible_unchanged": case("layer", [], layer_norm_inputs(3, 4), Close(**F64, immutable=True,
                                        mistakes=layer_norm_mistakes), visible=True,
                                        requires=("LayerNorm.float32", "LayerNorm.square", "LayerNorm.small_variance")),
}


# ----------------------------------------------------------------------------- softmax_cross_entropy
def sce_sum(logits, labels):
    loss, grad = ref.softmax_cross_entropy(logits, labels)
    return loss * len(labels), grad


def sce_grad_not_mean(logits, labels):
    loss, grad = ref.softmax_cross_entropy(logits, labels)
    return loss, grad * len(labels)


def sce_inputs(n, c, dtype=np.float64, scale=3.0, fixed=None):
    def inputs(rng):
        x = np.array(fixed) if fixed is not None else (rng.normal(size=(n, c)) * scale).astype(dtype)
        return {"fn": "softmax_cross_entropy", "args": [x, rng.integers(0, x.shape[1], x.shape[0])]}
    return inputs


sce_mistakes = variants("call", [], {
    "the loss is the sum over the batch; take the mean": {"softmax_cross_entropy": sce_sum},
    "the gradient is not divided by the batch size N": {"softmax_cross_entropy": sce_grad_not_mean},
})
CASES |= {
    "softmax_cross_entropy.visible": case("call", ["softmax_cross_entropy"], sce_inputs(3, 4),
                                          Close(**F64, mistakes=sce_mistakes), visible=True),
    "softmax_cross_entropy.random": case("call", ["softmax_cross_entropy"], sce_inputs(40, 10),
                                         Close(**F64, immutable=True, mistakes=sce_mistakes)),
    "softmax_cross_entropy.float32": case("call", ["softmax_cross_entropy"], sce_inputs(20, 6, np.float32),
                                          Close(**F32, mistakes=sce_mistakes)),
    "softmax_cross_entropy.extreme": case("call", ["softmax_cross_entropy"],
                                          sce_inputs(0, 0, fixed=[[1e4, -1e4, 0.0], [-1e4, -1e4 + 1, 3.0]]),
                                          Close(**F64, mistakes=sce_mistakes)),
    "softmax_cross_entropy.visible_float32": case("call", ["softmax_cross_entropy"], sce_inputs(3, 4, np.float32),
                                                  Close(**F32, mistakes=sce_mistakes), visible=True),
    "softmax_cross_entropy.visible_unchanged": case("call", ["softmax_cross_entropy"], sce_inputs(3, 4),
                                                    Close(**F64, immutable=True, mistakes=sce_mistakes), visible=True,
                                                    requires=("softmax_cross_entropy.random",)),
}


# ----------------------------------------------------------------------------- MLP
def mlp_inputs(spec, n=5, dtype=np.float64):
    """``spec`` like [4, "ReLU", 3, "LayerNorm", "Sigmoid", 2] with the input width first: layer sizes,
    activations and layer norms."""
    def inputs(rng):
        width, layers, d = spec[0], [], spec[0]
        for item in spec[1:]:
            if item == "LayerNorm":
                layers.append([item, [(1 + 0.3 * rng.normal(size=d)).astype(dtype), (0.3 * rng.normal(size=d)).astype(dtype)]])
            elif isinstance(item, str):
                layers.append([item, []])
            else:
                layers.append(["Linear", [rng.normal(size=(d, item)).astype(dtype), rng.normal(size=item).astype(dtype)]])
                d = item
        return {"layers": layers, "x": rng.normal(size=(n, width)).astype(dtype),
                "grad_out": rng.normal(size=(n, d)).astype(dtype)}
    return inputs


class MLPOnlyLinear(ref.MLP):
    def params(self):
        return [p for layer in self.layers if isinstance(layer, ref.Linear) for p in layer.params()]

    def grads(self):
        return [g for layer in self.layers if isinstance(layer, ref.Linear) for g in layer.grads()]


mlp_mistakes = variants("mlp", [], {
    "the weight gradient is transposed in Linear.backward": {"Linear": LinearTransposedGrad},
    "Linear.backward averages db over the batch; it is the sum": {"Linear": LinearMeanBias},
    "ReLU.backward multiplies by ReLU(x) instead of the 0/1 mask": {"ReLU": ReLUTimesOutput},
    "Sigmoid.backward uses x instead of σ(x)": {"Sigmoid": SigmoidOfInput},
    "LayerNorm.backward treats the mean and the variance as constants":
        {"LayerNorm": layer_norm_variant(backward="constant")},
    "params()/grads() leave out the LayerNorm's γ and β (every layer's params() counts)":
        {"MLP": MLPOnlyLinear},
})
CASES |= {
    "MLP.visible": case("mlp", [], mlp_inputs([3, 4, "LayerNorm", "ReLU", 2]), Close(**F64, mistakes=mlp_mistakes), visible=True),
    "MLP.deep": case("mlp", [], mlp_inputs([6, 8, "LayerNorm", "Sigmoid", 7, "ReLU", 5, "LayerNorm", "ReLU", 3], n=9),
                     Close(**F64, mistakes=mlp_mistakes)),
    "MLP.float32": case("mlp", [], mlp_inputs([5, 6, "LayerNorm", "ReLU", 4], n=4, dtype=np.float32),
                        Close(**F32, mistakes=mlp_mistakes)),
    "MLP.visible_float32": case("mlp", [], mlp_inputs([3, 4, "LayerNorm", "ReLU", 2], dtype=np.float32),
                                Close(**F32, mistakes=mlp_mistakes), visible=True),
}


# ----------------------------------------------------------------------------- numerical_gradient
def forward_difference(f, x, h=1e-5):
    grad, fx = np.zeros_like(x), f(x)
    for i in np.ndindex(x.shape):
        x1 = x.copy()
        x1[i] += h
        grad[i] = (f(x1) - fx) / h
    return grad


def half_central(f, x, h=1e-5):
    return ref.numerical_gradient(f, x.copy(), h) * 2


numgrad_mistakes = variants("numerical_gradient", ["numerical_gradient"], {
    "a forward difference (f(x+h) − f(x))/h; use central differences (f(x+h) − f(x−h))/(2h)":
        {"numerical_gradient": forward_difference},
    "divides by h instead of 2h": {"numerical_gradient": half_central},
})
NUMGRAD = dict(rtol=1e-6, atol=1e-8)


def numgrad_inputs(func, shape, h):
    return lambda rng: {"fn": "numerical_gradient", "func": func, "x": rng.normal(size=shape), "h": h}


CASES |= {
    "numerical_gradient.visible": case("numerical_gradient", ["numerical_gradient"],
                                       numgrad_inputs("weighted_sin", (3,), 1e-4),
                                       Close(**NUMGRAD, mistakes=numgrad_mistakes), visible=True),
    "numerical_gradient.matrix": case("numerical_gradient", ["numerical_gradient"],
                                      numgrad_inputs("quartic", (2, 3), 1e-3),
                                      Close(**NUMGRAD, mistakes=numgrad_mistakes)),
    "numerical_gradient.logsumexp": case("numerical_gradient", ["numerical_gradient"],
                                         numgrad_inputs("logsumexp", (6,), 1e-3),
                                         Close(**NUMGRAD, mistakes=numgrad_mistakes)),
    "numerical_gradient.unchanged_x": case("numerical_gradient", ["numerical_gradient"],
                                           numgrad_inputs("weighted_sin", (2, 2), 1e-4),
                                           Close(**NUMGRAD, immutable=True, mistakes=numgrad_mistakes),
                                           requires=("numerical_gradient.matrix",)),
    "numerical_gradient.visible_unchanged": case("numerical_gradient", ["numerical_gradient"],
                                                 numgrad_inputs("weighted_sin", (3,), 1e-4),
                                                 Close(**NUMGRAD, immutable=True, mistakes=numgrad_mistakes),
                                                 visible=True, requires=("numerical_gradient.matrix",)),
}


# ----------------------------------------------------------------------------- train_mlp
@lru_cache(maxsize=1)
def mnist1d_arrays():
    from optlab.data import mnist1d

    return tuple(t.numpy() for t in mnist1d())


def fresh_mnist1d_test(rng, n=1250):
    """A held-out MNIST-1D set generated from a seed drawn on the trusted side: no submission can
    regenerate it, as it could the published split (seed 42)."""
    from optlab.data import _generate_mnist1d

    data = _generate_mnist1d(n, int(rng.integers(1000, 2**31)))
    return np.concatenate([data["x"], data["x_test"]]), np.concatenate([data["y"], data["y_test"]])


def blobs(rng, n=150):
    centers = np.array([[0.0, 4.0], [4.0, -2.0], [-4.0, -2.0]])
    y = np.arange(n) % 3
    return centers[y] + rng.normal(size=(n, 2)), y


CASES |= {
    "train_mlp.visible": Case(
        "trained_layers", lambda rng: {"fn": "train_mlp", "args": [*blobs(np.random.default_rng(0)), [16]],
                                       "kwargs": {"lr": 0.1, "epochs": 20, "batch_size": 16, "seed": 0}},
        lambda inp: None, Accuracy(threshold=0.95, model="mlp", test_data=lambda inp: blobs(np.random.default_rng(1))),
        visible=True),
    "train_mlp.mnist1d": Case(
        "trained_layers", lambda rng: {"fn": "train_mlp", "args": [*mnist1d_arrays()[:2], [128, 128]],
                                       "kwargs": {"lr": 0.2, "epochs": 20, "batch_size": 32,
                                                  "seed": int(rng.integers(0, 2**31))}},
        lambda inp: None, Accuracy(threshold=MNIST1D_THRESHOLD, model="mlp", test_data=lambda inp: mnist1d_arrays()[2:]),
        timeout=60.0, hidden=fresh_mnist1d_test),
}
