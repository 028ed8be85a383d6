"""The one call shape every objective shares: ``evaluate(model, context) -> ObjectiveResult``.

Objectives never import ``nas``; everything they need about the data and the run arrives in an
:class:`EvaluationContext` built by the orchestration layer.
"""
from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar

import torch
from torch import nn

from .stats import split_seed


@dataclass
class EvaluationContext:
    """What an objective may look at. Inputs are in pixel space (the model normalises itself).

    ``x``/``y`` are the validation split during search (``split="val"``) and the test split in ``nas verify``
    (``split="test"``); anything an objective generates or subsamples is seeded by ``seed`` (the study's, the same
    for every trial) *and* ``split``, so verify never sees the search's inputs.
    ``train_x``/``train_y`` are there for detectors that fit on training features (e.g. Mahalanobis).
    ``fit_x``/``fit_y`` hold the validation split when scoring on test, for post-hoc parameters fitted on
    validation (temperature scaling); None during search (fit on part of ``x``, score on the rest).
    ``groups`` gives a subgroup index per sample of ``x`` (named by ``group_names``) when the data has them.
    ``cache`` lets objectives share work within one trial (e.g. in-distribution softmax outputs).
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    split: str = "val"
    train_x: torch.Tensor | None = None
    train_y: torch.Tensor | None = None
    data_range: tuple[float, float] = (0.0, 1.0)
    is_image: bool = True
    class_names: list[str] | None = None
    trained_outlier_families: tuple[str, ...] = ()
    batch_size: int = 256
    fit_x: torch.Tensor | None = None
    fit_y: torch.Tensor | None = None
    groups: torch.Tensor | None = None
    group_names: list[str] | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def split_seed(self, *labels: str) -> int:
        """The seed for whatever an objective draws for ``labels`` on this split (see :func:`stats.split_seed`)."""
        return split_seed(self.seed, self.split, *labels)

    def subset(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed, seeded subset of at most ``n`` samples of the split (the same for every trial)."""
        if n >= len(self.x):
            return self.x, self.y
        # validation keeps the plain study seed (subsets of earlier studies stay comparable)
        generator = torch.Generator().manual_seed(self.seed if self.split == "val" else self.split_seed("subset"))
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
    # metric -> (low, high) 95% interval (Wilson for proportions, seeded bootstrap otherwise; see ``stats``)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    # metric -> number of samples it was measured on (what the interval's width reflects)
    samples: dict[str, int] = field(default_factory=dict)
    # how the numbers were obtained (eps, steps, attack, detector, OOD sets, ...), for the card
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "metrics": self.metrics,
            "intervals": {metric: list(bounds) for metric, bounds in self.intervals.items()},
            "samples": self.samples,
            "settings": self.settings,
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
        verify_options: options ``nas verify`` uses instead of the search's (larger samples, a stronger attack,
            more detectors): search screens cheaply, verification must not flatter.
        worst_value: recorded when the objective is skipped (trial already infeasible).
        detail_prefixes: metrics starting with one of these (e.g. one per OOD set) are details: tables fold them
            away (``nas verify --json`` and requirements still have them); the headline metrics stay in view.
    """

    name: ClassVar[str] = ""
    direction: ClassVar[str] = "maximize"
    params: ClassVar[dict[str, dict[str, Any]]] = {}
    metrics: ClassVar[tuple[str, ...]] = ()
    cost_rank: ClassVar[int] = 100
    worst_value: ClassVar[float] = 0.0
    description: ClassVar[str] = ""
    verify_options: ClassVar[dict[str, Any]] = {}
    detail_prefixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: Any) -> None:
        options.pop("class", None)  # a config table's ``class = "package.module:Name"`` chooses the class itself
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
ENTRY_POINT_GROUP = "robust_nas.objectives"
REFERENCE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")  # "package.module:Name", as an entry point's value
EXPECTED = (f'a built-in objective, an entry point of group {ENTRY_POINT_GROUP} or "package.module:Name" of an '
            "objectives.Objective subclass")


def load_extension(group: str, name: str) -> Any:
    """The object ``name`` points at outside this package: a ``"package.module:Name"`` reference, else the entry
    point ``name`` of ``group``; None when it is neither. An import that fails is an ``ImportError`` of one line.

    (``search_spaces`` and ``nas`` hold the same few lines: the packages never import each other.)
    """
    if REFERENCE.fullmatch(name):
        if name.split(".")[0].split(":")[0] in sys.stdlib_module_names:  # never an extension; some act on import
            raise ImportError(f"{name!r} names a standard-library module, not an extension")
        target: EntryPoint | None = EntryPoint(name, name, group)
    else:
        target = next(iter(entry_points(group=group, name=name)), None)
    if target is None:
        return None
    try:
        return target.load()
    except Exception as error:  # whatever the user's module raises while it is imported
        raise ImportError(f"cannot import {target.value!r} ({type(error).__name__}: {error})".splitlines()[0]) from None


def register(cls: type[Objective]) -> type[Objective]:
    """Class decorator adding an objective to the registry under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    """Built-in, installed (entry point) and registered names; installed ones are not imported until used."""
    return sorted({*_REGISTRY, *(point.name for point in entry_points(group=ENTRY_POINT_GROUP))})


def load(name: str) -> type[Objective]:
    """The Objective subclass an entry point name or a ``"package.module:Name"`` reference points at.

    Raises ``KeyError`` when ``name`` is neither, ``ValueError`` (one line, saying what is expected) when it
    cannot be imported or is not an Objective subclass with a ``name``.
    """
    try:
        found = load_extension(ENTRY_POINT_GROUP, name)
    except ImportError as error:
        raise ValueError(f"{name!r}: {error}; expected {EXPECTED}") from None
    if found is None:
        raise KeyError(f"unknown objective '{name}'; allowed: {', '.join(available())}")
    if not (isinstance(found, type) and issubclass(found, Objective)) or not found.name:
        what = f"class {found.__name__} without a name" if isinstance(found, type) else f"a {type(found).__name__}"
        raise ValueError(f"{name!r} is {what}, not an objectives.Objective subclass with a name; expected {EXPECTED}")
    return found


def get(name: str) -> type[Objective]:
    """A registered objective, or an installed one (entry point ``robust_nas.objectives``), registered on first use."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if REFERENCE.fullmatch(name):
        raise KeyError(f"unknown objective '{name}'; a reference goes in the table: [objectives.<name>] with "
                       'class = "package.module:Name"')
    try:
        cls = load(name)
    except ValueError as error:
        raise KeyError(f"objective {error}") from None
    if cls.name != name:
        raise KeyError(f"entry point '{name}' of {ENTRY_POINT_GROUP} names the objective '{cls.name}'; "
                       "the entry point and the objective's name must agree")
    return register(cls)


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Softmax outputs on CPU, batched. Models return logits (ensembles: log of averaged softmax)."""
    outputs = []
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size].to(device))
        outputs.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(outputs) if outputs else torch.empty(0)
