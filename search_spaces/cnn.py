"""Convolutional space: depth, width per block, kernel, pooling, batch norm, dropout, activation,
cardinality (ResNeXt-style grouped split-transform-merge blocks) and ensemble size.

Works on images ``[C, H, W]`` (2-D convolutions) and signals ``[C, L]`` (1-D convolutions).
"""
from __future__ import annotations

from typing import Any

import optuna

from ._base import (COMMON_KEYS, SearchSpace, SpecError, check_common, check_keys, is_int, is_number, register, require,
                    require_choice)
from ._modules import ACTIVATIONS
from ._suggest import suggest
from .cnn_model import CNN

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


def check(spec: dict[str, Any]) -> dict[str, Any]:
    """Validate a CNN spec and return the keyword arguments of :class:`CNN` (one ensemble member)."""
    check_keys(spec, (*COMMON_KEYS, "blocks", "cardinality", "batch_norm", "activation", "dropout", "hidden"))
    shape, num_classes, _ = check_common(spec)
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
    return {"input_shape": shape, "num_classes": num_classes, "blocks": blocks, "cardinality": cardinality,
            "batch_norm": batch_norm, "activation": activation, "dropout": float(dropout), "hidden": hidden,
            "normalize": spec.get("normalize")}


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


SPACE = register(SearchSpace("cnn", PARAMS, LIMITS, sample, check, CNN, summary))
