"""Our trainer vs a plain PyTorch loop: same model, data, epochs and batch size, measured in one run.

    python experiments/bench_trainer.py [--epochs 2] [--train-size 4000] [--rounds 3]

Prints seconds per epoch of each and the ratio (ours / plain). Our loop adds per-epoch validation,
divergence checks, optional AMP/grad clipping and recorded history; the ratio says what that costs.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import search_spaces
from nas import data
from nas.training import evaluate_split, train

SPEC = {"space": "cnn",
        "blocks": [{"channels": 16, "kernel": 3, "pool": "max"}, {"channels": 32, "kernel": 3, "pool": "max"}],
        "cardinality": 1, "batch_norm": True, "activation": "relu", "dropout": 0.1, "hidden": 0, "ensemble": 1}
RECIPE = {"epochs": 2, "batch_size": 128, "lr": 3e-3, "optimizer": "adam", "weight_decay": 0.0, "label_smoothing": 0.0}


def plain_loop(model, dataset, epochs: int, batch_size: int, lr: float) -> None:
    """The loop a person writes by hand: shuffle, forward, cross-entropy, backward, step; validate each epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(dataset.train_x), generator=generator)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            loss = F.cross_entropy(model(dataset.train_x[index]), dataset.train_y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        evaluate_split(model, dataset.val_x, dataset.val_y, torch.device("cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    name = "fashion-mnist" if data.debian_fashion_mnist_dir() else "digits"
    dataset = data.load({"name": name, "train_size": args.train_size, "val_size": 1000, "seed": 0})
    spec = {**SPEC, **dataset.preprocessing()}
    recipe = {**RECIPE, "epochs": args.epochs}
    ours, plain = [], []
    for _ in range(args.rounds):  # alternate so load changes hit both alike
        torch.manual_seed(0)
        model = search_spaces.build(spec)
        start = time.perf_counter()
        train(model, recipe, dataset, torch.device("cpu"), seed=0)
        ours.append((time.perf_counter() - start) / args.epochs)
        torch.manual_seed(0)
        model = search_spaces.build(spec)
        start = time.perf_counter()
        plain_loop(model, dataset, args.epochs, recipe["batch_size"], recipe["lr"])
        plain.append((time.perf_counter() - start) / args.epochs)
    o, p = statistics.median(ours), statistics.median(plain)
    print(f"{name}: {len(dataset.train_x)} train images, {args.epochs} epochs, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} rounds")
    print(f"{'loop':<12}{'s/epoch':>10}")
    print(f"{'ours':<12}{o:>10.3f}")
    print(f"{'plain':<12}{p:>10.3f}")
    print(f"ratio ours/plain: {o / p:.3f}")


if __name__ == "__main__":
    main()
