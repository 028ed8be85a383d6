"""How much do the robustness objectives cost next to training? Prints ratios, not absolute times.

For a few architectures from the quickstart space it trains each model like a plain quickstart trial
(the cheapest recipe, so the ratios are upper bounds), then runs every robustness objective with its
default budget and reports CPU time as a fraction of training time (one torch thread, CPU time:
steadier than wall time on a shared machine). Accuracy runs first, as in a trial, so calibration
reuses its softmax outputs. The last column is what staged evaluation saves of a whole trial when
its accuracy requirement fails (every objective ranked after accuracy is skipped).

    python experiments/bench_robustness_cost.py [--data fashion-mnist|digits] [--train-size 3000] [--epochs 3]
"""
from __future__ import annotations

import argparse
import time

import torch

import objectives
import search_spaces
from nas import data, training
from nas.robust_training import make_batch_loss

ROBUSTNESS = ["ood", "adversarial", "explainability", "calibration"]
ARCHITECTURES = {
    "small (16-16, fc64)": {"blocks": [{"channels": 16, "kernel": 3, "pool": "max"}] * 2, "hidden": 64},
    "wide (32-32)": {"blocks": [{"channels": 32, "kernel": 3, "pool": "max"}] * 2, "hidden": 0},
    "ensemble (16 x2)": {"blocks": [{"channels": 16, "kernel": 3, "pool": "max"}], "hidden": 0, "ensemble": 2},
}


def cpu_seconds(work) -> tuple[float, object]:
    start = time.process_time()
    result = work()
    return time.process_time() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--val-size", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = data.load({"name": args.data, "seed": 0, "train_size": args.train_size, "val_size": args.val_size,
                         "val_fraction": 0.15, "test_fraction": 0.15})
    recipe = {"epochs": args.epochs, "batch_size": 128, "lr": 3e-3, "optimizer": "adam", "weight_decay": 0.0,
              "label_smoothing": 0.0, "max_grad_norm": 0.0}
    # warm-up: the first call of each objective imports captum / pytorch-ood
    warm = search_spaces.build({"space": "cnn", **ARCHITECTURES["wide (32-32)"], "cardinality": 1, "batch_norm": True,
                                "activation": "relu", "dropout": 0.0, **dataset.preprocessing()})
    for name in ROBUSTNESS:
        objectives.get(name)(**({"samples": 10} if name != "calibration" else {})).evaluate(
            warm, objectives.EvaluationContext(x=dataset.val_x[:20], y=dataset.val_y[:20],
                                               num_classes=dataset.num_classes))
    print(f"{args.data}: {len(dataset.train_x)} train images x {args.epochs} epochs, default budgets, "
          "CPU time / training CPU time")
    trained = []
    print(f"{'architecture':<22} {'train s':>8} " + " ".join(f"{n:>14}" for n in ROBUSTNESS)
          + f" {'all':>7} {'staged saves':>13}")
    for label, arch in ARCHITECTURES.items():
        spec = {"space": "cnn", "cardinality": 1, "batch_norm": True, "activation": "relu", "dropout": 0.0,
                "ensemble": 1, **arch, **dataset.preprocessing()}
        torch.manual_seed(0)
        model = search_spaces.build(spec)
        train_cpu, _ = cpu_seconds(lambda: training.train(model, recipe, dataset, torch.device("cpu"), 0,
                                                          batch_loss=make_batch_loss(recipe, dataset.data_range)))
        context = objectives.EvaluationContext(x=dataset.val_x, y=dataset.val_y, num_classes=dataset.num_classes,
                                               train_x=dataset.train_x, train_y=dataset.train_y)
        trained.append(model)
        objectives.get("accuracy")().evaluate(model, context)  # fills context.cache["proba"], as in a trial
        costs = {name: cpu_seconds(lambda: objectives.get(name)().evaluate(model, context))[0] for name in ROBUSTNESS}
        total = sum(costs.values())
        print(f"{label:<22} {train_cpu:8.1f} " + " ".join(f"{costs[n] / train_cpu:14.0%}" for n in ROBUSTNESS)
              + f" {total / train_cpu:7.0%} {total / (train_cpu + total):13.0%}")
    compare_attribution_methods(trained, context)


def compare_attribution_methods(models: list[torch.nn.Module], context: objectives.EvaluationContext) -> None:
    """How the default attribution method and deletion baseline were chosen: CPU time relative to
    saliency, and faithfulness (normalised deletion / insertion) averaged over the trained models."""
    print("\nbaseline  attribution method     CPU time vs saliency   deletion score (0 = chance)   insertion score")
    for baseline in ("mean", "zero"):
        base = None
        for method in ("saliency", "input_x_gradient", "integrated_gradients"):
            explain = objectives.get("explainability")(method=method, samples=100, baseline=baseline)
            seconds, results = cpu_seconds(lambda: [explain.evaluate(model, context) for model in models])
            base = base or seconds
            deletion = sum(r.metrics["deletion"] for r in results) / len(results)
            insertion = sum(r.metrics["insertion"] for r in results) / len(results)
            print(f"{baseline:<9} {method:<22} {seconds / base:20.1f}x {deletion:29.2f} {insertion:17.2f}")

if __name__ == "__main__":
    main()
