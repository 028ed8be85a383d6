"""Benchmark: does the search flatter? Search-time numbers against `nas verify` on the quickstart's front.

    .venv/bin/python experiments/bench_verification.py [--storage sqlite:///runs/quickstart.db]
        [--study-name quickstart] [--screen-samples 500] [--models 0] [--out experiments/results/verification.md]

Runs the quickstart first when the study is not in the storage. Then:

1. Every front model is exported and verified with the default budgets (held-out test split, held-out OOD sets,
   the strong attack: APGD-CE + APGD-DLR + Square on 1,000 test samples). One row per model: the search's PGD
   screen (validation, an upper bound) against verify's PGD and strong attack on test, the validation->test shift
   of accuracy and worst-case OOD AUROC, every number with its 95% interval, which metrics degraded by more than
   their intervals explain, and verify's wall and CPU time (2 threads).
2. The rank correlation (Spearman) between the search's screen (the default and larger or margin-loss variants)
   and the strong attack over every COMPLETE trial of the study (strong attack on ``--screen-samples`` test
   samples each): the screen may be cheap, but it must order models as the strong attack does.

Prints markdown; ``--out FILE`` writes it too.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments"))

import objectives  # noqa: E402
from _publish import publish  # noqa: E402
import search_spaces  # noqa: E402
from nas import api  # noqa: E402
from nas.card import estimates, fmt_interval, fmt_value, recipe_text  # noqa: E402
from nas.export import read_weights, state_dict_from_bytes  # noqa: E402
from nas.records import trial_record  # noqa: E402
from nas.storage import load_study  # noqa: E402
from nas.study import Experiment, stored_config  # noqa: E402

THREADS = 2


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def estimate(value: Any, interval: Any) -> str:
    if value is None:
        return "n/a"
    return f"{fmt_value(value, interval)} {fmt_interval(interval)}" if interval else fmt_value(value)


def shift(report: dict[str, Any], metric: str) -> str:
    """``0.84 [0.81, 0.87] -> 0.83 [0.81, 0.85]``: validation then test of one metric."""
    row = next((row for row in report["metrics"] if metric in (row["metric"], *row.get("aliases", []))), None)
    if row is None:
        return "n/a"
    return (f"{estimate(row['validation'], row.get('validation_interval'))} -> "
            f"{estimate(row['test'], row.get('test_interval'))}")


def ensure_study(storage: str, name: str) -> optuna.Study:
    if name not in optuna.get_all_study_names(storage):
        print(f"running the quickstart into {storage} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "nas", "search", str(REPO / "experiments" / "quickstart.toml"),
                        "--storage", storage, "--study-name", name, "--threads", str(THREADS)],
                       check=True, capture_output=True)
    return load_study(storage, name)


def spread(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """At most ``limit`` front rows, spread evenly over the front ordered by accuracy (all when limit is 0)."""
    rows = sorted(rows, key=lambda row: -float(row.get("accuracy") or 0.0))
    if not limit or len(rows) <= limit:
        return rows
    return [rows[round(i * (len(rows) - 1) / (limit - 1))] for i in range(limit)] if limit > 1 else rows[:1]


def front_rows(study: optuna.Study, storage: str, folder: Path, limit: int) -> tuple[list[str], list[float]]:
    lines = ["| trial | recipe | accuracy (val -> test) | PGD, search (val, upper bound) | PGD, verify (test) | "
             "strong attack (test) | OOD worst AUROC (val -> test, held-out sets) | degraded beyond intervals | "
             "verify wall / CPU s |", "|---|---|---|---|---|---|---|---|---|"]
    walls = []
    for row in spread(api.front(study), limit):
        trial = study.trials[row["trial"]]
        export = api.export(study, trial=trial.number, out=folder / f"t{trial.number}", storage=storage)
        start_wall, start_cpu = time.perf_counter(), cpu_seconds()
        result = api.verify(export)
        wall, cpu = time.perf_counter() - start_wall, cpu_seconds() - start_cpu
        walls.append(wall)
        report = result.report
        record = trial_record(study, trial, storage)
        found = estimates(record.get("objectives") or {})
        search_pgd = found.get("adversarial.pgd_accuracy", {})
        ensemble = int((record.get("spec") or {}).get("ensemble", 1))
        test = {name: estimate(result.test.get(name), result.intervals.get(name))
                for name in ("adversarial.pgd_accuracy", "adversarial.strong_accuracy")}
        lines.append(
            f"| {trial.number} | {recipe_text(record.get('recipe') or {}, ensemble)} "
            f"| {shift(report, 'accuracy')} | {estimate(search_pgd.get('value'), search_pgd.get('interval'))} "
            f"| {test['adversarial.pgd_accuracy']} | {test['adversarial.strong_accuracy']} "
            f"| {shift(report, 'ood.min_auroc')} | {', '.join(result.gaps) or 'none'} | {wall:.0f} / {cpu:.0f} |")
    return lines, walls


# search-screen variants scored on validation against the strong attack on test: sample size is the main lever
SCREENS = {
    "PGD-5, 100 samples (default)": {},
    "PGD-5, 300 samples": {"samples": 300},
    "PGD-5 margin loss, 300 samples": {"samples": 300, "pgd_loss": "margin"},
    "PGD-5, 500 samples": {"samples": 500},
}


def screen_vs_strong(study: optuna.Study, storage: str, samples: int) -> tuple[list[str], float]:
    """Spearman between search screens (validation) and the strong attack (test) over the COMPLETE trials."""
    from scipy.stats import spearmanr

    config = stored_config(study, storage)
    experiment = Experiment.from_config(config)
    seed = int(config["study"]["seed"])
    base = {key: value for key, value in config["objectives"].get("adversarial", {}).items() if key != "direction"}
    judge = objectives.get("adversarial")(**{**base, "strong": True, "strong_samples": samples, "samples": samples})
    screens = {name: objectives.get("adversarial")(**{**base, **options}) for name, options in SCREENS.items()}
    values: dict[str, list[float]] = {name: [] for name in screens}
    seconds = dict.fromkeys(screens, 0.0)
    strong = []
    records = {trial.number: trial_record(study, trial, storage)
               for trial in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])}
    trials = [trial for trial in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
              if "adversarial.pgd_accuracy" in (records[trial.number].get("metrics") or {})]  # not skipped
    for trial in trials:
        record = records[trial.number]
        model = search_spaces.build(record["spec"])
        model.load_state_dict(state_dict_from_bytes(read_weights(study, trial, storage), "weights"))
        model.to(experiment.device)
        for name, screen in screens.items():
            result = screen.evaluate(model, experiment.context(seed, record.get("recipe")))
            values[name].append(result.metrics["pgd_accuracy"])
            seconds[name] += result.seconds
        result = judge.evaluate(model, experiment.context(seed, record.get("recipe"), split="test"))
        strong.append(result.metrics["strong_accuracy"])
    lines = [f"Search screens (validation) against the strong attack (test, {samples} samples) over {len(trials)} "
             f"COMPLETE trials; mean strong robust accuracy {sum(strong) / max(len(strong), 1):.3f}:", "",
             "| screen | Spearman vs strong (goal >= 0.9) | mean screen | seconds per trial |", "|---|---|---|---|"]
    rho = float("nan")
    for name in screens:
        found = float(spearmanr(values[name], strong).statistic) if len(strong) > 2 else float("nan")
        rho = found if name.endswith("(default)") else rho
        lines.append(f"| {name} | {found:.2f} | {sum(values[name]) / max(len(strong), 1):.3f} | "
                     f"{seconds[name] / max(len(strong), 1):.1f} |")
    return lines, rho


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=f"sqlite:///{REPO / 'runs' / 'bench-verification.db'}")
    parser.add_argument("--study-name", default="quickstart")
    parser.add_argument("--screen-samples", type=int, default=500)
    parser.add_argument("--models", type=int, default=0, help="verify at most this many front models (0: all)")
    parser.add_argument("--screens-only", action="store_true", help="skip the front verification (part 1)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = ensure_study(args.storage, args.study_name)
    lines: list[str] = []
    if not args.screens_only:
        with tempfile.TemporaryDirectory() as tmp:
            lines, walls = front_rows(study, args.storage, Path(tmp), args.models)
        lines += ["", f"`nas verify` with default budgets, {THREADS} threads: median "
                  f"{sorted(walls)[len(walls) // 2]:.0f} s, longest {max(walls):.0f} s per model (goal: under 120 s).",
                  ""]
    spearman, _ = screen_vs_strong(study, args.storage, args.screen_samples)
    lines += spearman
    publish(lines, args.out)


if __name__ == "__main__":
    main()
