"""Benchmark: how fast each sampler (and early stopping) finds a good front, plus per-trial overhead and start-up.

    .venv/bin/python experiments/bench_search.py [--seeds 3] [--trials 30] [--variants random,tpe,tpe-es,...]
    .venv/bin/python experiments/bench_search.py --config quickstart --trials 14 --variants random,tpe,tpe-es

``--config digits`` (default): a cheap real config (scikit-learn digits, a small CNN space, 4 epochs, FGSM
adversarial training searched; objectives accuracy, PGD accuracy and parameters). ``--config quickstart``:
``experiments/quickstart.toml`` itself (Fashion-MNIST, five objectives), its ``[study]`` table replaced.
``--epochs N`` trains every trial N epochs instead (early stopping needs long trainings to pay). Variant
``tpe-warm`` first runs a cheap search (1 epoch, a third of the training data, half the trials) and starts the
full one from its front (``study.warm_start``), the cheap search's time and epochs counted. Every variant runs
the same budget of COMPLETE trials for each seed, variants alternating within a seed, one thread per run
(``--threads 1``, passive OpenMP wait). For each run:
the hypervolume after each completed trial (objectives turned into losses, parameters on a log scale, each
normalised by the values pooled over all runs, reference point 1.1 in every dimension: fixed for the whole
benchmark), and the wall-clock and trained epochs (pruned trials included) at which it first reaches random
search's final hypervolume of the same seed. Ratios are per seed, then the median. A "Limits" line says how much room
any sampler has: the share of random's trial time its final front needs, and how soon a sampler knowing every result
in advance would reach that front (greedy by hypervolume per second over all trials run with that seed). Also
printed: time per trial outside training and evaluation, ``nas --help`` wall time and the quickstart's peak RSS.
Prints a markdown table; ``--out FILE`` writes it too; ``--keep DIR`` keeps the runs' storages, ``--first-seed N``
starts the seeds at N (a second run on other seeds).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments"))

from _publish import publish  # noqa: E402
from nas.optuna_compat import hypervolume  # noqa: E402
from nas.records import Records  # noqa: E402

CONFIG = """
[study]
name = "bench"
n_trials = {trials}
seed = 0
{study_extra}

[data]
name = "digits"
train_size = 800
val_size = 300

[space]
name = "cnn"
depth = {{ low = 1, high = 2 }}
channels = [4, 8, 16]
kernel = [3, 5]
cardinality = [1, 2]
hidden = [0, 32]
ensemble = [1, 2]

[training]
epochs = 4
batch_size = 64
lr = {{ low = 3e-4, high = 3e-2, log = true }}

[training.adversarial]
enabled = [true, false]
attack = "fgsm"
eps = {{ low = 0.05, high = 0.2 }}

[objectives.accuracy]
[objectives.adversarial]
eps = 0.1
samples = 100
pgd_steps = 5
[objectives.params]
"""
# name -> (sampler, sampler_options as TOML, extra [study] lines)
VARIANTS: dict[str, tuple[str, str, str]] = {
    "random": ("random", "{}", ""),
    "tpe": ("tpe", "{}", ""),  # our default: multivariate, group = true, 8 random start-up trials
    "tpe-plain": ("tpe", "{ group = false }", ""),  # the default before group = true was measured
    "gp": ("gp", "{}", ""),
    "nsga2": ("nsga2", "{}", ""),
    "tpe-es": ("tpe", "{}", "early_stopping = { rungs = [1, 2], reduction_factor = 3, min_trials = 4 }"),
    "gp-es": ("gp", "{}", "early_stopping = { rungs = [1, 2], reduction_factor = 3, min_trials = 4 }"),
    "tpe-es-gentle": ("tpe", "{}", "early_stopping = { rungs = [1], reduction_factor = 2, min_trials = 4 }"),
    # ASHA's rungs for longer trainings (run with --epochs 10)
    "tpe-es13": ("tpe", "{}", "early_stopping = { rungs = [1, 3], reduction_factor = 3, min_trials = 4 }"),
    "tpe-s4": ("tpe", "{ n_startup_trials = 4 }", ""),  # fewer random start-up trials for small budgets
    "tpe-anchors": ("tpe", "{}", 'initial_design = "anchors"'),  # smallest/largest model, robust on/off, first
    # a cheap search first (1 epoch, a third of the training data, half the trials), whose front the full search
    # runs first (study.warm_start); the cheap search's time and epochs count toward the variant's
    "tpe-warm": ("tpe", "{}", ""),
    # initial_design = "robust": the first 4 trials with every searched robust-training switch on, all else sampled
    "tpe-robust": ("tpe", "{}", 'initial_design = "robust"'),
    "tpe-s4-robust": ("tpe", "{ n_startup_trials = 4 }", 'initial_design = "robust"'),
    "tpe-s4-es": ("tpe", "{ n_startup_trials = 4 }",
                  "early_stopping = { rungs = [1, 2], reduction_factor = 3, min_trials = 4 }"),
}
QUICKSTART = REPO / "experiments" / "quickstart.toml"
WARM = {"tpe-warm"}


def cheap_version(text: str) -> str:
    """The config with 1 epoch and a third of the training samples: the warm start's cheap search."""
    text = re.sub(r"^epochs = \d+$", "epochs = 1", text, flags=re.M)
    return re.sub(r"^train_size = (\d+)$", lambda m: f"train_size = {int(m.group(1)) // 3}", text, flags=re.M)


def write_config(folder: Path, variant: str, trials: int, base: str, *, cheap: bool = False,
                 warm_start: str = "", epochs: int | None = None) -> Path:
    sampler, options, extra = VARIANTS[variant]
    study_extra = f'sampler = "{sampler}"\nsampler_options = {options}\n{extra}\n{warm_start}'
    path = folder / f"{variant}{'-cheap' if cheap else ''}.toml"
    if base == "digits":
        text = CONFIG.format(trials=trials, study_extra=study_extra)
    else:  # the quickstart experiment with this variant's [study] table
        text = QUICKSTART.read_text()
        start = text.index("[study]")
        end = text.index("\n[", start + 1)
        study = f'[study]\nname = "bench"\nn_trials = {trials}\nseed = 0\n{study_extra}\n'
        text = text[:start] + study + text[end:]
    if epochs:
        text = re.sub(r"^epochs = \d+$", f"epochs = {epochs}", text, flags=re.M)
    path.write_text(cheap_version(text) if cheap else text)
    return path


def run(config: Path, storage: str, study_name: str, seed: int) -> tuple[float, float]:
    """Wall and CPU seconds of one ``nas search`` (CPU of the child process alone)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "160"}
    result = subprocess.run([sys.executable, "-m", "nas", "search", str(config), "--storage", storage,
                             "--study-name", study_name, "--seed", str(seed), "--threads", "1"],
                            env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"nas search {config} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def losses(values: list[float], names: list[str], directions: list[optuna.study.StudyDirection]) -> list[float]:
    """Objective values as losses: 1 - score for maximised scores in [0, 1], log10 of parameters and FLOPs."""
    found = []
    for value, name, direction in zip(values, names, directions):
        if name in ("params", "flops"):
            found.append(math.log10(max(value, 1.0)))
        else:
            found.append(1.0 - value if direction == optuna.study.StudyDirection.MAXIMIZE else value)
    return found


def trajectory(study: optuna.Study) -> dict[str, Any]:
    """Per finished trial, in order of completion: its losses (None unless COMPLETE), end time and epochs."""
    trials = sorted((t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.datetime_complete),
                    key=lambda t: t.datetime_complete)
    start = min(t.datetime_start for t in trials)
    records = Records(study)
    names, directions = study.user_attrs["objective_names"], study.directions
    rows, epochs, previous_end = [], 0, None
    for trial in trials:
        record = records(trial)
        epochs += len(record.get("history") or [])
        overhead = cycle = None
        if trial.state == TrialState.COMPLETE and previous_end is not None:
            # The whole cycle since the previous trial ended (one worker runs them in turn): ask, sampling,
            # the trial's storage writes, tell, callbacks, garbage collection, the loop's checks.
            cycle = (trial.datetime_complete - previous_end).total_seconds()
            evaluation = sum(o.get("seconds", 0.0) for o in (record.get("objectives") or {}).values())
            overhead = cycle - float(trial.user_attrs.get("train_seconds", 0.0)) - evaluation
        previous_end = trial.datetime_complete
        rows.append({"losses": losses(trial.values, names, directions) if trial.state == TrialState.COMPLETE else None,
                     "seconds": (trial.datetime_complete - start).total_seconds(), "epochs": epochs,
                     "overhead": overhead, "cycle": cycle,
                     "trial_seconds": (trial.datetime_complete - trial.datetime_start).total_seconds()})
    return {"rows": rows}


def normalised(losses: list[float], low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Losses scaled by the values pooled over all runs: 0 the best seen, 1 the worst, at most 1.1 (the reference)."""
    return np.minimum((np.asarray(losses) - low) / np.where(high > low, high - low, 1.0), 1.1)


def hypervolume_curve(rows: list[dict[str, Any]], low: np.ndarray, high: np.ndarray) -> list[float]:
    """Hypervolume of the completed trials so far, after each finished trial (normalised losses, ref 1.1)."""
    points, curve = [], []
    reference = np.full(len(low), 1.1)
    for row in rows:
        if row["losses"] is not None:
            points.append(normalised(row["losses"], low, high))
        curve.append(hypervolume(np.asarray(points), reference) if points else 0.0)
    return curve


def hindsight_cost(trials: list[tuple[np.ndarray, float]], target: float) -> float:
    """Seconds of training a sampler would need, knowing every trial's result in advance, to reach ``target``:
    trials ``(normalised losses, seconds)`` taken greedily by hypervolume gained per second. An estimate of the
    best any sampler could do with these trials (greedy, so it can only over-state the least cost); ``trials``
    must reach ``target`` together."""
    reference = np.full(len(trials[0][0]), 1.1)
    chosen: list[np.ndarray] = []
    left, cost, volume = list(trials), 0.0, 0.0
    while volume < target - 1e-12 and left:
        gains = [(hypervolume(np.asarray([*chosen, point]), reference) - volume) / max(seconds, 1e-6)
                 for point, seconds in left]
        best = int(np.argmax(gains))
        point, seconds = left.pop(best)
        chosen.append(point)
        cost += seconds
        volume = hypervolume(np.asarray(chosen), reference)
    return cost


def needed_share(rows: list[dict[str, Any]], low: np.ndarray, high: np.ndarray) -> float:
    """Share of a run's trial time spent on the trials its final hypervolume needs (removing any one lowers it)."""
    complete = [(normalised(row["losses"], low, high), row["trial_seconds"]) for row in rows if row["losses"]]
    reference = np.full(len(low), 1.1)
    whole = hypervolume(np.asarray([point for point, _ in complete]), reference)
    needed = sum(seconds for index, (_, seconds) in enumerate(complete)
                 if hypervolume(np.asarray([p for i, (p, _) in enumerate(complete) if i != index]), reference)
                 < whole - 1e-12)
    return needed / sum(row["trial_seconds"] for row in rows)


def after(first: dict[str, Any], then: dict[str, Any]) -> dict[str, Any]:
    """The run ``then`` as if it started when ``first`` ended: its seconds and epochs offset by ``first``'s."""
    last = first["rows"][-1]
    rows = [{**row, "seconds": row["seconds"] + last["seconds"], "epochs": row["epochs"] + last["epochs"]}
            for row in then["rows"]]
    return {"wall": first["wall"] + then["wall"], "cpu": first["cpu"] + then["cpu"], "rows": rows}


def first_reaching(curve: list[float], rows: list[dict[str, Any]], target: float) -> tuple[float, float] | None:
    for value, row in zip(curve, rows):
        if value >= target - 1e-12:
            return row["seconds"], row["epochs"]
    return None


def help_seconds(repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nas", "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def quickstart_peak_rss_mb(folder: Path) -> float | None:
    """Peak RSS of a 2-trial quickstart (None without Fashion-MNIST installed)."""
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True); "
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    command = [sys.executable, "-c", probe, sys.executable, "-m", "nas", "search",
               str(REPO / "experiments" / "quickstart.toml"), "--n-trials", "2", "--threads", "1",
               "--storage", f"sqlite:///{folder}/quickstart.db"]
    code, peak_kb = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
    return int(peak_kb) / 1024 if code == "0" else None


def torch_peak_rss_mb() -> float:
    """Peak RSS of a Python process that only imports torch: the floor under any search's memory."""
    probe = ("import resource, subprocess, sys; subprocess.run([sys.executable, '-c', 'import torch'], check=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    return int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--config", choices=("digits", "quickstart"), default="digits")
    parser.add_argument("--epochs", type=int, help="train every trial this many epochs (default: the config's)")
    parser.add_argument("--no-extras", action="store_true", help="skip the nas --help and peak-RSS lines")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", type=Path, help="keep every run's storage in this folder (default: a temporary one)")
    args = parser.parse_args()
    variants = args.variants.split(",")
    if "random" not in variants:
        raise SystemExit("--variants must include random (the reference)")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; allowed: {', '.join(VARIANTS)}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep.resolve() if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            order = variants if seed % 2 == 0 else variants[::-1]  # alternate, so drift in load hits all
            for variant in order:
                storage, name = f"sqlite:///{folder}/{variant}-{seed}.db", f"{variant}-{seed}"
                cheap, warm_start = None, ""
                if variant in WARM:
                    cheap_storage = f"sqlite:///{folder}/{variant}-cheap-{seed}.db"
                    cheap_wall, cheap_cpu = run(write_config(folder, variant, max(args.trials // 2, 4), args.config,
                                                             cheap=True), cheap_storage, f"{name}-cheap", seed)
                    cheap = {"wall": cheap_wall, "cpu": cheap_cpu,
                             **trajectory(optuna.load_study(study_name=f"{name}-cheap", storage=cheap_storage))}
                    warm_start = f'warm_start = {{ storage = "{cheap_storage}", study = "{name}-cheap" }}'
                wall, cpu = run(write_config(folder, variant, args.trials, args.config, warm_start=warm_start,
                                             epochs=args.epochs), storage, name, seed)
                study = optuna.load_study(study_name=name, storage=storage)
                runs[variant, seed] = {"wall": wall, "cpu": cpu, **trajectory(study)}
                if cheap is not None:  # the cheap search came first: its time and epochs count
                    runs[variant, seed] = after(cheap, runs[variant, seed])
                print(f"seed {seed} {variant}: {wall:.0f} s wall, {cpu:.0f} s CPU", file=sys.stderr, flush=True)
        rss = None if args.no_extras else quickstart_peak_rss_mb(folder)
    pooled = np.array([row["losses"] for run_ in runs.values() for row in run_["rows"] if row["losses"]])
    low, high = pooled.min(axis=0), pooled.max(axis=0)
    for run_ in runs.values():
        run_["curve"] = hypervolume_curve(run_["rows"], low, high)

    trained = f", {args.epochs} epochs per trial" if args.epochs else ""
    which = f" ({seeds.start}-{seeds.stop - 1})" if args.first_seed else ""
    lines = [f"{args.config} config{trained}, {args.trials} COMPLETE trials per run, {args.seeds} seeds{which}, "
             "1 thread; medians over seeds (ratios per seed, then the median)", "",
             "| variant | final HV | HV vs random | wall s | CPU s | epochs | reaches random's HV | "
             "wall to reach / random's | epochs to reach / random's |",
             "|---|---|---|---|---|---|---|---|---|"]
    for variant in variants:
        finals, hv_ratio, walls, cpus, epochs, reached, wall_ratio, epoch_ratio = [], [], [], [], [], 0, [], []
        for seed in seeds:
            run_, reference = runs[variant, seed], runs["random", seed]
            target = reference["curve"][-1]
            finals.append(run_["curve"][-1])
            hv_ratio.append(run_["curve"][-1] / target if target else math.nan)
            walls.append(run_["wall"])
            cpus.append(run_["cpu"])
            epochs.append(run_["rows"][-1]["epochs"])
            hit = first_reaching(run_["curve"], run_["rows"], target)
            if hit is not None:
                reached += 1
                wall_ratio.append(hit[0] / reference["rows"][-1]["seconds"])
                epoch_ratio.append(hit[1] / reference["rows"][-1]["epochs"])
        median = statistics.median
        lines.append(
            f"| {variant} | {median(finals):.3f} | {median(hv_ratio):.2f}x | {median(walls):.0f} | {median(cpus):.0f} "
            f"| {median(epochs):.0f} | {reached}/{args.seeds} | "
            f"{median(wall_ratio):.2f} | {median(epoch_ratio):.2f} |" if wall_ratio else
            f"| {variant} | {median(finals):.3f} | {median(hv_ratio):.2f}x | {median(walls):.0f} | {median(cpus):.0f} "
            f"| {median(epochs):.0f} | 0/{args.seeds} | - | - |")
    # How far from the 1/3 goal the best possible sampler is, with the trials this benchmark ran (trial time only).
    hindsight, needed = [], []
    for seed in seeds:
        reference = runs["random", seed]
        pool = [(normalised(row["losses"], low, high), row["trial_seconds"])
                for variant in variants for row in runs[variant, seed]["rows"] if row["losses"]]
        cost = hindsight_cost(pool, reference["curve"][-1])
        hindsight.append(cost / sum(row["trial_seconds"] for row in reference["rows"]))
        needed.append(needed_share(reference["rows"], low, high))
    lines += ["", f"Limits: random's final hypervolume needs {statistics.median(needed):.0%} of its own trial time "
              "(its trials that each add to it); knowing in advance the results of every trial this benchmark ran "
              "with the same seed and taking them greedily by hypervolume per second, a sampler would reach it in "
              f"{statistics.median(hindsight):.2f} of random's trial time (median over seeds; "
              f"{min(hindsight):.2f}-{max(hindsight):.2f})."]
    overheads = [row["overhead"] for run_ in runs.values() for row in run_["rows"] if row["overhead"] is not None]
    cycles = [row["cycle"] for run_ in runs.values() for row in run_["rows"] if row["cycle"] is not None]
    overhead, cycle = statistics.median(overheads), statistics.median(cycles)
    lines += ["", f"Per trial outside training and evaluation (from the end of one trial to the end of the next, "
              f"the first trial of each run left out: it pays the lazy imports): median {overhead:.3f} s of a "
              f"median {cycle:.2f} s cycle ({overhead / cycle:.0%})."]
    if not args.no_extras:
        lines.append(f"`nas --help`: {help_seconds():.2f} s wall.")
        lines.append(f"Quickstart (2 trials) peak RSS: {rss:.0f} MB; `import torch` alone: "
                     f"{torch_peak_rss_mb():.0f} MB." if rss else "Quickstart peak RSS: no Fashion-MNIST.")
    publish(lines, args.out)


if __name__ == "__main__":
    main()
