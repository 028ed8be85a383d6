"""Objectives score a trained model; each module holds one concern and registers itself by name."""
from ._base import (
    EvaluationContext,
    Objective,
    ObjectiveResult,
    available,
    get,
    predict_proba,
    register,
)
from . import accuracy, adversarial, calibration, cost, explainability, ood  # noqa: F401  (registration)

__all__ = [
    "EvaluationContext",
    "Objective",
    "ObjectiveResult",
    "available",
    "get",
    "predict_proba",
    "register",
]
