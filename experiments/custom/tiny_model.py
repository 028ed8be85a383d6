"""The model of the custom space as a plain torch module: ``nas export`` copies this file's source into model.py.

A model module imports only torch and the standard library, so the exported model runs without robust-nas.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class TinyNet(nn.Module):
    """Normalise -> flatten -> one hidden layer -> logits."""

    def __init__(self, input_shape: list[int], num_classes: int, width: int,
                 normalize: dict[str, list[float]] | None = None) -> None:
        super().__init__()
        channels = input_shape[0]
        normalize = normalize or {"mean": [0.0] * channels, "std": [1.0] * channels}
        view = (1, channels) + (1,) * (len(input_shape) - 1)
        self.register_buffer("mean", torch.tensor(normalize["mean"]).view(view))
        self.register_buffer("std", torch.tensor(normalize["std"]).view(view))
        self.hidden = nn.Linear(math.prod(input_shape), width)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x - self.mean) / self.std).flatten(1)
        return self.classifier(torch.relu(self.hidden(x)))
