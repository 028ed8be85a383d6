"""Heterogeneous ensembles of stored trials (Neural Ensemble Search, Zaidi et al. 2021): members of any space.

Not searched: ``nas ensemble`` assembles the spec from trained trials and their stored weights. The spec lists the
members' own specs (each validated by its own space; no ensemble inside an ensemble) and, optionally, a positive
weight per member (greedy selection with replacement picks a member several times: its count)::

    {"space": "ensemble", "members": [mlp_spec, cnn_spec], "weights": [2, 1],
     "input_shape": [1, 8, 8], "num_classes": 10, "normalize": {"mean": [0.5], "std": [0.25]}}

``build(spec)`` is ``Ensemble([build(member) for member in members], weights)``: the log of the members' weighted
mean softmax. Its state dict nests each member's under ``members.<i>.``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from torch import nn

from ._base import SearchSpace, SpecError, check_common, check_keys, get, is_number, register, require
from ._modules import Ensemble

NAME = "ensemble"
MAX_MEMBERS = 32
KEYS = ("space", "input_shape", "num_classes", "normalize", "members", "weights")


def sample(trial: optuna.Trial, ranges: dict[str, Any] | None = None) -> dict[str, Any]:
    raise SpecError("the 'ensemble' space is not searched: 'nas ensemble' builds its specs from stored trials")


def check(spec: dict[str, Any]) -> dict[str, Any]:
    """Validate an ensemble spec (every member with its own space's check); return ``Ensemble``'s arguments as data:
    ``{"members": [member spec, ...], "weights": [w, ...]}``."""
    check_keys(spec, KEYS)
    shape, num_classes, _ = check_common(spec)
    members = require(spec, "members", list)
    if not 1 <= len(members) <= MAX_MEMBERS:
        raise SpecError(f"spec.members must list 1-{MAX_MEMBERS} member specs, got {len(members)}")
    for index, member in enumerate(members):
        where = f"spec.members[{index}]"
        if not isinstance(member, dict) or "space" not in member:
            raise SpecError(f"{where} must be a spec (a dict with a 'space' key), got {type(member).__name__}")
        if member["space"] == NAME:
            raise SpecError(f"{where} is an ensemble; members must be single architectures (list their members)")
        try:
            get(member["space"]).check(member)
        except SpecError as error:
            raise SpecError(f"{where}: {error}") from None
        if member["input_shape"] != shape or member["num_classes"] != num_classes:
            raise SpecError(f"{where} has input_shape {member['input_shape']} and num_classes "
                            f"{member['num_classes']}; the ensemble's are {shape} and {num_classes}")
    weights = spec.get("weights", [1] * len(members))
    if not (isinstance(weights, list) and len(weights) == len(members)
            and all(is_number(w) and 0 < w <= 1e6 for w in weights)):
        raise SpecError(f"spec.weights must list one positive number (at most 1e6) per member ({len(members)}), "
                        f"got {weights!r}")
    return {"members": members, "weights": weights}


def summary(spec: dict[str, Any]) -> str:
    """``ensemble: 2x mlp 64 relu + cnn 8-16 max``: each member's own summary, with its weight when not 1."""
    members = spec["members"]
    weights = spec.get("weights", [1] * len(members))
    return "ensemble: " + " + ".join((f"{w:g}x " if w != 1 else "") + get(m["space"]).summary(m)
                                     for m, w in zip(members, weights))


@dataclass(frozen=True)
class EnsembleSpace(SearchSpace):
    """The ``ensemble`` space: ``build`` assembles the members, each built by its own space."""

    def build(self, spec: dict[str, Any]) -> nn.Module:
        arguments = self.check(spec)
        return Ensemble([get(member["space"]).build(member) for member in arguments["members"]], arguments["weights"])


SPACE = register(EnsembleSpace(NAME, {}, sample, check, Ensemble, summary, searchable=False))
