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

    def params(self):
        return [self.W, self.b]

    def grads(self):
        return [self.dW, self.db]


class ReLU:
    def forward(self, x):
        self.positive = x > 0
        return np.where(self.positive, x, 0).astype(x.dtype)

    def backward(self, grad_out):
        return np.where(self.positive, grad_out, 0).astype(grad_out.dtype)

    def params(self):
        return []

    def grads(self):
        return []


class Sigmoid:
    def forward(self, x):
        self.out = 1 / (1 + np.exp(-x))
        return self.out

    def backward(self, grad_out):
        return grad_out * self.out * (1 - self.out)

    def params(self):
        return []

    def grads(self):
        return []


class LayerNorm:
    def __init__(self, gamma, beta, eps=1e-5):
        self.gamma, self.beta, self.eps = gamma, beta, eps

    def forward(self, x):
        mean = x.mean(axis=1, keepdims=True)
        var = x.var(axis=1, keepdims=True)
        self.inv_std = 1 / np.sqrt(var + self.eps)
        self.x_hat = (x - mean) * self.inv_std
        return self.x_hat * self.gamma + self.beta

    def backward(self, grad_out):
        self.dgamma = (grad_out * self.x_hat).sum(axis=0)
        self.dbeta = grad_out.sum(axis=0)
        g = grad_out * self.gamma
        return self.inv_std * (g - g.mean(axis=1, keepdims=True)
                               - self.x_hat * (g * self.x_hat).mean(axis=1, keepdims=True))

    def params(self):
        return [self.gamma, self.beta]

    def grads(self):
        return [self.dgamma, self.dbeta]


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
        return [p for layer in self.layers for p in layer.params()]

    def grads(self):
        return [g for layer in self.layers for g in layer.grads()]


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
