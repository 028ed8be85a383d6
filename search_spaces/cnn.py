"""Convolutional space: depth, width per block, kernel, pooling, batch norm, dropout, activation,
cardinality (ResNeXt-style grouped split-transform-merge blocks), connections between blocks (plain, residual,
DenseNet-style dense) and ensemble size.

Works on images ``[C, H, W]`` (2-D convolutions) and signals ``[C, L]`` (1-D convolutions).
"""
from __future__ import annotations

from typing import Any

import optuna

from ._base import (COMMON_KEYS, SearchSpace, SpecError, check_common, check_keys, default_ranges, is_int, is_number,
                    register, require, require_choice)
from ._modules import ACTIVATIONS
from ._suggest import Pick, extremes, suggest
from .cnn_model import CNN

POOLS = ["max", "avg", "none"]
CONNECTIONS = ["plain", "residual", "dense"]
# The searchable options: default range and hard limits of each (format: SearchSpace.params).
PARAMS: dict[str, dict[str, Any]] = {
    # 8 blocks: on 28x28 inputs a pool after every block is down to 1 pixel by then; a deeper stack of unpooled
    # blocks is past what a CPU trains in a trial's minutes
    "depth": {"type": int, "default": {"low": 1, "high": 3}, "low": 1, "high": 8, "searchable": True,
              "help": "number of convolution blocks"},
    "channels": {"type": int, "default": [8, 16, 32, 48], "low": 4, "high": 256, "searchable": True,
                 "help": "output channels of each block (rounded up to a multiple of the cardinality)"},
    "kernel": {"type": int, "default": [3, 5], "choices": [1, 3, 5, 7], "searchable": True,
               "help": "kernel size of each block"},
    "pool": {"type": str, "default": ["max", "avg"], "choices": POOLS, "searchable": True,
             "help": "pooling after each block"},
    "cardinality": {"type": int, "default": [1, 2, 4, 8], "choices": [1, 2, 4, 8, 16, 32], "searchable": True,
                    "help": "groups of the split-transform-merge blocks (1 = plain convolutions)"},
    "connections": {"type": str, "default": ["plain"], "choices": CONNECTIONS, "searchable": True,
                    "help": "between blocks: plain (a chain), residual (a shortcut around every block) or dense "
                            "(DenseNet: each block sees the concatenated outputs of all earlier blocks of its stage)"},
    "batch_norm": {"type": bool, "default": [True, False], "choices": [False, True], "searchable": True},
    "activation": {"type": str, "default": ["relu", "gelu"], "choices": sorted(ACTIVATIONS), "searchable": True},
    "dropout": {"type": float, "default": {"low": 0.0, "high": 0.5}, "low": 0.0, "high": 0.9, "searchable": True},
    "hidden": {"type": int, "default": [0, 64, 128], "low": 0, "high": 1024, "searchable": True,
               "help": "width of the hidden layer before the classifier (0 = none)"},
    "ensemble": {"type": int, "default": {"low": 1, "high": 3}, "low": 1, "high": 8, "searchable": True,
                 "help": "independently trained members whose probabilities are averaged"},
}


def sample(trial: optuna.Trial, ranges: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sample the architecture keys of a CNN spec (data keys are added by the caller)."""
    r = {**default_ranges(PARAMS), **(ranges or {})}
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
        "connections": suggest(trial, "cnn.connections", r["connections"]),
        "batch_norm": suggest(trial, "cnn.batch_norm", r["batch_norm"]),
        "activation": suggest(trial, "cnn.activation", r["activation"]),
        "dropout": round(float(suggest(trial, "cnn.dropout", r["dropout"])), 4),
        "hidden": suggest(trial, "cnn.hidden", r["hidden"]),
        "ensemble": suggest(trial, "cnn.ensemble", r["ensemble"]),
    }


def check(spec: dict[str, Any]) -> dict[str, Any]:
    """Validate a CNN spec and return the keyword arguments of :class:`CNN` (one ensemble member)."""
    check_keys(spec, (*COMMON_KEYS, "blocks", "cardinality", "connections", "batch_norm", "activation", "dropout",
                      "hidden"))
    shape, num_classes, _ = check_common(spec)
    blocks = require(spec, "blocks", list)
    if not 1 <= len(blocks) <= PARAMS["depth"]["high"]:
        raise SpecError(f"spec.blocks must hold 1-{PARAMS['depth']['high']} blocks, got {len(blocks)}")
    cardinality = require_choice(spec, "cardinality", PARAMS["cardinality"]["choices"])
    low_channels, high_channels = PARAMS["channels"]["low"], PARAMS["channels"]["high"]
    for i, block in enumerate(blocks):
        where = f"spec.blocks[{i}]"
        if not isinstance(block, dict):
            raise SpecError(f"{where} must be a table with channels, kernel and pool")
        check_keys(block, ("channels", "kernel", "pool"), where)
        channels = require(block, "channels", int, where)
        if not low_channels <= channels <= high_channels or channels % cardinality:
            raise SpecError(f"{where}.channels must be in [{low_channels}, {high_channels}] and divisible by "
                            f"cardinality {cardinality}, got {channels}")
        require_choice(block, "kernel", PARAMS["kernel"]["choices"], where)
        require_choice(block, "pool", POOLS, where)
    connections = require_choice({"connections": "plain", **spec}, "connections", CONNECTIONS)  # older specs: plain
    activation = require_choice(spec, "activation", PARAMS["activation"]["choices"])
    batch_norm = require_choice(spec, "batch_norm", PARAMS["batch_norm"]["choices"])
    dropout = spec.get("dropout", 0.0)
    if not is_number(dropout) or not PARAMS["dropout"]["low"] <= dropout <= PARAMS["dropout"]["high"]:
        raise SpecError(f"spec.dropout must be a number in [{PARAMS['dropout']['low']}, {PARAMS['dropout']['high']}], "
                        f"got {dropout!r}")
    hidden = spec.get("hidden", 0)
    if not is_int(hidden) or not PARAMS["hidden"]["low"] <= hidden <= PARAMS["hidden"]["high"]:
        raise SpecError(f"spec.hidden must be an int in [{PARAMS['hidden']['low']}, {PARAMS['hidden']['high']}] "
                        f"(0 = no hidden layer), got {hidden!r}")
    return {"input_shape": shape, "num_classes": num_classes, "blocks": blocks, "cardinality": cardinality,
            "batch_norm": batch_norm, "activation": activation, "dropout": float(dropout), "hidden": hidden,
            "normalize": spec.get("normalize"), "connections": connections}


def summary(spec: dict[str, Any]) -> str:
    blocks = "-".join(f"{b['channels']}k{b['kernel']}{'' if b['pool'] == 'none' else b['pool'][0]}"
                      for b in spec["blocks"])
    text = f"cnn {blocks}"
    if spec.get("cardinality", 1) > 1:
        text += f" card{spec['cardinality']}"
    if spec.get("connections", "plain") != "plain":
        text += f" {spec['connections']}"
    if spec.get("hidden"):
        text += f" fc{spec['hidden']}"
    if spec.get("ensemble", 1) > 1:
        text += f" x{spec['ensemble']} ensemble"
    return text


def anchors(ranges: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The smallest and the largest CNN of the searched ranges as partial trial parameters: fewest (most) blocks,
    channels, kernel size, hidden units and ensemble members; the rest is left to the sampler."""
    r = {**default_ranges(PARAMS), **(ranges or {})}

    def layout(pick: Pick) -> None:
        for i in range(pick("cnn.depth", "depth")):
            pick(f"cnn.block{i}.channels", "channels")
            pick(f"cnn.block{i}.kernel", "kernel")
        pick("cnn.hidden", "hidden")
        pick("cnn.ensemble", "ensemble")

    return extremes(r, layout)


SPACE = register(SearchSpace("cnn", PARAMS, sample, check, CNN, summary, anchors=anchors))
