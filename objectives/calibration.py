"""Calibration: when the model says 90 %, is it right 90 % of the time?

Expected calibration error over equal-width confidence bins (Guo et al. 2017, 15 bins), before and after
temperature scaling, plus the negative log-likelihood and the Brier score, each with a seeded bootstrap interval.

Temperature scaling divides the logits by one number T fitted to minimise the NLL (a 1-D scipy minimisation over
log T). It is fitted on the validation split: in ``nas verify`` (``context.fit_x``) and applied to the test split;
during the search the validation split is all there is, so the scaled ECE is cross-fitted (T fitted on one half,
scored on the other, both ways) and the reported ``temperature`` is fitted on the whole split; the export stores
it. Ensembles output the log of their averaged softmax: a valid logit vector, so the same scaling applies.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._base import EvaluationContext, Objective, ObjectiveResult, register
from .accuracy import logits_of, model_outputs
from .stats import RESAMPLES, bootstrap_interval

# Below the log of float32's smallest positive number: where an ensemble's averaged softmax underflowed to 0
# (log 0 = -inf), the logit is taken as this floor, so one such sample cannot make the NLL infinite.
LOGIT_FLOOR = -104.0
LOG_TEMPERATURE_BOUNDS = (math.log(0.01), math.log(100.0))


def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Each confidence's equal-width bin on (0, 1], 0 to ``bins - 1``."""
    return np.clip(np.ceil(confidence * bins).astype(np.int64), 1, bins) - 1


def reliability(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 15) -> dict[str, list[float]]:
    """The reliability diagram the dashboard draws: per bin the mean confidence, accuracy and count (0 when empty)."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    index = _bin_index(confidence, bins)
    count = np.bincount(index, minlength=bins)
    safe = np.maximum(count, 1)
    return {
        "bin_confidence": [round(float(v), 4) for v in np.bincount(index, confidence, bins) / safe],
        "bin_accuracy": [round(float(v), 4) for v in np.bincount(index, correct, bins) / safe],
        "bin_count": [int(v) for v in count],
    }


def expected_calibration_error(confidence: torch.Tensor | np.ndarray, correct: torch.Tensor | np.ndarray,
                               bins: int = 15) -> float:
    """Bin-size-weighted mean gap between confidence and accuracy: sum over bins of |sum (confidence - correct)| / n.
    (numpy: the bootstrap calls it a thousand times.)"""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    gaps = np.bincount(_bin_index(confidence, bins), confidence - correct, bins)
    return float(np.abs(gaps).sum() / max(len(confidence), 1))


def _finite(logits: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(logits.double(), neginf=LOGIT_FLOOR)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T > 0 for which ``softmax(logits / T)`` has the lowest NLL on ``labels`` (1 = unchanged)."""
    from scipy.optimize import minimize_scalar

    if len(labels) == 0:
        return 1.0
    finite = _finite(logits)

    def nll(log_temperature: float) -> float:
        return float(F.cross_entropy(finite / math.exp(log_temperature), labels))

    return float(math.exp(minimize_scalar(nll, bounds=LOG_TEMPERATURE_BOUNDS, method="bounded").x))


def scaled_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.softmax(_finite(logits) / temperature, dim=1).float()


def cross_fitted_softmax(logits: torch.Tensor, labels: torch.Tensor, seed: int) -> torch.Tensor:
    """Temperature-scaled softmax where each sample's temperature was fitted on the other half of the split."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    scaled = torch.softmax(logits.double(), dim=1).float()
    if min(len(half) for half in halves) == 0:
        return scaled  # a single sample: nothing to fit on
    for fit, score in (halves, halves[::-1]):
        scaled[score] = scaled_softmax(logits[score], fit_temperature(logits[fit], labels[fit]))
    return scaled


@register
class Calibration(Objective):
    """Expected calibration error of the model as it is (lower is better); the ECE after temperature scaling,
    NLL, Brier score and the fitted temperature are reported alongside."""

    name = "calibration"
    direction = "minimize"
    cost_rank = 3
    worst_value = 1.0
    description = "expected calibration error over 15 confidence bins (0 = confidence matches accuracy)"
    params = {"bins": {"default": 15, "low": 2, "high": 1000}}
    metrics = ("ece", "ece_scaled", "nll", "brier", "temperature")

    def _evaluate(self, model: nn.Module, context: EvaluationContext) -> ObjectiveResult:
        bins = int(self.options["bins"])
        logits, proba = model_outputs(model, context)
        labels = context.y
        if context.fit_x is not None and context.fit_y is not None:
            temperature = fit_temperature(logits_of(model, context.fit_x, context), context.fit_y)
            scaled = scaled_softmax(logits, temperature)
            fitted = f"on the validation split ({len(context.fit_y)} samples)"
            fit_samples = len(context.fit_y)
        else:
            temperature = fit_temperature(logits, labels)
            scaled = cross_fitted_softmax(logits, labels, context.split_seed("calibration", "halves"))
            fitted = "cross-fitted on two halves of this split; the reported temperature on all of it"
            fit_samples = len(labels)

        per_sample_nll = F.cross_entropy(_finite(logits), labels, reduction="none").numpy()
        per_sample_brier = ((proba.double() - F.one_hot(labels, proba.shape[1]).double()) ** 2).sum(dim=1).numpy()
        metrics: dict[str, float] = {"temperature": temperature}
        intervals: dict[str, tuple[float, float]] = {}
        details: dict[str, Any] = {}
        for metric, probabilities in (("ece", proba), ("ece_scaled", scaled)):
            confidence, prediction = probabilities.max(dim=1)
            correct = prediction == labels
            metrics[metric] = expected_calibration_error(confidence, correct, bins)
            intervals[metric] = bootstrap_interval(functools.partial(expected_calibration_error, bins=bins),
                                                   confidence.double().numpy(), correct.double().numpy(),
                                                   paired=True, seed=context.split_seed("calibration", metric))
            details["reliability" if metric == "ece" else "reliability_scaled"] = reliability(confidence, correct, bins)
        for metric, values in (("nll", per_sample_nll), ("brier", per_sample_brier)):
            metrics[metric] = float(values.mean())
            intervals[metric] = bootstrap_interval(np.mean, values, seed=context.split_seed("calibration", metric),
                                                   vectorized=True)
        samples = {metric: len(labels) for metric in intervals} | {"temperature": fit_samples}
        settings = {
            "bins": bins, "temperature": fitted, "logits": "model outputs (ensembles: log of averaged softmax)",
            "intervals": f"bootstrap ({RESAMPLES}, widened to hold the value); ece_scaled's leaves out the "
                         "temperature fit's own variance",
        }
        return ObjectiveResult(value=metrics["ece"], metrics=metrics, details=details, intervals=intervals,
                               samples=samples, settings=settings)
