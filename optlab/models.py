"""Model builders the chapters share (plumbing: the layers themselves are torch's)."""
import torch


def mlp(widths=(40, 100, 100, 10)) -> torch.nn.Sequential:
    """A ReLU multilayer perceptron with the given layer widths, e.g. 40-100-100-10.

    Linear layers initialised as ``torch.nn.Linear`` does; ReLU between them, none after the last.
    """
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [torch.nn.Linear(a, b)] + ([torch.nn.ReLU()] if i < len(widths) - 2 else [])
    return torch.nn.Sequential(*layers)


def stacked_forward(params, x):
    """Logits of M MLPs stacked along dim 0, all at once: ``params`` = [W1, b1, W2, b2, ...] with
    ``W`` of shape (M, fan_in, fan_out) and ``b`` of shape (M, 1, fan_out); ReLU between layers.

    ``x`` is (M, B, fan_in), one batch per model, or (B, fan_in), the same batch for all.
    """
    h = x.expand(len(params[0]), -1, -1) if x.dim() == 2 else x
    for i in range(0, len(params), 2):
        h = torch.baddbmm(params[i + 1], h, params[i])   # b + h @ W for every model at once
        if i + 2 < len(params):
            h = torch.relu(h)
    return h
