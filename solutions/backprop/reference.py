"""Reference solutions of the `backprop` assignment (instructor-only; never released).

The solution cells of backprop.ipynb hold exactly these definitions (a test checks it).
"""
import numpy as np


class Linear:
    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, grad_out):
        self.dW = self.x.T @ grad_out
        self.db = grad_out.sum(axis=0)
        return grad_out @ self.W.T


class ReLU:
    def forward(self, x):
        self.positive = x > 0
        return np.where(self.positive, x, 0).astype(x.dtype)

    def backward(self, grad_out):
        return np.where(self.positive, grad_out, 0).astype(grad_out.dtype)


class Sigmoid:
    def forward(self, x):
        self.out = 1 / (1 + np.exp(-x))
        return self.out

    def backward(self, grad_out):
        return grad_out * self.out * (1 - self.out)


def softmax_cross_entropy(logits, labels):
    n = len(labels)
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(n), labels].mean()
    grad = np.exp(log_p)
    grad[np.arange(n), labels] -= 1
    return float(loss), grad / n


class MLP:
    def __init__(self, layers):
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out):
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def params(self):
        return [p for layer in self.layers if isinstance(layer, Linear) for p in (layer.W, layer.b)]

    def grads(self):
        return [g for layer in self.layers if isinstance(layer, Linear) for g in (layer.dW, layer.db)]


def numerical_gradient(f, x, h=1e-5):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        f_plus = f(x)
        x[i] = old - h
        f_minus = f(x)
        x[i] = old
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


def train_mlp(X, y, hidden_sizes, lr, epochs, batch_size, seed):
    rng = np.random.default_rng(seed)
    sizes = [X.shape[1], *hidden_sizes, int(y.max()) + 1]
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        W = rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_in, fan_out)).astype(X.dtype)
        layers += [Linear(W, np.zeros(fan_out, dtype=X.dtype)), ReLU()]
    model = MLP(layers[:-1])  # no ReLU after the output layer
    for _ in range(epochs):
        order = rng.permutation(len(X))
        for start in range(0, len(X), batch_size):
            idx = order[start:start + batch_size]
            _, grad = softmax_cross_entropy(model.forward(X[idx]), y[idx])
            model.backward(grad)
            for p, g in zip(model.params(), model.grads()):
                p -= lr * g
    return model
