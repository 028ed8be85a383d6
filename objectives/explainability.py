"""Explainability: are the model's Captum attributions faithful to what drives its decision?

Faithfulness is measured by deletion and insertion (Petsiuk et al. 2018): remove (or insert) the
pixels the attribution ranks most relevant first and track the probability of the predicted class.
Each area is compared with the same curve for a random pixel order, so 0 means "no better than
chance" and 1 means "perfect". Optional stability uses ``captum.metrics.sensitivity_max``.

Intervals (95%): a seeded paired bootstrap over the scored samples (each sample's attribution curve and its
random-order curve are resampled together), since the scores are ratios of mean areas.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .adversarial import quiet_captum
from ._base import EvaluationContext, Objective, ObjectiveResult, predict_proba, register
from .stats import RESAMPLES, bootstrap_interval

METHODS = {"saliency": "Saliency", "input_x_gradient": "InputXGradient", "integrated_gradients": "IntegratedGradients"}
MAX_EXAMPLES = 4


def explainer(method: str, model: nn.Module) -> Any:
    """The ``captum.attr`` class for ``method`` (imported on use: keeps ``nas`` startup fast)."""
    import captum.attr

    return getattr(captum.attr, METHODS[method])(model)


def method_options(method: str, ig_steps: int, batch_size: int) -> dict[str, Any]:
    """Keyword arguments of ``attribute`` beyond inputs and target (Captum's shared call shape)."""
    return {"n_steps": ig_steps, "internal_batch_size": batch_size} if method == "integrated_gradients" else {}


def attribute(model: nn.Module, method: str, x: torch.Tensor, target: torch.Tensor, ig_steps: int = 16,
              batch_size: int = 256) -> torch.Tensor:
    """Attributions of ``target`` w.r.t. ``x`` with the Captum method named ``method`` (batched)."""
    explain = explainer(method, model)
    options = method_options(method, ig_steps, batch_size)
    with quiet_captum():
        parts = [
            explain.attribute(x[start : start + batch_size], target=target[start : start + batch_size],
                              **options).detach()
            for start in range(0, len(x), batch_size)
        ]
    return torch.cat(parts)


def relevance_rank(attribution: torch.Tensor) -> torch.Tensor:
    """Rank of every input position (channels summed), 0 = most relevant; shape ``(n, positions)``."""
    relevance = attribution.sum(dim=1).flatten(1)
    order = relevance.argsort(dim=1, descending=True)
    return order.argsort(dim=1)


@torch.no_grad()
def perturbation_curves(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, rank: torch.Tensor, baseline: torch.Tensor,
    steps: int, device: torch.device, batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target-class probability after deleting / inserting the top-ranked fraction ``k / steps`` of positions.

    Returns ``(deletion, insertion)``, each of shape ``(n, steps + 1)``.
    """
    n, positions = rank.shape
    counts = torch.round(torch.linspace(0, positions, steps + 1)).long().to(rank.device)
    # masks[k, i] marks the positions of sample i among its top counts[k]; broadcast over channels
    masks = (rank[None] < counts[:, None, None]).view(steps + 1, n, 1, *x.shape[2:])
    deleted = torch.where(masks, baseline, x[None]).flatten(0, 1)
    inserted = torch.where(masks, x[None], baseline).flatten(0, 1)
    curves = []
    for inputs in (deleted, inserted):
        proba = predict_proba(model, inputs, device, batch_size).view(steps + 1, n, -1)
        curves.append(proba.gather(2, target.cpu().view(1, n, 1).expand(steps + 1, n, 1)).squeeze(2).T)
    return curves[0], curves[1]


def sample_areas(curve: torch.Tensor) -> torch.Tensor:
    """Area under each sample's curve, sampled evenly on [0, 1]."""
    return torch.trapezoid(curve, dx=1.0 / (curve.shape[1] - 1), dim=1)


def area(curve: torch.Tensor) -> torch.Tensor:
    """Mean area under per-sample curves sampled evenly on [0, 1]."""
    return sample_areas(curve).mean()


def deletion_score(areas: np.ndarray, random_areas: np.ndarray, axis: int = -1) -> np.ndarray:
    """1 - mean deletion area / mean random-order deletion area (small areas are good)."""
    return 1.0 - np.mean(areas, axis=axis) / np.maximum(np.mean(random_areas, axis=axis), 1e-9)


def insertion_score(areas: np.ndarray, random_areas: np.ndarray, axis: int = -1) -> np.ndarray:
    """1 - (1 - mean insertion area) / (1 - mean random-order insertion area) (large areas are good)."""
    return 1.0 - (1.0 - np.mean(areas, axis=axis)) / np.maximum(1.0 - np.mean(random_areas, axis=axis), 1e-9)


def _round_map(values: torch.Tensor, digits: int = 3) -> list[list[float]]:
    grid = values if values.dim() == 2 else values[None]  # signals become a 1 x L map
    return [[round(float(v), digits) for v in row] for row in grid]


@register
class Explainability(Objective):
    """Deletion (default) or insertion faithfulness of attributions, normalised to a random order.

    Options: ``method`` (saliency, input_x_gradient, integrated_gradients), ``samples``,
    ``steps`` (points of the deletion/insertion curves), ``ig_steps``, ``score``
    (deletion, insertion, mean), ``baseline`` (what replaces a deleted pixel: the mean validation
    image, or the range minimum -- with "zero", deleting an already-black background pixel changes
    nothing, which favours methods that multiply by the input), ``sensitivity`` (also compute
    captum's sensitivity_max, costly).
    """

    name = "explainability"
    direction = "maximize"
    cost_rank = 20
    worst_value = -1.0
    description = "faithfulness of attributions: 1 - deletion area / random-order area (0 = chance, 1 = perfect)"
    params = {
        "method": {"default": "saliency", "choices": tuple(METHODS)},
        "samples": {"default": 32, "low": 4, "high": 100000},
        "steps": {"default": 8, "low": 2, "high": 200},
        "ig_steps": {"default": 16, "low": 2, "high": 1000},
        "score": {"default": "deletion", "choices": ("deletion", "insertion", "mean")},
        "baseline": {"default": "mean", "choices": ("mean", "zero")},
        "sensitivity": {"default": False},
        "sensitivity_samples": {"default": 16, "low": 1, "high": 10000},
    }
    metrics = ("deletion", "insertion", "deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc",
               "sensitivity")
    # A faithful map makes the prediction fall fast when its top pixels go (a small deletion area) and rise fast
    # when they come back (a large insertion area); the random-order areas are the baselines, better in neither
    # direction; sensitivity (how much the map moves under a tiny input change) is better small.
    metric_directions = {"deletion": "maximize", "insertion": "maximize", "deletion_auc": "minimize",
                         "insertion_auc": "maximize", "random_deletion_auc": None, "random_insertion_auc": None,
                         "sensitivity": "minimize"}

    def _evaluate(self, model: nn.Module, context: EvaluationContext) -> ObjectiveResult:
        x, y = context.subset(int(self.options["samples"]))
        x = x.to(context.device)
        method, steps = self.options["method"], int(self.options["steps"])
        target = predict_proba(model, x, context.device, context.batch_size).argmax(dim=1).to(context.device)
        attribution = attribute(model, method, x, target, int(self.options["ig_steps"]), context.batch_size)
        if self.options["baseline"] == "mean":
            baseline = context.x.mean(dim=0, keepdim=True).to(x)
        else:
            baseline = torch.full_like(x[:1], context.data_range[0])
        rank = relevance_rank(attribution)
        generator = torch.Generator().manual_seed(context.seed)
        random_rank = torch.rand(rank.shape, generator=generator).argsort(dim=1).argsort(dim=1).to(rank.device)
        deletion, insertion = perturbation_curves(model, x, target, rank, baseline, steps, context.device,
                                                  context.batch_size)
        random_deletion, random_insertion = perturbation_curves(model, x, target, random_rank, baseline, steps,
                                                                context.device, context.batch_size)
        areas = {
            "deletion_auc": float(area(deletion)), "insertion_auc": float(area(insertion)),
            "random_deletion_auc": float(area(random_deletion)), "random_insertion_auc": float(area(random_insertion)),
        }
        # 1 - (area the curve should be small in) / (same area for a random order): 0 = chance, 1 = perfect
        per_sample = {name: sample_areas(curve).cpu().numpy() for name, curve in (
            ("deletion_auc", deletion), ("insertion_auc", insertion), ("random_deletion_auc", random_deletion),
            ("random_insertion_auc", random_insertion))}
        metrics = {
            **areas,
            "deletion": float(deletion_score(per_sample["deletion_auc"], per_sample["random_deletion_auc"])),
            "insertion": float(insertion_score(per_sample["insertion_auc"], per_sample["random_insertion_auc"])),
        }
        intervals = {
            name: bootstrap_interval(np.mean, values, seed=context.split_seed("explainability", name), vectorized=True)
            for name, values in per_sample.items()
        }
        for name, score_of in (("deletion", deletion_score), ("insertion", insertion_score)):
            intervals[name] = bootstrap_interval(score_of, per_sample[f"{name}_auc"], per_sample[f"random_{name}_auc"],
                                                 seed=context.split_seed("explainability", name), paired=True,
                                                 vectorized=True)
        if self.options["sensitivity"]:
            count = int(self.options["sensitivity_samples"])
            from captum.metrics import sensitivity_max

            with torch.random.fork_rng(devices=[]), quiet_captum():
                torch.manual_seed(context.seed)  # captum's default perturbation draws from the global generator
                scores = sensitivity_max(
                    explainer(method, model).attribute, x[:count],
                    perturb_radius=0.02 * (context.data_range[1] - context.data_range[0]),
                    n_perturb_samples=4, target=target[:count],
                    **method_options(method, int(self.options["ig_steps"]), context.batch_size),
                )
            metrics["sensitivity"] = float(scores.mean())
        score = self.options["score"]
        value = (metrics["deletion"] + metrics["insertion"]) / 2 if score == "mean" else metrics[score]
        predictions = target.cpu()
        examples = [
            {
                "image": _round_map(x[i, 0].cpu()),
                "attribution": _round_map(attribution[i].sum(dim=0).cpu()
                                          / attribution[i].abs().sum(dim=0).max().clamp_min(1e-12).cpu()),
                "label": int(y[i]),
                "prediction": int(predictions[i]),
            }
            for i in range(min(MAX_EXAMPLES, len(x)))
        ]
        details = {
            "method": method,
            "score": score,
            "deletion_curve": [round(float(v), 4) for v in deletion.mean(dim=0)],
            "insertion_curve": [round(float(v), 4) for v in insertion.mean(dim=0)],
            "random_deletion_curve": [round(float(v), 4) for v in random_deletion.mean(dim=0)],
            "random_insertion_curve": [round(float(v), 4) for v in random_insertion.mean(dim=0)],
            "examples": examples,
        }
        if score == "mean":
            intervals["explainability"] = bootstrap_interval(
                lambda d, rd, i, ri, axis=-1: (deletion_score(d, rd, axis) + insertion_score(i, ri, axis)) / 2,
                per_sample["deletion_auc"], per_sample["random_deletion_auc"], per_sample["insertion_auc"],
                per_sample["random_insertion_auc"], seed=context.split_seed("explainability", "mean"), paired=True,
                vectorized=True)
        samples = {name: len(x) for name in intervals}
        if self.options["sensitivity"]:
            samples["sensitivity"] = min(int(self.options["sensitivity_samples"]), len(x))
        settings = {"method": method, "score": score, "baseline": self.options["baseline"], "steps": steps,
                    "samples": len(x), "intervals": f"paired bootstrap over samples ({RESAMPLES})"}
        return ObjectiveResult(value=value, metrics=metrics, details=details, intervals=intervals, samples=samples,
                               settings=settings)
