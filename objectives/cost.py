"""Cost objectives: parameter count and FLOPs per sample (``torch.utils.flop_counter``)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ._base import EvaluationContext, Objective, ObjectiveResult, register


@register
class Params(Objective):
    """Number of trainable parameters (all ensemble members included)."""

    name = "params"
    direction = "minimize"
    cost_rank = 0
    worst_value = float(1e12)
    description = "trainable parameters; fewer is cheaper to ship"

    def _evaluate(self, model: nn.Module, context: EvaluationContext) -> ObjectiveResult:
        count = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return ObjectiveResult(value=float(count))


@register
class Flops(Objective):
    """Floating point operations for one forward pass of one sample."""

    name = "flops"
    direction = "minimize"
    cost_rank = 1
    worst_value = float(1e15)
    description = "FLOPs per sample (forward pass)"

    @torch.no_grad()
    def _evaluate(self, model: nn.Module, context: EvaluationContext) -> ObjectiveResult:
        sample = context.x[:1].to(context.device)
        counter = FlopCounterMode(display=False)
        with counter:
            model(sample)
        return ObjectiveResult(value=float(counter.get_total_flops()))
