"""Does the search's cheap PGD screen rank models as verify's strong attack does, and at what cost?

Trains a handful of small CNNs with varied recipes (plain, FGSM and PGD adversarial training at several eps,
outlier exposure, label smoothing, an ensemble) on a Fashion-MNIST subset (or scikit-learn digits), then scores
each on the same held-out samples with
  - the search screen: the adversarial objective's PGD (5 steps, cross-entropy; the default), and variants
    within the search budget (margin loss; margin loss with a second random start);
  - the strong attack of ``nas verify`` (APGD-CE, APGD-DLR, Square; worst case per sample, chained after PGD).
Prints one row per model, the Spearman rank correlation of each screen with the strong attack (goal >= 0.9),
and wall and CPU time of screen and strong attack. ``--timing`` instead times the adversarial objective as
``nas verify`` runs it (1,000 samples, strong attack on) on a quickstart-sized model.

    python experiments/bench_attack_screen.py                      # 8 models, 300 samples, 2 threads
    python experiments/bench_attack_screen.py --data digits --models 10
    python experiments/bench_attack_screen.py --timing --samples 1000

Measured (2 shared CPU cores, 2 torch threads, eps 0.1, APGD 100 iterations x 1 restart, Square 100 queries):
  rank study, Fashion-MNIST (2,000 train), 8 recipes, 300 test samples each:
    screen            Spearman vs strong   mean gap (screen - strong)   screen / strong wall time
    pgd5-ce (default)       0.929                 0.076                       0.143
    pgd5-margin             0.952                 0.058                       0.137
    pgd5-margin-x2          0.976                 0.057                       0.146
  timing (--timing --samples 1000), FGSM-trained, whole adversarial objective as verify runs it:
    2 blocks x 16 channels, hidden 64:               60 s wall (86 s CPU); APGD-CE 24, APGD-DLR 21, Square 11 s
    2 blocks x 32 channels, hidden 64, ensemble 2:  393 s wall (374 s CPU); APGD-CE 135, APGD-DLR 156, Square 87 s
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

import objectives  # noqa: E402
import search_spaces  # noqa: E402
from nas import data, training  # noqa: E402
from nas.robust_training import make_batch_loss  # noqa: E402

EPS = 0.1
BASE = {"epochs": 3, "batch_size": 128, "lr": 3e-3, "optimizer": "adam", "weight_decay": 0.0, "label_smoothing": 0.0,
        "max_grad_norm": 0.0}
OUTLIERS = {"enabled": True, "families": ["mixup", "patch_permuted", "smoothed_noise"], "weight": 0.5, "fraction": 0.5}


def fgsm(eps: float) -> dict[str, Any]:
    return {"enabled": True, "attack": "fgsm", "eps": eps, "steps": 3, "fraction": 0.5}


# (name, architecture overrides, recipe overrides): varied enough that robust accuracy spreads out
MODELS = [
    ("plain", {}, {}),
    ("plain-wide", {"channels": 32}, {}),
    ("label-smoothing", {}, {"label_smoothing": 0.2}),
    ("outlier-exposure", {}, {"outlier_exposure": OUTLIERS}),
    ("fgsm-0.05", {}, {"adversarial": fgsm(0.05)}),
    ("fgsm-0.10", {}, {"adversarial": fgsm(0.10)}),
    ("fgsm-0.15", {}, {"adversarial": fgsm(0.15)}),
    ("pgd3-0.10", {}, {"adversarial": {**fgsm(0.10), "attack": "pgd"}}),
    ("fgsm-0.10-ensemble", {"ensemble": 2}, {"adversarial": fgsm(0.10)}),
    ("fgsm-0.10+oe", {}, {"adversarial": fgsm(0.10), "outlier_exposure": OUTLIERS}),
]
SCREENS = {
    "pgd5-ce": {},
    "pgd5-margin": {"pgd_loss": "margin"},
    "pgd5-margin-x2": {"pgd_loss": "margin", "pgd_restarts": 2},
}


def load(name: str, train_size: int) -> data.Dataset:
    if name == "digits":
        return data.load({"name": "digits", "seed": 0, "val_fraction": 0.15, "test_fraction": 0.3})
    return data.load({"name": "fashion-mnist", "seed": 0, "train_size": train_size, "val_size": 500})


def build(dataset: data.Dataset, channels: int = 16, depth: int = 1, ensemble: int = 1,
          hidden: int = 0) -> torch.nn.Module:
    spec = {"space": "cnn", "blocks": [{"channels": channels, "kernel": 3, "pool": "max"}] * depth, "cardinality": 1,
            "batch_norm": True, "activation": "relu", "dropout": 0.0, "hidden": hidden, "ensemble": ensemble,
            **dataset.preprocessing()}
    return search_spaces.build(spec)


def train(dataset: data.Dataset, architecture: dict[str, Any], recipe: dict[str, Any], seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build(dataset, **architecture)
    recipe = {**BASE, **recipe}
    training.train(model, recipe, dataset, torch.device("cpu"), seed=seed,
                   batch_loss=make_batch_loss(recipe, dataset.data_range))
    return model.eval()


def timed(function, *args, **kwargs) -> tuple[Any, float, float]:
    """``function(*args)`` with its wall and CPU (process) seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def context(dataset: data.Dataset) -> objectives.EvaluationContext:
    return objectives.EvaluationContext(x=dataset.test_x, y=dataset.test_y, num_classes=dataset.num_classes,
                                        seed=0, split="test", data_range=dataset.data_range)


def score(model: torch.nn.Module, dataset: data.Dataset, samples: int, **options) -> objectives.ObjectiveResult:
    objective = objectives.get("adversarial")(eps=EPS, samples=samples, **options)
    return objective.evaluate(model, context(dataset))


def rank_study(args: argparse.Namespace) -> None:
    dataset = load(args.data, args.train_size)
    print(f"data {args.data}: {len(dataset.train_y)} train, {len(dataset.test_y)} test; {args.samples} attacked "
          f"samples per model; eps {EPS}; torch threads {torch.get_num_threads()}", flush=True)
    rows = []
    for name, architecture, recipe in MODELS[: args.models]:
        model, train_wall, _ = timed(train, dataset, architecture, recipe, args.seed)
        row: dict[str, Any] = {"model": name, "train_s": train_wall}
        for screen, options in SCREENS.items():
            # the search screen as the search runs it (eps curve, FGSM and noise included): what the search pays
            result, wall, cpu = timed(score, model, dataset, args.samples, **options)
            row[screen] = result.metrics["pgd_accuracy"]
            row[f"{screen}_s"], row[f"{screen}_cpu"] = wall, cpu
            row.setdefault("clean", result.metrics["clean_accuracy"])
            row.setdefault("flags", ",".join(result.details["masking_flags"]) or "-")
        result, wall, cpu = timed(score, model, dataset, args.samples, strong=True, strong_samples=args.samples,
                                  strong_steps=args.steps, square_queries=args.queries)
        row["strong"], row["strong_gap"] = result.metrics["strong_accuracy"], result.metrics["strong_gap"]
        row["strong_s"] = sum(result.details["strong"]["seconds"].values())
        row["strong_total_s"], row["strong_cpu"] = wall, cpu
        row["broken_by"] = result.details["strong"]["broken_by"]
        rows.append(row)
        print(f"{name:20s} clean {row['clean']:.3f}  " + "  ".join(f"{s} {row[s]:.3f}" for s in SCREENS)
              + f"  strong {row['strong']:.3f} (gap {row['strong_gap']:.3f})  screen {row['pgd5-ce_s']:.1f}s"
              f"  strong {row['strong_s']:.1f}s  flags {row['flags']}  broken by {row['broken_by']}", flush=True)
    strong = [row["strong"] for row in rows]
    print("\nscreen            Spearman vs strong   mean gap   screen wall s (cpu s)   strong wall s (cpu s)   ratio")
    for screen in SCREENS:
        rho = spearmanr([row[screen] for row in rows], strong).statistic
        gap = sum(row[screen] - row["strong"] for row in rows) / len(rows)
        screen_wall, screen_cpu = (sum(row[f"{screen}_{k}"] for row in rows) for k in ("s", "cpu"))
        strong_wall, strong_cpu = (sum(row[k] for row in rows) for k in ("strong_total_s", "strong_cpu"))
        print(f"{screen:17s} {rho:18.3f} {gap:10.3f} {screen_wall:12.1f} ({screen_cpu:.1f}) {strong_wall:16.1f} "
              f"({strong_cpu:.1f}) {screen_wall / strong_wall:9.3f}")


def timing(args: argparse.Namespace) -> None:
    """The adversarial objective as ``nas verify`` runs it, on a quickstart-sized model (2 blocks of 16 channels,
    hidden 64, FGSM-trained: the robust models are the slow ones, more samples survive PGD)."""
    dataset = load(args.data, args.train_size)
    shape = {"channels": args.channels, "depth": 2, "hidden": 64, "ensemble": args.ensemble}
    model, train_wall, _ = timed(train, dataset, shape, {"adversarial": fgsm(0.1)}, args.seed)
    options = {**objectives.get("adversarial").verify_options, "samples": args.samples, "strong_samples": args.samples,
               "strong_steps": args.steps, "square_queries": args.queries}
    result, wall, cpu = timed(score, model, dataset, **options)
    strong = result.details["strong"]
    print(f"model {shape}, trained in {train_wall:.0f} s; torch threads {torch.get_num_threads()}")
    print(f"options {options}")
    print(f"clean {result.metrics['clean_accuracy']:.3f} pgd {result.metrics['pgd_accuracy']:.3f} strong "
          f"{result.metrics['strong_accuracy']:.3f} gap {result.metrics['strong_gap']:.3f}; broken by "
          f"{strong['broken_by']}")
    print(f"adversarial objective: {wall:.1f} s wall, {cpu:.1f} s CPU; strong attack per attack (s): "
          + ", ".join(f"{name} {seconds:.1f}" for name, seconds in strong["seconds"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["fashion-mnist", "digits"], default="fashion-mnist")
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--models", type=int, default=8, help=f"how many of the {len(MODELS)} recipes")
    parser.add_argument("--samples", type=int, default=300, help="test samples every attack runs on")
    parser.add_argument("--steps", type=int, default=100, help="APGD iterations")
    parser.add_argument("--queries", type=int, default=100, help="Square queries")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing", action="store_true", help="time verify's adversarial objective instead")
    parser.add_argument("--channels", type=int, default=16, help="--timing: channels per block")
    parser.add_argument("--ensemble", type=int, default=1, help="--timing: ensemble members")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    (timing if args.timing else rank_study)(args)


if __name__ == "__main__":
    main()
