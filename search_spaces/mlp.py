"""Multi-layer perceptron space: depth, width per layer, activation, dropout, batch norm, ensemble size."""
from __future__ import annotations

import math
from typing import Any

import optuna
from torch import nn

from ._base import (COMMON_KEYS, SearchSpace, SpecError, check_common, check_keys, is_int, is_number, register, require,
                    require_choice)
from ._modules import ACTIVATIONS, Ensemble, Normalize
from ._suggest import suggest

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

    def forward(self, x):
        return self.classifier(self.features(self.normalize(x)))


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


def build(spec: dict[str, Any]) -> nn.Module:
    """Build an MLP (or an ensemble of them) from a spec; raises :class:`SpecError` when invalid."""
    check_keys(spec, (*COMMON_KEYS, "hidden", "activation", "dropout", "batch_norm"))
    shape, num_classes, ensemble = check_common(spec)
    hidden = require(spec, "hidden", list)
    if not 1 <= len(hidden) <= LIMITS["depth"][1] or not all(is_int(w) and 4 <= w <= 2048 for w in hidden):
        raise SpecError(f"spec.hidden must list 1-6 layer widths in [4, 2048], got {hidden!r}")
    activation = require_choice(spec, "activation", LIMITS["activation"])
    dropout = spec.get("dropout", 0.0)
    if not is_number(dropout) or not 0.0 <= dropout <= 0.9:
        raise SpecError(f"spec.dropout must be a number in [0, 0.9], got {dropout!r}")
    batch_norm = require_choice(spec, "batch_norm", [False, True])

    def member() -> MLP:
        return MLP(shape, num_classes, hidden, activation, float(dropout), batch_norm, spec.get("normalize"))

    return member() if ensemble == 1 else Ensemble([member() for _ in range(ensemble)])


def summary(spec: dict[str, Any]) -> str:
    text = f"mlp {'-'.join(str(w) for w in spec['hidden'])} {spec['activation']}"
    if spec.get("batch_norm"):
        text += " bn"
    if spec.get("dropout"):
        text += f" do{spec['dropout']:.2f}"
    if spec.get("ensemble", 1) > 1:
        text += f" x{spec['ensemble']} ensemble"
    return text


SPACE = register(SearchSpace("mlp", PARAMS, LIMITS, sample, build, summary))
