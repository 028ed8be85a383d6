"""Accuracy (top-1) and how it is shared out: per class, and per subgroup when the data labels groups.

An average hides the classes (or the people) a model fails: the seed paper's first hazard is performance
"up to 10x worse" for some groups. So besides the accuracy this reports the worst per-class accuracy and the
largest gap between classes and, when the data carries subgroup labels (``context.groups``), the same per group.

Intervals (95%): Wilson for the accuracy and each per-class/per-group accuracy (``worst_class`` is the Wilson
interval of that class, on that class's samples alone; taking the minimum of noisy estimates biases it down,
never up); a stratified bootstrap (each class resampled on its own, seeded by study and split) for the gaps.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ._base import EvaluationContext, Objective, ObjectiveResult, register
from .stats import RESAMPLES, bootstrap_interval, wilson_interval

AGGREGATES = ("mean", "worst_class", "worst_group")


@torch.no_grad()
def logits_of(model: nn.Module, x: torch.Tensor, context: EvaluationContext) -> torch.Tensor:
    """``model``'s outputs on ``x`` (CPU, float32), batched. Ensembles return the log of their averaged softmax."""
    chunks = [model(x[start : start + context.batch_size].to(context.device)).float().cpu()
              for start in range(0, len(x), context.batch_size)]
    return torch.cat(chunks) if chunks else torch.empty(0, context.num_classes)


def model_outputs(model: nn.Module, context: EvaluationContext) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and softmax on ``context.x``, computed once per trial and shared through ``context.cache``."""
    if "logits" not in context.cache:
        logits = logits_of(model, context.x, context)
        context.cache["logits"] = logits
        context.cache["proba"] = torch.softmax(logits, dim=1)
    return context.cache["logits"], context.cache["proba"]


def breakdown(correct: np.ndarray, members: np.ndarray, names: list[str], seed: int) -> dict[str, Any]:
    """Accuracy of each part (class or group) with its Wilson interval and sample count, the worst part and the
    largest gap between parts with a stratified bootstrap interval; parts without samples are listed, not compared.
    """
    rows, outcomes = [], []
    for index, name in enumerate(names):
        part = correct[members == index]
        successes, n = int(part.sum()), len(part)
        rows.append({"name": name, "accuracy": successes / n if n else math.nan,
                     "interval": list(wilson_interval(successes, n)), "samples": n})
        if n:
            outcomes.append(part.astype(float))
    measured = [row for row in rows if row["samples"]]
    worst = min(measured, key=lambda row: row["accuracy"])
    best = max(measured, key=lambda row: row["accuracy"])

    def gap(*parts: np.ndarray, axis: int = -1) -> np.ndarray:
        means = np.stack([np.mean(part, axis=axis) for part in parts])
        return means.max(axis=0) - means.min(axis=0)

    value = best["accuracy"] - worst["accuracy"]
    return {
        "rows": rows, "worst": worst, "gap": value,
        # one sample per part: every part is resampled on its own (stratified), so each keeps its size
        "gap_interval": bootstrap_interval(gap, *outcomes, seed=seed, vectorized=True) if len(outcomes) > 1
        else (0.0, 0.0),
        "gap_samples": worst["samples"] + best["samples"] if worst is not best else worst["samples"],
    }


@register
class Accuracy(Objective):
    """Top-1 accuracy on the evaluation split (validation during search, test in ``nas verify``), with per-class
    (and per-group) accuracy, the worst of them and the largest gap between them."""

    name = "accuracy"
    direction = "maximize"
    cost_rank = 2
    worst_value = 0.0
    metrics = ("accuracy", "error", "worst_class", "class_gap", "worst_group", "group_gap")
    description = "fraction of validation images classified correctly (or of the worst class or group: aggregate)"
    params = {
        "aggregate": {"type": str, "default": "mean", "choices": AGGREGATES,
                      "help": "the optimised value: accuracy over all samples (mean), of the worst class, or of the "
                              "worst group (needs group labels, e.g. data.groups)"},
    }

    def _evaluate(self, model: nn.Module, context: EvaluationContext) -> ObjectiveResult:
        aggregate = self.options["aggregate"]
        if aggregate == "worst_group" and context.groups is None:
            raise ValueError("objectives.accuracy.aggregate = \"worst_group\" needs group labels, but the data has "
                             "none; set data.groups (image-folder) or choose aggregate = \"worst_class\"")
        _, proba = model_outputs(model, context)
        correct = (proba.argmax(dim=1) == context.y).numpy()
        successes, n = int(correct.sum()), len(correct)
        accuracy = successes / n
        low, high = wilson_interval(successes, n)
        metrics = {"accuracy": accuracy, "error": 1.0 - accuracy}
        intervals = {"accuracy": (low, high), "error": (1.0 - high, 1.0 - low)}
        samples = {"accuracy": n, "error": n}
        details: dict[str, Any] = {"mean_confidence": proba.max(dim=1).values.mean().item()}

        class_names = context.class_names or [str(index) for index in range(context.num_classes)]
        parts = {"class": (context.y.numpy(), class_names)}
        if context.groups is not None:
            group_count = int(context.groups.max()) + 1
            parts["group"] = (context.groups.numpy(), context.group_names or [str(g) for g in range(group_count)])
        for part, (members, names) in parts.items():
            found = breakdown(correct, members, names, context.split_seed("accuracy", f"{part}_gap"))
            worst, gap = f"worst_{part}", f"{part}_gap"
            metrics[worst], metrics[gap] = found["worst"]["accuracy"], found["gap"]
            intervals[worst], intervals[gap] = tuple(found["worst"]["interval"]), found["gap_interval"]
            samples[worst], samples[gap] = found["worst"]["samples"], found["gap_samples"]
            details[f"per_{part}"] = found["rows"]
            details[worst] = found["worst"]["name"]

        value = accuracy if aggregate == "mean" else metrics[aggregate]
        settings = {"aggregate": aggregate,
                    "intervals": f"Wilson; gaps: stratified bootstrap ({RESAMPLES}), widened to hold the value"}
        return ObjectiveResult(value=value, metrics=metrics, details=details, intervals=intervals, samples=samples,
                               settings=settings)
