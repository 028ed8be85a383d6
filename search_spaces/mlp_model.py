"""The MLP family as plain torch modules (no search code): the exact source ``nas export`` copies into model.py.

See ``cnn_model.py`` for the import rule of model modules.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ._modules import ACTIVATIONS, Normalize


class MLP(nn.Module):
    """Flatten -> [Linear -> (BatchNorm) -> activation -> Dropout] x depth -> Linear."""

    def __init__(
        self,
        input_shape: list[int],
        num_classes: int,
        hidden: list[int],
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        normalize: dict[str, list[float]] | None = None,
    ) -> None:
        super().__init__()
        channels = input_shape[0]
        normalize = normalize or {"mean": [0.0] * channels, "std": [1.0] * channels}
        self.normalize = Normalize(normalize["mean"], normalize["std"], len(input_shape) - 1)
        layers: list[nn.Module] = [nn.Flatten()]
        width_in = math.prod(input_shape)
        for width in hidden:
            layers.append(nn.Linear(width_in, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers += [ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width_in = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))
