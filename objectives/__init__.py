"""Objectives score a trained model; each module holds one concern and registers itself by name.

An objective of your own is an :class:`Objective` subclass (see ``experiments/custom/``), found through the entry
point group ``robust_nas.objectives`` or named in a config by ``class = "package.module:Name"``.
"""
from ._base import (
    ENTRY_POINT_GROUP,
    EvaluationContext,
    Objective,
    ObjectiveResult,
    available,
    get,
    load,
    predict_proba,
    register,
)
from . import accuracy, adversarial, calibration, cost, explainability, ood  # noqa: F401  (registration)

__all__ = [
    "ENTRY_POINT_GROUP",
    "EvaluationContext",
    "Objective",
    "ObjectiveResult",
    "available",
    "get",
    "load",
    "predict_proba",
    "register",
]
