"""Validation accuracy (top-1), plus the mean confidence the model reports on it."""
from __future__ import annotations

from torch import nn

from ._base import EvaluationContext, Objective, ObjectiveResult, predict_proba, register


@register
class Accuracy(Objective):
    """Top-1 accuracy on the evaluation split (validation during search, test in ``nas verify``)."""

    name = "accuracy"
    direction = "maximize"
    cost_rank = 2
    worst_value = 0.0
    metrics = ("accuracy", "error")
    description = "fraction of validation images classified correctly"

    def _evaluate(self, model: nn.Module, context: EvaluationContext) -> ObjectiveResult:
        proba = context.cache.get("proba")
        if proba is None:
            proba = predict_proba(model, context.x, context.device, context.batch_size)
            context.cache["proba"] = proba
        correct = proba.argmax(dim=1) == context.y
        accuracy = correct.float().mean().item()
        return ObjectiveResult(
            value=accuracy,
            metrics={"accuracy": accuracy, "error": 1.0 - accuracy},
            details={"mean_confidence": proba.max(dim=1).values.mean().item()},
        )
