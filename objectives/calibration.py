"""Calibration: when the model says 90 %, is it right 90 % of the time?

Expected calibration error over equal-width confidence bins (Guo et al. 2017, 15 bins) and the
negative log-likelihood, both on the validation split. Ensembles use their averaged softmax.
"""
from __future__ import annotations

import torch
from torch import nn

from ._base import EvaluationContext, Objective, ObjectiveResult, predict_proba, register


def _bins(confidence: torch.Tensor, correct: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean confidence, accuracy, count) per equal-width bin on (0, 1]; empty bins hold zeros."""
    index = (confidence.double() * bins).ceil().long().clamp(1, bins) - 1
    count = torch.bincount(index, minlength=bins).double()
    safe = count.clamp_min(1)
    mean_confidence = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, confidence.double()) / safe
    accuracy = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, correct.double()) / safe
    return mean_confidence, accuracy, count


def reliability(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 15) -> dict[str, list[float]]:
    """The reliability diagram the dashboard draws."""
    mean_confidence, accuracy, count = _bins(confidence, correct, bins)
    return {
        "bin_confidence": [round(float(v), 4) for v in mean_confidence],
        "bin_accuracy": [round(float(v), 4) for v in accuracy],
        "bin_count": [int(v) for v in count],
    }


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 15) -> float:
    """Bin-size-weighted mean gap between confidence and accuracy."""
    mean_confidence, accuracy, count = _bins(confidence, correct, bins)
    return float((count * (mean_confidence - accuracy).abs()).sum() / count.sum().clamp_min(1))


@register
class Calibration(Objective):
    """Expected calibration error (lower is better); NLL is reported alongside."""

    name = "calibration"
    direction = "minimize"
    cost_rank = 3
    worst_value = 1.0
    description = "expected calibration error over 15 confidence bins (0 = confidence matches accuracy)"
    params = {"bins": {"default": 15, "low": 2, "high": 1000}}
    metrics = ("ece", "nll")

    def _evaluate(self, model: nn.Module, context: EvaluationContext) -> ObjectiveResult:
        proba = context.cache.get("proba")
        if proba is None:
            proba = predict_proba(model, context.x, context.device, context.batch_size)
            context.cache["proba"] = proba
        confidence, prediction = proba.max(dim=1)
        correct = prediction == context.y
        bins = int(self.options["bins"])
        ece = expected_calibration_error(confidence, correct, bins)
        nll = float(-proba.gather(1, context.y[:, None]).clamp_min(1e-12).log().mean())
        return ObjectiveResult(value=ece, metrics={"ece": ece, "nll": nll}, details={"reliability": reliability(confidence, correct, bins)})
