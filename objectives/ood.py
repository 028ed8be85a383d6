"""Out-of-distribution overconfidence: does the model say "I am sure" on inputs it never saw?

Scores come from pytorch-ood detectors and metrics (AUROC, FPR@95TPR with OOD as the positive class),
one OOD set at a time against in-distribution validation inputs, plus the mean max-softmax
confidence on each set -- the seed paper's "overconfidence". Ensembles are scored on their averaged
softmax (the model's output is the log of it).

pytorch-ood is imported where it is used: it pulls in torchvision's model zoo, which would slow
down every ``nas`` command that merely lists objectives.
"""
from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch
from torch import nn

from . import ood_sets
from ._base import EvaluationContext, Objective, ObjectiveResult, register

DETECTORS = ("msp", "energy", "mahalanobis")
DEFAULT_SETS = ["uniform", "gaussian", "inverted", "shuffled", "letters"]
HISTOGRAM_BINS = 20


def confidence_histogram(confidence: torch.Tensor) -> dict[str, list[float]]:
    """Max-softmax confidences binned on [0, 1] (what the dashboard draws)."""
    counts, edges = np.histogram(confidence.numpy(), bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    return {"edges": [round(float(e), 4) for e in edges], "counts": [int(c) for c in counts]}


def _class_heads(model: nn.Module, num_classes: int) -> list[nn.Linear]:
    """The final linear layers (one per ensemble member): their inputs are the penultimate features."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if not heads:
        raise ValueError("detector 'mahalanobis' needs a model whose last layer is nn.Linear(features, num_classes)")
    return heads


class _Scorer:
    """Runs the model once per batch and turns its outputs into outlier scores and confidences."""

    def __init__(self, model: nn.Module, detector: str, context: EvaluationContext, fit_samples: int) -> None:
        self.model, self.detector, self.context = model, detector, context
        self.heads = _class_heads(model, context.num_classes) if detector == "mahalanobis" else []
        self.mahalanobis = None
        if detector == "mahalanobis":
            from pytorch_ood.detector import Mahalanobis

            if context.train_x is None or context.train_y is None:
                raise ValueError("detector 'mahalanobis' is fitted on training features, but the context has no training data")
            generator = torch.Generator().manual_seed(context.seed)
            index = torch.randperm(len(context.train_x), generator=generator)[:fit_samples]
            features, _, _ = self._run(context.train_x[index])
            self.mahalanobis = Mahalanobis(None).fit_features(features, context.train_y[index])

    @torch.no_grad()
    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(features or empty, logits, energy per sample) for ``x``, batched."""
        from pytorch_ood.detector import EnergyBased

        captured: list[torch.Tensor] = []
        hooks = [head.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].flatten(1))) for head in self.heads]
        features, logits, energies = [], [], []
        try:
            for start in range(0, len(x), self.context.batch_size):
                batch = x[start : start + self.context.batch_size].to(self.context.device)
                captured.clear()
                out = self.model(batch).float()
                logits.append(out.cpu())
                if self.detector == "energy":
                    members = self.model.member_logits(batch).float() if hasattr(self.model, "member_logits") else out[None]
                    # an ensemble's output is a log-probability (energy 0); use its members' mean energy
                    energies.append(torch.stack([EnergyBased.score(m) for m in members]).mean(0).cpu())
                if captured:
                    features.append(torch.cat(captured, dim=1).cpu())
        finally:
            for hook in hooks:
                hook.remove()
        empty = torch.empty(0)
        return (torch.cat(features) if features else empty, torch.cat(logits), torch.cat(energies) if energies else empty)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(outlier scores, max-softmax confidence); larger score = more likely OOD."""
        from pytorch_ood.detector import MaxSoftmax

        features, logits, energies = self._run(x)
        confidence = torch.softmax(logits, dim=1).max(dim=1).values
        if self.detector == "energy":
            return energies, confidence
        if self.mahalanobis is not None:
            return self.mahalanobis.predict_features(features), confidence
        return MaxSoftmax.score(logits), confidence


def separation(id_scores: torch.Tensor, ood_scores: torch.Tensor) -> tuple[float, float]:
    """(AUROC, FPR@95TPR) of telling ``ood_scores`` from ``id_scores`` (pytorch-ood, OOD positive)."""
    from pytorch_ood.metrics.functional import auroc, fpr_at_tpr

    scores = torch.cat([id_scores, ood_scores]).double()
    labels = torch.cat([torch.zeros(len(id_scores)), -torch.ones(len(ood_scores))]).long()
    return float(auroc(scores, labels)), float(fpr_at_tpr(scores, labels, 0.95))


@register
class OOD(Objective):
    """Worst-case (or mean) AUROC of separating in-distribution inputs from each OOD set.

    Options: ``sets`` (names from :func:`objectives.ood_sets.available`), ``detector``
    (msp, energy, mahalanobis), ``aggregate`` (min, mean), ``samples`` per set, ``fit_samples``
    (training inputs the Mahalanobis detector is fitted on).
    """

    name = "ood"
    direction = "maximize"
    cost_rank = 10
    worst_value = 0.0
    description = "worst-case AUROC separating in-distribution inputs from the OOD sets (1 = perfect, 0.5 = blind)"
    params = {
        "sets": {"default": DEFAULT_SETS, "type": list},
        "detector": {"default": "msp", "choices": DETECTORS},
        "aggregate": {"default": "min", "choices": ("min", "mean")},
        "samples": {"default": 200, "low": 10, "high": 100000},
        "fit_samples": {"default": 1000, "low": 20, "high": 1000000},
    }
    metrics = ("min_auroc", "mean_auroc", "max_fpr95", "max_ood_confidence", "id_confidence") + tuple(
        f"{kind}_{name}" for name in ood_sets.available() for kind in ("auroc", "fpr95", "confidence")
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        sets = self.options["sets"]
        if not isinstance(sets, list) or not sets or not all(isinstance(s, str) for s in sets):
            raise ValueError(f"sets must be a non-empty list of names; allowed: {', '.join(ood_sets.available())}")
        unknown = [s for s in sets if s not in ood_sets.available()]
        if unknown:
            raise ValueError(f"sets: unknown OOD set(s) {unknown}; allowed: {', '.join(ood_sets.available())}")
        if len(set(sets)) != len(sets):
            raise ValueError(f"sets: each OOD set may appear once, got {sets}")

    def _evaluate(self, model: nn.Module, context: EvaluationContext) -> ObjectiveResult:
        sets: list[str] = self.options["sets"]
        seen = sorted(set(sets) & set(context.trained_outlier_families))
        if seen:
            raise ValueError(
                f"OOD set(s) {seen} were used for outlier-exposure training of this model; scoring on them would hide "
                "how it treats unseen outliers -- score on other sets"
            )
        x_id, _ = context.subset(int(self.options["samples"]))
        scorer = _Scorer(model, self.options["detector"], context, int(self.options["fit_samples"]))
        id_scores, id_confidence = scorer(x_id)
        details: dict[str, Any] = {
            "detector": self.options["detector"],
            "in_distribution": {"mean_confidence": float(id_confidence.mean()), "histogram": confidence_histogram(id_confidence)},
            "sets": {},
        }
        metrics: dict[str, float] = {"id_confidence": float(id_confidence.mean())}
        skipped = []
        for name in sets:
            if not ood_sets.applicable(name, context.x):
                skipped.append(name)
                continue
            # a fixed seed per set: every trial is scored on the same OOD inputs
            generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            x_ood = ood_sets.generate(name, context.x, len(x_id), generator, context.y, context.data_range)
            ood_scores, ood_confidence = scorer(x_ood)
            area, fpr95 = separation(id_scores, ood_scores)
            confidence = float(ood_confidence.mean())
            details["sets"][name] = {
                "auroc": area, "fpr95": fpr95, "mean_confidence": confidence, "histogram": confidence_histogram(ood_confidence),
            }
            metrics.update({f"auroc_{name}": area, f"fpr95_{name}": fpr95, f"confidence_{name}": confidence})
        if skipped:
            details["skipped_sets"] = {"sets": skipped, "reason": "image-only sets do not apply to signal inputs"}
        if not details["sets"]:
            raise ValueError(f"none of the OOD sets {sets} applies to inputs of shape {list(context.input_shape)}")
        rows = details["sets"].values()
        metrics.update({
            "min_auroc": min(row["auroc"] for row in rows),
            "mean_auroc": float(np.mean([row["auroc"] for row in rows])),
            "max_fpr95": max(row["fpr95"] for row in rows),
            "max_ood_confidence": max(row["mean_confidence"] for row in rows),
        })
        value = metrics["min_auroc"] if self.options["aggregate"] == "min" else metrics["mean_auroc"]
        return ObjectiveResult(value=value, metrics=metrics, details=details)
