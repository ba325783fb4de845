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
