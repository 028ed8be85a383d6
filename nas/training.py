"""A plain PyTorch training loop: seeded, deterministic on CPU, AMP on CUDA, divergence detected.

The recipe (epochs, lr, optimiser, weight decay, label smoothing, ...) is a JSON dict sampled from the
``[training]`` config table by :mod:`nas.recipe`; robust-training losses come from :mod:`nas.robust_training`.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces import Ensemble

from .data import Dataset
from .errors import UsageError


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the trial is recorded as FAILED with this message."""


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda[:N]`` must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"device {name!r}: CUDA is not available on this machine; "
                             "use --device cpu or --device auto")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return device
    raise UsageError(f"device {name!r} is not allowed; allowed: auto, cpu, cuda, cuda:N")


def _optimizer(model: nn.Module, recipe: dict[str, Any]) -> torch.optim.Optimizer:
    lr, decay = float(recipe["lr"]), float(recipe["weight_decay"])
    if recipe["optimizer"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=decay, nesterov=True)
    if recipe["optimizer"] == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=decay)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=decay)


def classification_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                        label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy; an ensemble trains each member on its own loss (independent members)."""
    if isinstance(model, Ensemble):
        logits = model.member_logits(x)
        return sum(F.cross_entropy(member, y, label_smoothing=label_smoothing) for member in logits)
    return F.cross_entropy(model(x), y, label_smoothing=label_smoothing)


BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor, dict[str, Any], torch.Generator], torch.Tensor]


def default_batch_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: dict[str, Any],
                       generator: torch.Generator) -> torch.Tensor:
    return classification_loss(model, x, y, float(recipe.get("label_smoothing", 0.0)))


@torch.no_grad()
def evaluate_split(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                   batch_size: int = 512) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the model's output on a split."""
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
        logits = model(xb).float()
        total_loss += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    return total_loss / max(1, len(x)), correct / max(1, len(x))


def train(
    model: nn.Module,
    recipe: dict[str, Any],
    dataset: Dataset,
    device: torch.device,
    seed: int,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    batch_loss: BatchLoss | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``dataset.train_*``; validate after every epoch.

    Raises :class:`TrainingDiverged` when the loss stops being finite.
    """
    batch_loss = batch_loss or default_batch_loss
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model.to(device)
    optimizer = _optimizer(model, recipe)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    x_train, y_train = dataset.train_x, dataset.train_y
    batch_size, epochs = int(recipe["batch_size"]), int(recipe["epochs"])
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    # SGD gets a cosine decay over the whole run; Adam-style optimisers keep their constant lr.
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
                 if recipe["optimizer"] == "sgd" else None)
    result = TrainResult()
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        running, seen = 0.0, 0
        for step in range(steps_per_epoch):
            index = order[step * batch_size : (step + 1) * batch_size]
            xb, yb = x_train[index].to(device, non_blocking=True), y_train[index].to(device, non_blocking=True)
            autocast = torch.autocast("cuda", dtype=torch.float16) if use_amp else contextlib.nullcontext()
            with autocast:
                loss = batch_loss(model, xb, yb, recipe, generator)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"training diverged: loss is {loss.item()} at epoch {epoch}, batch {step + 1} "
                                       f"(lr {recipe['lr']:.3g})")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if recipe.get("max_grad_norm"):
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), float(recipe["max_grad_norm"]))
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            running += loss.item() * len(index)
            seen += len(index)
        val_loss, val_accuracy = evaluate_split(model, dataset.val_x, dataset.val_y, device)
        if not math.isfinite(val_loss):
            raise TrainingDiverged(f"training diverged: validation loss is {val_loss} after epoch {epoch}")
        record = {
            "epoch": epoch,
            "train_loss": running / max(1, seen),
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "seconds": time.perf_counter() - start,
        }
        result.history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    result.seconds = time.perf_counter() - start
    return result
