"""A search space, an objective, a data set and a sampler of your own, used by ``custom.toml`` by reference.

Nothing here is installed: with this folder on ``PYTHONPATH`` the config names each one as
``"my_extensions:NAME"``. Packaged, the same objects are found by name through the entry point groups
``robust_nas.spaces``, ``robust_nas.objectives``, ``robust_nas.datasets`` and ``robust_nas.samplers``.
The model itself lives in ``tiny_model.py``, which imports only torch, because ``nas export`` copies its source.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from torch import nn

from objectives import EvaluationContext, Objective, ObjectiveResult, predict_proba
from search_spaces import (COMMON_KEYS, SearchSpace, SpecError, check_common, check_keys, default_ranges, require,
                           suggest)
from tiny_model import TinyNet

# --------------------------------------------------------------------------------------------- search space
# Searchable options, declared like the built-in spaces' (see nas/schema.py): [space] in the config may narrow them.
TINY_PARAMS: dict[str, dict[str, Any]] = {
    "width": {"type": int, "default": {"low": 4, "high": 32}, "low": 2, "high": 512, "searchable": True,
              "help": "units of the hidden layer"},
}


def sample_tiny(trial: optuna.Trial, ranges: dict[str, Any] | None = None) -> dict[str, Any]:
    """The architecture keys of a spec; the search adds the data keys (input shape, classes, normalisation)."""
    ranges = {**default_ranges(TINY_PARAMS), **(ranges or {})}
    return {"space": "tiny", "width": suggest(trial, "tiny.width", ranges["width"])}


def check_tiny(spec: dict[str, Any]) -> dict[str, Any]:
    """Validate a spec (it is data from storage) and return TinyNet's keyword arguments."""
    check_keys(spec, (*COMMON_KEYS, "width"))
    shape, num_classes, _ = check_common(spec)
    width = require(spec, "width", int)
    if not TINY_PARAMS["width"]["low"] <= width <= TINY_PARAMS["width"]["high"]:
        raise SpecError(f"spec.width must be in [2, 512], got {width}")
    return {"input_shape": shape, "num_classes": num_classes, "width": width, "normalize": spec.get("normalize")}


TINY = SearchSpace("tiny", TINY_PARAMS, sample_tiny, check_tiny, TinyNet, lambda spec: f"tiny {spec['width']}")


# --------------------------------------------------------------------------------------------- objective
class Margin(Objective):
    """Mean gap between the top two class probabilities on validation inputs: how decisive the model is."""

    name = "margin"  # the config's table name: [objectives.margin] with class = "my_extensions:Margin"
    direction = "maximize"
    metrics = ("margin", "undecided")
    cost_rank = 3
    description = "mean gap between the two most probable classes"
    params = {"samples": {"type": int, "default": 200, "low": 10, "high": 100000, "help": "validation inputs used"}}

    def _evaluate(self, model: nn.Module, context: EvaluationContext) -> ObjectiveResult:
        x, _ = context.subset(self.options["samples"])
        top2 = predict_proba(model, x, context.device, context.batch_size).topk(2, dim=1).values
        gap = top2[:, 0] - top2[:, 1]
        return ObjectiveResult(value=gap.mean().item(), metrics={"undecided": (gap < 0.1).float().mean().item()})


# --------------------------------------------------------------------------------------------- data set
def load_stripes(options: dict[str, Any]) -> tuple:
    """A loader gets the validated [data] table and returns (x_pool, y_pool, x_test, y_test, class_names, is_image);
    without a test split (None, None) one is carved out of the pool. Here: 1x6x6 images, a bright row or column."""
    rng = np.random.default_rng(options["seed"])
    labels = rng.integers(0, 2, size=options["synthetic_size"])
    images = rng.uniform(0.0, 0.3, size=(len(labels), 1, 6, 6)).astype(np.float32)
    for image, label in zip(images, labels):
        if label:
            image[0, 2, :] += 0.7
        else:
            image[0, :, 2] += 0.7
    return np.clip(images, 0.0, 1.0), labels, None, None, ["row", "column"], True


# --------------------------------------------------------------------------------------------- sampler
def make_sampler(seed: int) -> optuna.samplers.BaseSampler:
    """A sampler factory takes the seed; a BaseSampler subclass whose constructor takes ``seed=`` works too."""
    return optuna.samplers.RandomSampler(seed=seed)
