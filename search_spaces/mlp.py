"""Multi-layer perceptron space: depth, width per layer, activation, dropout, batch norm, ensemble size."""
from __future__ import annotations

from typing import Any

import optuna

from ._base import (COMMON_KEYS, SearchSpace, SpecError, check_common, check_keys, is_int, is_number, register, require,
                    require_choice)
from ._modules import ACTIVATIONS
from ._suggest import suggest
from .mlp_model import MLP

PARAMS: dict[str, Any] = {
    "depth": {"low": 1, "high": 3},
    "width": [32, 64, 128, 256],
    "activation": ["relu", "gelu", "tanh"],
    "dropout": {"low": 0.0, "high": 0.5},
    "batch_norm": [False, True],
    "ensemble": {"low": 1, "high": 3},
}
LIMITS: dict[str, Any] = {
    "depth": (1, 6),
    "width": (4, 2048),
    "activation": sorted(ACTIVATIONS),
    "dropout": (0.0, 0.9),
    "batch_norm": [False, True],
    "ensemble": (1, 8),
}


def sample(trial: optuna.Trial, ranges: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sample the architecture keys of an MLP spec (data keys are added by the caller)."""
    r = {**PARAMS, **(ranges or {})}
    depth = suggest(trial, "mlp.depth", r["depth"])
    return {
        "space": "mlp",
        "hidden": [suggest(trial, f"mlp.layer{i}.width", r["width"]) for i in range(depth)],
        "activation": suggest(trial, "mlp.activation", r["activation"]),
        "dropout": round(float(suggest(trial, "mlp.dropout", r["dropout"])), 4),
        "batch_norm": suggest(trial, "mlp.batch_norm", r["batch_norm"]),
        "ensemble": suggest(trial, "mlp.ensemble", r["ensemble"]),
    }


def check(spec: dict[str, Any]) -> dict[str, Any]:
    """Validate an MLP spec and return the keyword arguments of :class:`MLP` (one ensemble member)."""
    check_keys(spec, (*COMMON_KEYS, "hidden", "activation", "dropout", "batch_norm"))
    shape, num_classes, _ = check_common(spec)
    hidden = require(spec, "hidden", list)
    if not 1 <= len(hidden) <= LIMITS["depth"][1] or not all(is_int(w) and 4 <= w <= 2048 for w in hidden):
        raise SpecError(f"spec.hidden must list 1-6 layer widths in [4, 2048], got {hidden!r}")
    activation = require_choice(spec, "activation", LIMITS["activation"])
    dropout = spec.get("dropout", 0.0)
    if not is_number(dropout) or not 0.0 <= dropout <= 0.9:
        raise SpecError(f"spec.dropout must be a number in [0, 0.9], got {dropout!r}")
    batch_norm = require_choice(spec, "batch_norm", [False, True])
    return {"input_shape": shape, "num_classes": num_classes, "hidden": hidden, "activation": activation,
            "dropout": float(dropout), "batch_norm": batch_norm, "normalize": spec.get("normalize")}


def summary(spec: dict[str, Any]) -> str:
    text = f"mlp {'-'.join(str(w) for w in spec['hidden'])} {spec['activation']}"
    if spec.get("batch_norm"):
        text += " bn"
    if spec.get("dropout"):
        text += f" do{spec['dropout']:.2f}"
    if spec.get("ensemble", 1) > 1:
        text += f" x{spec['ensemble']} ensemble"
    return text


SPACE = register(SearchSpace("mlp", PARAMS, LIMITS, sample, check, MLP, summary))
