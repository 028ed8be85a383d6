"""The one call shape every objective shares: ``evaluate(model, context) -> ObjectiveResult``.

Objectives never import ``nas``; everything they need about the data and the run arrives in an
:class:`EvaluationContext` built by the orchestration layer.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class EvaluationContext:
    """What an objective may look at. Inputs are in pixel space (the model normalises itself).

    ``x``/``y`` are the validation split during search and the test split in ``nas verify``.
    ``train_x``/``train_y`` are there for detectors that fit on training features (e.g. Mahalanobis).
    ``cache`` lets objectives share work within one trial (e.g. in-distribution softmax outputs).
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    train_x: torch.Tensor | None = None
    train_y: torch.Tensor | None = None
    data_range: tuple[float, float] = (0.0, 1.0)
    is_image: bool = True
    class_names: list[str] | None = None
    trained_outlier_families: tuple[str, ...] = ()
    batch_size: int = 256
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def subset(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed, seeded subset of at most ``n`` validation samples (same for every trial)."""
        if n >= len(self.x):
            return self.x, self.y
        generator = torch.Generator().manual_seed(self.seed)
        index = torch.randperm(len(self.x), generator=generator)[:n]
        return self.x[index], self.y[index]


@dataclass
class ObjectiveResult:
    """A scalar for the optimiser plus named metrics (usable in requirements) and dashboard details."""

    value: float
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "metrics": self.metrics,
            "seconds": self.seconds,
            "skipped": self.skipped,
        }


class Objective:
    """Base class: subclasses set the class attributes and implement :meth:`_evaluate`.

    Class attributes:
        name: registry name used in configs (``[objectives.<name>]``).
        direction: ``"maximize"`` or ``"minimize"``.
        params: budget/options as plain declarations, ``{key: {"type": t, "default": v, "low": .., "high": ..,
            "choices": .., "help": ..}}`` (``type`` may be left out for a scalar default): the one format that
            ``nas.schema`` validates config values against, for search-space options and config sections too.
        metrics: metric names this objective reports; ``"<name>"`` alone means the value itself.
        cost_rank: lower runs earlier; staged evaluation runs cheap objectives first.
        worst_value: recorded when the objective is skipped (trial already infeasible).
    """

    name: ClassVar[str] = ""
    direction: ClassVar[str] = "maximize"
    params: ClassVar[dict[str, dict[str, Any]]] = {}
    metrics: ClassVar[tuple[str, ...]] = ()
    cost_rank: ClassVar[int] = 100
    worst_value: ClassVar[float] = 0.0
    description: ClassVar[str] = ""

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.params)
        if unknown:
            raise ValueError(
                f"objective '{self.name}' got unknown option(s) {sorted(unknown)}; "
                f"allowed: {sorted(self.params)}"
            )
        self.options = {key: spec["default"] for key, spec in self.params.items()}
        self.options.update(options)

    def evaluate(self, model: nn.Module, context: EvaluationContext) -> ObjectiveResult:
        """Score ``model`` (put in eval mode, on ``context.device``) and time the work."""
        model.eval()
        start = time.perf_counter()
        result = self._evaluate(model, context)
        result.seconds = time.perf_counter() - start
        result.value = float(result.value)
        result.metrics.setdefault(self.name, result.value)
        return result

    def skipped(self) -> ObjectiveResult:
        return ObjectiveResult(value=self.worst_value, skipped=True)

    def _evaluate(self, model: nn.Module, context: EvaluationContext) -> ObjectiveResult:
        raise NotImplementedError


_REGISTRY: dict[str, type[Objective]] = {}


def register(cls: type[Objective]) -> type[Objective]:
    """Class decorator adding an objective to the registry under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> type[Objective]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown objective '{name}'; allowed: {', '.join(available())}") from None


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Softmax outputs on CPU, batched. Models return logits (ensembles: log of averaged softmax)."""
    outputs = []
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size].to(device))
        outputs.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(outputs) if outputs else torch.empty(0)
