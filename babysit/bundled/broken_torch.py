"""A deliberately broken torch model, for ``broken/torch-wrong-backward``.

``WrongSlopeLeakyReLU`` is a custom ``autograd.Function`` whose backward uses
slope 1 instead of ``alpha`` on the negative side (the torch twin of
``broken_layers.WrongSlopeLeakyReLU``). Training still makes progress, which
is why such a bug hides; ``babysit gradcheck`` names the Function. Never use
it for training.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class WrongSlopeLeakyReLU(torch.autograd.Function):
    """Leaky ReLU forward ``where(x > 0, x, alpha * x)``; backward wrongly passes ``dout`` through."""

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        return torch.where(x > 0, x, alpha * x)

    @staticmethod
    def backward(ctx, dout):
        (x,) = ctx.saved_tensors
        return dout * torch.where(x > 0, 1.0, 1.0), None   # BUG: alpha on the negative side


class WrongBackwardNet(nn.Module):
    """Linear(hidden) - WrongSlopeLeakyReLU - Linear(classes), in a custom forward."""

    def __init__(self, input_size: int, num_classes: int, hidden: int, alpha: float):
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.alpha = alpha

    def forward(self, x):
        return self.fc2(WrongSlopeLeakyReLU.apply(self.fc1(x.flatten(1)), self.alpha))


def wrong_backward(input_shape, num_classes, hidden: int = 50, alpha: float = 0.1) -> nn.Module:
    return WrongBackwardNet(math.prod(input_shape), num_classes, hidden, alpha)


__all__ = ["WrongSlopeLeakyReLU", "WrongBackwardNet", "wrong_backward"]
