"""Convolutional space: depth, width per block, kernel, pooling, batch norm, dropout, activation,
cardinality (ResNeXt-style grouped split-transform-merge blocks) and ensemble size.

Works on images ``[C, H, W]`` (2-D convolutions) and signals ``[C, L]`` (1-D convolutions).
"""
from __future__ import annotations

import math
from typing import Any

import optuna
import torch
from torch import nn

from ._base import (COMMON_KEYS, SearchSpace, SpecError, check_common, check_keys, is_int, is_number, register, require,
                    require_choice)
from ._modules import ACTIVATIONS, Ensemble, Normalize
from ._suggest import suggest

POOLS = ["max", "avg", "none"]
PARAMS: dict[str, Any] = {
    "depth": {"low": 1, "high": 3},
    "channels": [8, 16, 32, 48],
    "kernel": [3, 5],
    "pool": ["max", "avg"],
    "cardinality": [1, 2, 4, 8],
    "batch_norm": [True, False],
    "activation": ["relu", "gelu"],
    "dropout": {"low": 0.0, "high": 0.5},
    "hidden": [0, 64, 128],
    "ensemble": {"low": 1, "high": 3},
}
LIMITS: dict[str, Any] = {
    "depth": (1, 5),
    "channels": (4, 256),
    "kernel": [1, 3, 5, 7],
    "pool": POOLS,
    "cardinality": [1, 2, 4, 8, 16, 32],
    "batch_norm": [False, True],
    "activation": sorted(ACTIVATIONS),
    "dropout": (0.0, 0.9),
    "hidden": (0, 1024),
    "ensemble": (1, 8),
}
_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
_POOL = {("max", 1): nn.MaxPool1d, ("max", 2): nn.MaxPool2d, ("avg", 1): nn.AvgPool1d, ("avg", 2): nn.AvgPool2d}


class ConvBlock(nn.Module):
    """Cardinality 1: conv -> (BN) -> activation. Cardinality c > 1: the ResNeXt block, i.e.
    1x1 conv -> grouped kxk conv with c groups -> 1x1 conv, added to a (projected) shortcut."""

    def __init__(self, dims: int, c_in: int, c_out: int, kernel: int, cardinality: int, batch_norm: bool, activation: str):
        super().__init__()
        conv, norm = _CONV[dims], _BN[dims]

        def bn(c: int) -> nn.Module:
            return norm(c) if batch_norm else nn.Identity()

        self.cardinality = cardinality
        if cardinality == 1:
            self.body = nn.Sequential(conv(c_in, c_out, kernel, padding=kernel // 2, bias=not batch_norm), bn(c_out))
            self.shortcut = None
        else:
            self.body = nn.Sequential(
                conv(c_in, c_out, 1, bias=not batch_norm), bn(c_out), ACTIVATIONS[activation](),
                conv(c_out, c_out, kernel, padding=kernel // 2, groups=cardinality, bias=not batch_norm), bn(c_out),
                ACTIVATIONS[activation](),
                conv(c_out, c_out, 1, bias=not batch_norm), bn(c_out),
            )
            self.shortcut = nn.Identity() if c_in == c_out else nn.Sequential(conv(c_in, c_out, 1, bias=False), bn(c_out))
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.activation(out)


class CNN(nn.Module):
    """Normalise -> [ConvBlock -> pool] x depth -> flatten -> (hidden Linear) -> Linear."""

    def __init__(self, input_shape: list[int], num_classes: int, blocks: list[dict[str, Any]], cardinality: int = 1,
                 batch_norm: bool = True, activation: str = "relu", dropout: float = 0.0, hidden: int = 0,
                 normalize: dict[str, list[float]] | None = None) -> None:
        super().__init__()
        dims = len(input_shape) - 1
        channels = input_shape[0]
        normalize = normalize or {"mean": [0.0] * channels, "std": [1.0] * channels}
        self.normalize = Normalize(normalize["mean"], normalize["std"], dims)
        layers: list[nn.Module] = []
        sizes = list(input_shape[1:])
        for block in blocks:
            layers.append(ConvBlock(dims, channels, block["channels"], block["kernel"], cardinality, batch_norm, activation))
            channels = block["channels"]
            if block["pool"] != "none" and min(sizes) >= 2:  # never pool a map that is already 1 wide
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


def sample(trial: optuna.Trial, ranges: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sample the architecture keys of a CNN spec (data keys are added by the caller)."""
    r = {**PARAMS, **(ranges or {})}
    depth = suggest(trial, "cnn.depth", r["depth"])
    cardinality = suggest(trial, "cnn.cardinality", r["cardinality"])
    blocks = []
    for i in range(depth):
        channels = suggest(trial, f"cnn.block{i}.channels", r["channels"])
        # Round up so every block splits evenly into `cardinality` groups.
        channels = -(-channels // cardinality) * cardinality
        blocks.append({
            "channels": channels,
            "kernel": suggest(trial, f"cnn.block{i}.kernel", r["kernel"]),
            "pool": suggest(trial, f"cnn.block{i}.pool", r["pool"]),
        })
    return {
        "space": "cnn",
        "blocks": blocks,
        "cardinality": cardinality,
        "batch_norm": suggest(trial, "cnn.batch_norm", r["batch_norm"]),
        "activation": suggest(trial, "cnn.activation", r["activation"]),
        "dropout": round(float(suggest(trial, "cnn.dropout", r["dropout"])), 4),
        "hidden": suggest(trial, "cnn.hidden", r["hidden"]),
        "ensemble": suggest(trial, "cnn.ensemble", r["ensemble"]),
    }


def build(spec: dict[str, Any]) -> nn.Module:
    """Build a CNN (or an ensemble of them) from a spec; raises :class:`SpecError` when invalid."""
    check_keys(spec, (*COMMON_KEYS, "blocks", "cardinality", "batch_norm", "activation", "dropout", "hidden"))
    shape, num_classes, ensemble = check_common(spec)
    blocks = require(spec, "blocks", list)
    if not 1 <= len(blocks) <= LIMITS["depth"][1]:
        raise SpecError(f"spec.blocks must hold 1-{LIMITS['depth'][1]} blocks, got {len(blocks)}")
    cardinality = require_choice(spec, "cardinality", LIMITS["cardinality"])
    for i, block in enumerate(blocks):
        where = f"spec.blocks[{i}]"
        if not isinstance(block, dict):
            raise SpecError(f"{where} must be a table with channels, kernel and pool")
        check_keys(block, ("channels", "kernel", "pool"), where)
        channels = require(block, "channels", int, where)
        if not 4 <= channels <= 256 or channels % cardinality:
            raise SpecError(f"{where}.channels must be in [4, 256] and divisible by cardinality {cardinality}, got {channels}")
        require_choice(block, "kernel", LIMITS["kernel"], where)
        require_choice(block, "pool", POOLS, where)
    activation = require_choice(spec, "activation", LIMITS["activation"])
    batch_norm = require_choice(spec, "batch_norm", [False, True])
    dropout = spec.get("dropout", 0.0)
    if not is_number(dropout) or not 0.0 <= dropout <= 0.9:
        raise SpecError(f"spec.dropout must be a number in [0, 0.9], got {dropout!r}")
    hidden = spec.get("hidden", 0)
    if not is_int(hidden) or not 0 <= hidden <= 1024:
        raise SpecError(f"spec.hidden must be an int in [0, 1024] (0 = no hidden layer), got {hidden!r}")

    def member() -> CNN:
        return CNN(shape, num_classes, blocks, cardinality, batch_norm, activation, float(dropout), hidden, spec.get("normalize"))

    return member() if ensemble == 1 else Ensemble([member() for _ in range(ensemble)])


def summary(spec: dict[str, Any]) -> str:
    blocks = "-".join(f"{b['channels']}k{b['kernel']}{'' if b['pool'] == 'none' else b['pool'][0]}" for b in spec["blocks"])
    text = f"cnn {blocks}"
    if spec.get("cardinality", 1) > 1:
        text += f" card{spec['cardinality']}"
    if spec.get("hidden"):
        text += f" fc{spec['hidden']}"
    if spec.get("ensemble", 1) > 1:
        text += f" x{spec['ensemble']} ensemble"
    return text


SPACE = register(SearchSpace("cnn", PARAMS, LIMITS, sample, build, summary))
