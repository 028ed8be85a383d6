"""The CNN family as plain torch modules (no search code): the exact source ``nas export`` copies into model.py.

Rule for every ``*_model.py``: import only torch, the standard library and ``._modules``, so the exported file runs
without this package and what was trained is what ships.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ._modules import ACTIVATIONS, Normalize

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
_POOL = {("max", 1): nn.MaxPool1d, ("max", 2): nn.MaxPool2d, ("avg", 1): nn.AvgPool1d, ("avg", 2): nn.AvgPool2d}


class ConvBlock(nn.Module):
    """Cardinality 1: conv -> (BN) -> activation. Cardinality c > 1: the ResNeXt block, i.e.
    1x1 conv -> grouped kxk conv with c groups -> 1x1 conv, added to a (projected) shortcut.
    ``residual=True`` gives the cardinality-1 block a (projected) shortcut too (a ResNet basic block of one conv)."""

    def __init__(self, dims: int, c_in: int, c_out: int, kernel: int, cardinality: int, batch_norm: bool,
                 activation: str, residual: bool = False):
        super().__init__()
        conv, norm = _CONV[dims], _BN[dims]

        def bn(c: int) -> nn.Module:
            return norm(c) if batch_norm else nn.Identity()

        self.cardinality = cardinality
        if cardinality == 1:
            self.body = nn.Sequential(conv(c_in, c_out, kernel, padding=kernel // 2, bias=not batch_norm), bn(c_out))
            self.shortcut = None
            if residual:
                self.shortcut = (nn.Identity() if c_in == c_out
                                 else nn.Sequential(conv(c_in, c_out, 1, bias=False), bn(c_out)))
        else:
            self.body = nn.Sequential(
                conv(c_in, c_out, 1, bias=not batch_norm), bn(c_out), ACTIVATIONS[activation](),
                conv(c_out, c_out, kernel, padding=kernel // 2, groups=cardinality, bias=not batch_norm), bn(c_out),
                ACTIVATIONS[activation](),
                conv(c_out, c_out, 1, bias=not batch_norm), bn(c_out),
            )
            self.shortcut = (nn.Identity() if c_in == c_out
                             else nn.Sequential(conv(c_in, c_out, 1, bias=False), bn(c_out)))
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.activation(out)


class DenseBlock(nn.Module):
    """DenseNet-style connectivity: the block's new features are concatenated to its input, so every later block
    of the stage sees the outputs of all earlier ones (``c_in + c_out`` channels out)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.block(x)], dim=1)


class Transition(nn.Module):
    """DenseNet's transition before a pool: a 1x1 conv -> (BN) -> activation that compresses the concatenated
    features of a stage to ``c_out`` channels, so widths do not grow without bound across stages."""

    def __init__(self, dims: int, c_in: int, c_out: int, batch_norm: bool, activation: str) -> None:
        super().__init__()
        self.conv = _CONV[dims](c_in, c_out, 1, bias=not batch_norm)
        self.norm = _BN[dims](c_out) if batch_norm else nn.Identity()
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.norm(self.conv(x)))


class CNN(nn.Module):
    """Normalise -> [ConvBlock -> pool] x depth -> flatten -> (hidden Linear) -> Linear.

    ``connections``: ``plain`` chains the blocks; ``residual`` gives every block a (projected) shortcut;
    ``dense`` concatenates each block's output to its input (DenseBlock) and compresses a stage with a
    Transition wherever it is pooled.
    """

    def __init__(self, input_shape: list[int], num_classes: int, blocks: list[dict[str, Any]], cardinality: int = 1,
                 batch_norm: bool = True, activation: str = "relu", dropout: float = 0.0, hidden: int = 0,
                 normalize: dict[str, list[float]] | None = None, connections: str = "plain") -> None:
        super().__init__()
        dims = len(input_shape) - 1
        channels = input_shape[0]
        normalize = normalize or {"mean": [0.0] * channels, "std": [1.0] * channels}
        self.normalize = Normalize(normalize["mean"], normalize["std"], dims)
        layers: list[nn.Module] = []
        sizes = list(input_shape[1:])
        for block in blocks:
            conv_block = ConvBlock(dims, channels, block["channels"], block["kernel"], cardinality, batch_norm,
                                   activation, residual=connections == "residual")
            if connections == "dense":
                layers.append(DenseBlock(conv_block))
                channels += block["channels"]
            else:
                layers.append(conv_block)
                channels = block["channels"]
            if block["pool"] != "none" and min(sizes) >= 2:  # never pool a map that is already 1 wide
                if connections == "dense":
                    layers.append(Transition(dims, channels, block["channels"], batch_norm, activation))
                    channels = block["channels"]
                layers.append(_POOL[(block["pool"], dims)](2))
                sizes = [size // 2 for size in sizes]
        self.features = nn.Sequential(*layers)
        flat = channels * math.prod(sizes)  # "same" convolutions keep sizes; each pool halves them
        head: list[nn.Module] = [nn.Flatten(), nn.Dropout(dropout)]
        if hidden:
            head += [nn.Linear(flat, hidden), ACTIVATIONS[activation](), nn.Dropout(dropout)]
            flat = hidden
        head.append(nn.Linear(flat, num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))
