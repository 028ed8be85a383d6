"""Does multi-objective early stopping (``[study] early_stopping``) find a good front faster? Measured in one run.

    python experiments/bench_early_stopping.py [--seeds 3] [--trials 12] [--epochs 6] [--rungs 1,2] [--eta 3]

A cheap real config (scikit-learn digits, a small CNN space, FGSM training searched; objectives accuracy,
adversarial and params; accuracy >= 0.6 required) searched by random, TPE, and TPE with early stopping, each to
the same number of COMPLETE trials, variants alternating within each seed so load changes hit all alike, one torch
thread per run. For each run: wall and CPU time, trials started, epochs trained, and the hypervolume of the
feasible front (Optuna's, on objectives normalised to a fixed box: accuracy and adversarial accuracy in [0, 1],
log10 of the parameter count between the pooled smallest and largest of all runs) after the last trial, and the
wall time and epochs each run needed to reach random search's mean final hypervolume. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

import nas
from nas.optuna_compat import hypervolume

REQUIRED_ACCURACY = 0.6


def experiment(epochs: int, trials: int) -> dict[str, Any]:
    return {
        "study": {"n_trials": trials, "seed": 0},
        "data": {"name": "digits"},
        "space": {"name": "cnn", "depth": {"low": 1, "high": 2}, "channels": [8, 16, 32], "hidden": [0, 32],
                  "cardinality": 1, "ensemble": 1},
        "training": {"epochs": epochs, "batch_size": 64, "lr": {"low": 1e-4, "high": 3e-2, "log": True},
                     "adversarial": {"enabled": [True, False], "attack": "fgsm", "eps": {"low": 0.05, "high": 0.2}}},
        "objectives": {"accuracy": {}, "adversarial": {"eps": 0.1, "samples": 100}, "params": {}},
        "requirements": {"accuracy": {"min": REQUIRED_ACCURACY}},
    }


def run(variant: str, seed: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    config = experiment(args.epochs, args.trials)
    sampler = "random" if variant == "random" else "tpe"
    if variant == "tpe + early stopping":
        config["study"]["early_stopping"] = {"rungs": args.rungs, "reduction_factor": args.eta,
                                             "min_trials": args.min_trials}
    name = f"{variant.replace(' ', '').replace('+', '-')}-s{seed}"
    cpu, wall = time.process_time(), time.perf_counter()
    study = nas.search(config, storage=f"sqlite:///{workdir}/{name}.db", study_name=name, seed=seed,
                       sampler=sampler, out=workdir, threads=1)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    start = min(t.datetime_start for t in trials if t.datetime_start)
    return {"variant": variant, "seed": seed, "wall": wall, "cpu": cpu, "started": len(trials),
            "pruned": sum(t.state == TrialState.PRUNED for t in trials), "events": events(trials, start)}


def events(trials: list[optuna.trial.FrozenTrial], start: Any) -> list[tuple[float, int, Any]]:
    """(seconds since the first trial started, epochs trained so far, the trial if it COMPLETED) in finishing order."""
    finished = sorted((t for t in trials if t.datetime_complete), key=lambda t: t.datetime_complete)
    out, epochs = [], 0
    for trial in finished:
        epochs += int((trial.user_attrs.get("last_epoch") or {}).get("epoch", 0))  # the epochs it trained
        out.append(((trial.datetime_complete - start).total_seconds(), epochs,
                    trial if trial.state == TrialState.COMPLETE else None))
    return out


def losses(trial: optuna.trial.FrozenTrial, params_box: tuple[float, float]) -> np.ndarray | None:
    """The trial's point in the unit box (all minimised), or None when it misses the accuracy requirement."""
    accuracy, adversarial, params = trial.values
    if accuracy < REQUIRED_ACCURACY:
        return None
    low, high = params_box
    return np.array([1 - accuracy, 1 - adversarial, (math.log10(params) - low) / (high - low)])


def curve(result: dict[str, Any], params_box: tuple[float, float]) -> list[tuple[float, int, float]]:
    """(seconds, epochs, hypervolume of the feasible COMPLETE trials so far) after each finished trial."""
    points, out = [], []
    for seconds, epochs, trial in result["events"]:
        point = losses(trial, params_box) if trial is not None else None
        if point is not None:
            points.append(point)
        out.append((seconds, epochs, hypervolume(np.array(points), np.ones(3)) if points else 0.0))
    return out


def first_reaching(points: list[tuple[float, int, float]], target: float) -> tuple[float, int] | None:
    return next(((seconds, epochs) for seconds, epochs, value in points if value >= target - 1e-12), None)


def median_or_dash(values: list[float], fmt: str) -> str:
    return format(statistics.median(values), fmt) if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=12, help="COMPLETE trials per run")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rungs", type=lambda text: [int(r) for r in text.split(",")], default=[1, 2])
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--min-trials", type=int, default=4)
    parser.add_argument("--variants", default="random,tpe,tpe + early stopping")
    args = parser.parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    variants = [v.strip() for v in args.variants.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            order = variants[seed % len(variants):] + variants[:seed % len(variants)]  # rotate who goes first
            for variant in order:
                results.append(run(variant, seed, args, Path(tmp)))
                print(f"  {variant}, seed {seed}: {results[-1]['wall']:.1f} s", flush=True)
    sizes = [math.log10(t.values[2]) for r in results for _, _, t in r["events"] if t is not None]
    params_box = (min(sizes), max(sizes) + 1e-9)
    for result in results:
        result["curve"] = curve(result, params_box)
    finals = {v: [r["curve"][-1][2] for r in results if r["variant"] == v] for v in variants}
    target = statistics.mean(finals["random"]) if "random" in finals else None

    print(f"\ndigits, cnn space, {args.epochs} epochs, {args.trials} COMPLETE trials per run, {args.seeds} seeds, "
          f"1 thread; early stopping: rungs {args.rungs}, reduction_factor {args.eta}, min_trials {args.min_trials}; "
          "medians over seeds")
    if target is not None:
        print(f"target: random search's mean final hypervolume {target:.4f}\n")
    print("| variant | wall s | CPU s | trials started (pruned) | epochs trained | final hypervolume "
          "| wall s to target | epochs to target | runs reaching target |")
    print("|---|---|---|---|---|---|---|---|---|")
    for variant in variants:
        mine = [r for r in results if r["variant"] == variant]
        reached = [first_reaching(r["curve"], target) for r in mine] if target is not None else []
        hit = [point for point in reached if point is not None]
        print(f"| {variant} | {statistics.median(r['wall'] for r in mine):.1f} "
              f"| {statistics.median(r['cpu'] for r in mine):.1f} "
              f"| {statistics.median(r['started'] for r in mine):.0f} "
              f"({statistics.median(r['pruned'] for r in mine):.0f}) "
              f"| {statistics.median(r['curve'][-1][1] for r in mine):.0f} "
              f"| {statistics.median(finals[variant]):.4f} (min {min(finals[variant]):.4f}) "
              f"| {median_or_dash([s for s, _ in hit], '.1f')} | {median_or_dash([e for _, e in hit], '.0f')} "
              f"| {len(hit)}/{len(mine)} |")


if __name__ == "__main__":
    main()
