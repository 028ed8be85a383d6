"""Robust training losses: adversarial training and outlier exposure (the recipe's ``[training.*]`` sub-tables).

Adversarial training replaces a share of every batch with its adversarial version (FGSM with a random
start, or PGD; ``objectives.adversarial.pgd_attack``). Outlier exposure adds synthetic outliers from
:mod:`objectives.ood_sets` to every batch and trains the softmax towards uniform on them (Hendrycks et al.
2019). Their options, sampling and checks live in :mod:`nas.recipe`.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from objectives import ood_sets
from objectives.adversarial import pgd_attack

from .training import BatchLoss, classification_loss


def _member_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(members, batch, classes)``: ensemble members are trained on their own logits."""
    return model.member_logits(x) if hasattr(model, "member_logits") else model(x)[None]


def outlier_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy from the softmax to the uniform distribution, averaged over samples."""
    return -(logits.float().log_softmax(dim=-1).mean(dim=-1)).mean()


def make_outliers(families: list[str], x: torch.Tensor, y: torch.Tensor, n: int, generator: torch.Generator,
                  data_range: tuple[float, float]) -> torch.Tensor:
    """``n`` outliers split evenly over ``families``, derived from (or shaped like) the batch ``x``."""
    reference = x.detach().cpu()
    parts = []
    for index, family in enumerate(families):
        count = n // len(families) + (1 if index < n % len(families) else 0)
        if count:
            parts.append(ood_sets.generate(family, reference, count, generator, y.cpu(), data_range))
    return torch.cat(parts).to(x.device)


def make_batch_loss(recipe: dict[str, Any], data_range: tuple[float, float]) -> BatchLoss | None:
    """The per-batch loss for ``recipe``; ``None`` (plain cross-entropy) when no robust scheme is on."""
    adversarial = recipe.get("adversarial") or {"enabled": False}
    outliers = recipe.get("outlier_exposure") or {"enabled": False}
    if not adversarial["enabled"] and not outliers["enabled"]:
        return None
    low, high = data_range

    def batch_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: dict[str, Any],
                   generator: torch.Generator) -> torch.Tensor:
        smoothing = float(recipe.get("label_smoothing", 0.0))
        if adversarial["enabled"]:
            count = round(float(adversarial["fraction"]) * len(x))
            if count:
                eps = float(adversarial["eps"]) * (high - low)
                if adversarial["attack"] == "fgsm":
                    steps, step = 1, 1.25 * eps
                else:
                    steps = int(adversarial["steps"])
                    step = 2.5 * eps / steps
                x_adv = pgd_attack(model, x[:count], y[:count], eps, steps, step, data_range, random_start=True)
                x = torch.cat([x_adv, x[count:]])
        if not outliers["enabled"]:
            return classification_loss(model, x, y, smoothing)
        n_out = max(1, round(float(outliers["fraction"]) * len(x)))
        x_out = make_outliers(list(outliers["families"]), x, y, n_out, generator, data_range)
        logits = _member_logits(model, torch.cat([x, x_out]))  # one pass: batch norm sees both
        inside, outside = logits[:, : len(x)], logits[:, len(x) :]
        loss = sum(F.cross_entropy(member.float(), y, label_smoothing=smoothing) for member in inside)
        return loss + float(outliers["weight"]) * sum(outlier_loss(member) for member in outside)

    return batch_loss
