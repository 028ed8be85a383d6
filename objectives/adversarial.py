"""Adversarial robustness: accuracy under L-infinity FGSM and PGD (``captum.robust``) at a set eps.

Attacks run in pixel space (the model normalises its own input) and every perturbed input is
clamped to the data range. Besides the robust accuracies this records an accuracy-vs-eps curve,
the median smallest eps that flips a correct prediction, and gradient-masking warnings: an attack
that looks weak because the gradients are useless, not because the model is robust.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._base import EvaluationContext, Objective, ObjectiveResult, register

MASKING_FLAGS = {
    "pgd_above_fgsm": "PGD accuracy is above FGSM accuracy (a multi-step attack should not be weaker)",
    "no_drop_with_eps": "accuracy does not fall as eps grows",
    "noise_as_strong_as_pgd": "random noise of the same L-inf size hurts as much as PGD",
}


@contextmanager
def quiet_captum() -> Iterator[None]:
    """Silence captum's notice that it switched on ``requires_grad`` for the inputs (expected here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients")
        yield


def per_sample_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per sample: the loss the attacks ascend (models return logits)."""
    return F.cross_entropy(logits.float(), target, reduction="none")


def pgd_attack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, step_size: float,
    data_range: tuple[float, float], random_start: bool = True,
) -> torch.Tensor:
    """Untargeted L-inf PGD (captum) inside the eps-ball around ``x``, clamped to ``data_range``."""
    from captum.robust import PGD  # imported on use: keeps `nas` startup fast

    attack = PGD(model, per_sample_loss, lower_bound=data_range[0], upper_bound=data_range[1])
    with quiet_captum():
        return attack.perturb(x, radius=eps, step_size=step_size, step_num=steps, target=y, random_start=random_start).detach()


def fgsm_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, data_range: tuple[float, float]) -> torch.Tensor:
    """Untargeted one-step FGSM (captum), clamped to ``data_range``."""
    from captum.robust import FGSM

    attack = FGSM(model, per_sample_loss, lower_bound=data_range[0], upper_bound=data_range[1])
    with quiet_captum():
        return attack.perturb(x, epsilon=eps, target=y).detach()


@torch.no_grad()
def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(dim=1) == y


def median_min_eps(curve_eps: list[float], still_correct: list[torch.Tensor], clean_correct: torch.Tensor) -> float | None:
    """Median over clean-correct samples of the smallest eps that flips them, interpolated on the eps grid.

    ``still_correct[k]`` marks samples robust at ``curve_eps[k]``; a sample counts as flipped at
    ``e`` when any attack up to ``e`` flipped it. ``None``
    when fewer than half of the correct samples flip even at the largest eps tried.
    """
    if not clean_correct.any():
        return None
    survived = clean_correct.clone()
    eps_points, fractions = [0.0], [1.0]
    for eps, correct in zip(curve_eps, still_correct):
        survived &= correct
        eps_points.append(eps)
        fractions.append(float(survived.sum()) / float(clean_correct.sum()))
    if fractions[-1] > 0.5:
        return None
    # survival fraction falls monotonically from 1 to <= 0.5: interpolate where it crosses 0.5
    return float(np.interp(0.5, fractions[::-1], eps_points[::-1]))


@register
class Adversarial(Objective):
    """PGD robust accuracy at ``eps`` on a fixed validation subset (higher is better).

    ``eps`` is a fraction of the data range (pixels in [0, 1]: eps 0.1 = 25.5/255). ``step_size`` 0
    means ``2.5 * eps / pgd_steps``. The eps curve runs PGD at ``curve_points`` evenly spaced eps up
    to ``curve_max * eps`` (plus ``eps`` itself, which gives the objective value).
    """

    name = "adversarial"
    direction = "maximize"
    cost_rank = 30
    worst_value = 0.0
    description = "accuracy under an L-inf PGD attack of size eps (fraction of the data range)"
    params = {
        "eps": {"default": 0.1, "low": 1e-4, "high": 1.0},
        "samples": {"default": 100, "low": 8, "high": 100000},
        "pgd_steps": {"default": 5, "low": 1, "high": 1000},
        "step_size": {"default": 0.0, "low": 0.0, "high": 1.0},
        "random_start": {"default": True},
        "curve_points": {"default": 2, "low": 1, "high": 20},
        "curve_max": {"default": 2.0, "low": 1.0, "high": 10.0},
        "tolerance": {"default": 0.02, "low": 0.0, "high": 1.0},
    }
    metrics = ("clean_accuracy", "fgsm_accuracy", "pgd_accuracy", "noise_accuracy", "median_min_eps", "masking_flags")

    def curve_eps(self) -> list[float]:
        """Relative eps values of the curve: ``curve_points`` evenly up to ``curve_max * eps``, plus ``eps``."""
        eps, points, top = float(self.options["eps"]), int(self.options["curve_points"]), float(self.options["curve_max"])
        grid = {round(eps * top * k / points, 8) for k in range(1, points + 1)} | {round(eps, 8)}
        return sorted(grid)

    def _evaluate(self, model: nn.Module, context: EvaluationContext) -> ObjectiveResult:
        low, high = context.data_range
        scale = high - low
        x, y = context.subset(int(self.options["samples"]))
        steps = int(self.options["pgd_steps"])
        relative = float(self.options["eps"])
        grid = self.curve_eps()
        eps = relative * scale
        clean, fgsm, noise = [], [], []
        curve: list[list[torch.Tensor]] = [[] for _ in grid]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(context.seed)  # PGD's random start draws from the global generator
            generator = torch.Generator().manual_seed(context.seed)
            for start in range(0, len(x), context.batch_size):
                xb = x[start : start + context.batch_size].to(context.device)
                yb = y[start : start + context.batch_size].to(context.device)
                # robust = correct on the clean input and still correct after the perturbation
                correct = _correct(model, xb, yb)
                clean.append(correct.cpu())
                fgsm.append((correct & _correct(model, fgsm_attack(model, xb, yb, eps, context.data_range), yb)).cpu())
                signs = torch.randint(0, 2, xb.shape, generator=generator).to(xb) * 2 - 1
                noise.append((correct & _correct(model, (xb + eps * signs).clamp(low, high), yb)).cpu())
                for index, point in enumerate(grid):
                    radius = point * scale
                    step_size = float(self.options["step_size"]) * scale or 2.5 * radius / steps
                    adversarial = pgd_attack(model, xb, yb, radius, steps, step_size, context.data_range, bool(self.options["random_start"]))
                    curve[index].append((correct & _correct(model, adversarial, yb)).cpu())
        clean_correct = torch.cat(clean)
        still_correct = [torch.cat(parts) for parts in curve]
        eps_curve = [{"eps": point, "accuracy": float(correct.float().mean())} for point, correct in zip(grid, still_correct)]
        accuracies = {
            "clean_accuracy": float(clean_correct.float().mean()),
            "fgsm_accuracy": float(torch.cat(fgsm).float().mean()),
            "pgd_accuracy": eps_curve[grid.index(round(relative, 8))]["accuracy"],
            "noise_accuracy": float(torch.cat(noise).float().mean()),
        }
        median = median_min_eps(grid, still_correct, clean_correct)
        flags = self.masking_flags(accuracies["clean_accuracy"], accuracies["fgsm_accuracy"], accuracies["pgd_accuracy"],
                                   accuracies["noise_accuracy"], [point["accuracy"] for point in eps_curve])
        details: dict[str, Any] = {
            "eps": relative,
            **accuracies,
            "eps_curve": [{"eps": 0.0, "accuracy": accuracies["clean_accuracy"]}, *eps_curve],
            "median_min_eps": median,
            "masking_flags": flags,
            "masking_reasons": [MASKING_FLAGS[flag] for flag in flags],
            "pgd_steps": steps,
            "samples": len(x),
        }
        metrics = {
            **accuracies,
            # None (more than half survive the largest eps) is recorded as that eps: a lower bound
            "median_min_eps": median if median is not None else grid[-1],
            # how many gradient-masking signs fired (names in details); require {max = 0} to reject such models
            "masking_flags": float(len(flags)),
        }
        return ObjectiveResult(value=accuracies["pgd_accuracy"], metrics=metrics, details=details)

    def masking_flags(self, clean: float, fgsm: float, pgd: float, noise: float, curve: list[float]) -> list[str]:
        """Signs of gradient masking (Athalye et al. 2018): the attack is weak for the wrong reason."""
        tol = float(self.options["tolerance"])
        flags = []
        if pgd > fgsm + tol:
            flags.append("pgd_above_fgsm")
        increases = any(later > earlier + tol for earlier, later in zip(curve, curve[1:]))
        if clean > tol and (curve[-1] >= clean - tol or increases):
            flags.append("no_drop_with_eps")
        if clean > tol and noise <= pgd + tol:
            flags.append("noise_as_strong_as_pgd")
        return flags
