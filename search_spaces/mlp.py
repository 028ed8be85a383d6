"""Multi-layer perceptron space: depth, width per layer, activation, dropout, batch norm, ensemble size."""
from __future__ import annotations

from typing import Any

import optuna

from ._base import (COMMON_KEYS, SearchSpace, SpecError, check_common, check_keys, default_ranges, is_int, is_number,
                    register, require, require_choice)
from ._modules import ACTIVATIONS
from ._suggest import Pick, extremes, suggest
from .mlp_model import MLP

# The searchable options: default range and hard limits of each (format: SearchSpace.params).
PARAMS: dict[str, dict[str, Any]] = {
    "depth": {"type": int, "default": {"low": 1, "high": 3}, "low": 1, "high": 6, "searchable": True,
              "help": "number of hidden layers"},
    "width": {"type": int, "default": [32, 64, 128, 256], "low": 4, "high": 2048, "searchable": True,
              "help": "units of each hidden layer"},
    "activation": {"type": str, "default": ["relu", "gelu", "tanh"], "choices": sorted(ACTIVATIONS),
                   "searchable": True},
    "dropout": {"type": float, "default": {"low": 0.0, "high": 0.5}, "low": 0.0, "high": 0.9, "searchable": True},
    "batch_norm": {"type": bool, "default": [False, True], "choices": [False, True], "searchable": True},
    "ensemble": {"type": int, "default": {"low": 1, "high": 3}, "low": 1, "high": 8, "searchable": True,
                 "help": "independently trained members whose probabilities are averaged"},
}


def sample(trial: optuna.Trial, ranges: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sample the architecture keys of an MLP spec (data keys are added by the caller)."""
    r = {**default_ranges(PARAMS), **(ranges or {})}
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
    depth, low, high = PARAMS["depth"]["high"], PARAMS["width"]["low"], PARAMS["width"]["high"]
    if not 1 <= len(hidden) <= depth or not all(is_int(w) and low <= w <= high for w in hidden):
        raise SpecError(f"spec.hidden must list 1-{depth} layer widths in [{low}, {high}], got {hidden!r}")
    activation = require_choice(spec, "activation", PARAMS["activation"]["choices"])
    dropout = spec.get("dropout", 0.0)
    if not is_number(dropout) or not PARAMS["dropout"]["low"] <= dropout <= PARAMS["dropout"]["high"]:
        raise SpecError(f"spec.dropout must be a number in [{PARAMS['dropout']['low']}, {PARAMS['dropout']['high']}], "
                        f"got {dropout!r}")
    batch_norm = require_choice(spec, "batch_norm", PARAMS["batch_norm"]["choices"])
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


def anchors(ranges: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The smallest and the largest MLP of the searched ranges as partial trial parameters: fewest (most) layers,
    units per layer and ensemble members; the rest is left to the sampler."""
    r = {**default_ranges(PARAMS), **(ranges or {})}

    def layout(pick: Pick) -> None:
        for i in range(pick("mlp.depth", "depth")):
            pick(f"mlp.layer{i}.width", "width")
        pick("mlp.ensemble", "ensemble")

    return extremes(r, layout)


SPACE = register(SearchSpace("mlp", PARAMS, sample, check, MLP, summary, anchors=anchors))
