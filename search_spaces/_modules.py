"""Building blocks shared by the search spaces: input normalisation and deep ensembles."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
}


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` inside the model, so attacks and attributions work in pixel space."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], spatial_dims: int) -> None:
        super().__init__()
        shape = (1, len(mean)) + (1,) * spatial_dims
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Ensemble(nn.Module):
    """Members whose softmax outputs are averaged; the output is the log of that average.

    Returning log-probabilities keeps the "logits" contract: ``softmax(ensemble(x))`` is exactly the
    (weighted) mean of the members' softmax outputs, and cross-entropy/argmax work unchanged. ``weights``
    (positive, e.g. how often greedy selection picked each member) weigh the mean; None weighs members equally.
    """

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        shares = torch.tensor([1.0] * len(self.members) if weights is None else [float(w) for w in weights])
        self.uniform = bool(torch.all(shares == shares[0]))
        # not part of the state dict: the weights are architecture (the spec), not trained parameters
        self.register_buffer("log_shares", torch.log(shares / shares.sum()), persistent=False)

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Stacked member logits, shape ``(members, batch, classes)`` (used for training)."""
        return torch.stack([member(x) for member in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_probs = torch.log_softmax(self.member_logits(x).float(), dim=-1)
        if self.uniform:
            return torch.logsumexp(log_probs, dim=0) - torch.log(torch.tensor(float(len(self.members))))
        return torch.logsumexp(log_probs + self.log_shares.view(-1, 1, 1), dim=0)
