"""95% intervals for every number we report: a point value without one invites reading noise as signal.

Accuracies (clean and robust) are binomial proportions: Wilson score intervals, which stay inside [0, 1] and
keep their coverage at small n. Everything else (AUROC, FPR95, ECE, NLL, gaps) gets a seeded percentile
bootstrap (scipy), resampling each independent sample separately (for AUROC: in- and out-of-distribution
scores apart), so the same inputs always give the same interval.
"""
from __future__ import annotations

import math
import zlib
from typing import Callable, Sequence

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 1000


def split_seed(seed: int, *labels: str) -> int:
    """A seed derived from ``seed`` and labels (e.g. the split and an OOD set's name), stable across runs.

    Different labels give unrelated streams, so validation and test draws never coincide.
    """
    text = "/".join(labels).encode()
    return (int(seed) * 1_000_003 + zlib.crc32(text)) % (2**63 - 1)


def wilson_interval(successes: int | float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n``; ``(nan, nan)`` for n = 0."""
    if n <= 0:
        return (math.nan, math.nan)
    from scipy.stats import binomtest

    result = binomtest(int(round(successes)), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(result.low), float(result.high))


def proportion_interval(flags: Sequence[bool] | np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson interval of the fraction of true ``flags`` (e.g. per-sample "still correct after the attack")."""
    values = np.asarray(flags, dtype=bool).ravel()
    return wilson_interval(int(values.sum()), len(values), confidence)


def bootstrap_interval(
    statistic: Callable[..., float], *samples: np.ndarray, seed: int = 0, paired: bool = False,
    resamples: int = RESAMPLES, confidence: float = CONFIDENCE, vectorized: bool = False,
) -> tuple[float, float]:
    """Seeded percentile bootstrap interval of ``statistic(*samples)``, widened to hold the measured value.

    ``paired=True`` resamples the rows of all samples together (e.g. confidences and correctness of the same
    inputs); otherwise each sample is resampled on its own (e.g. in- and out-of-distribution scores).
    ``vectorized=True``: ``statistic`` takes an ``axis`` keyword and reduces along it (much faster).
    A statistic that is constant under resampling gives a zero-width interval (objectives.ood widens a perfect
    separation with the rule of three). Resampling inflates statistics
    such as a binned ECE or a max-minus-min gap, so their percentile interval can lie wholly above the measured
    value (about 1 case in 10); it is then widened to hold the value, erring wide rather than flattering.
    """
    from scipy.stats import bootstrap

    arrays = [np.asarray(sample, dtype=float) for sample in samples]
    if any(len(array) < 2 for array in arrays):
        return (math.nan, math.nan)
    with np.errstate(all="ignore"):
        value = float(statistic(*arrays, axis=-1) if vectorized else statistic(*arrays))
        result = bootstrap(
            tuple(arrays), statistic if vectorized else (lambda *xs: statistic(*xs)), paired=paired,
            vectorized=vectorized, n_resamples=resamples, confidence_level=confidence, method="percentile",
            rng=np.random.default_rng(seed),
        )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if math.isnan(value):
        return (low, high)
    if math.isnan(low) or math.isnan(high):  # degenerate (every resample equal): the value itself
        return (value, value)
    return (min(low, value), max(high, value))
