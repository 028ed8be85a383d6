"""Test the seed paper's claim with the tool's own commands: run the four searches, `nas analyze` each study, and
write the result table (results.md) and figure (equal_accuracy.png) beside this file.

    python experiments/paper_hyatt_lee/run.py                   # search (about 45 min each, 1 thread), analyze
    python experiments/paper_hyatt_lee/run.py --only letters-size --timeout 1800   # one search, then analyze all
    python experiments/paper_hyatt_lee/run.py --analyze-only    # re-draw from the stored studies

Each search runs at one CPU thread with a time limit (--timeout, default 2,700 s: random sampling stops starting
trials then), so two can share a 2-core machine; run them in two shells with --only to do that. A rerun resumes a
study that exists (completed trials are kept). Storages: runs/paper_hyatt_lee/*.db (relative to the repository root).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RUNS = {  # config file -> what it isolates
    "letters": "letters A-J, architecture only (robust training off)",
    "fashion": "Fashion-MNIST, architecture only (robust training off)",
    "letters-robust": "letters A-J, architecture and robust training searched",
    "fashion-robust": "Fashion-MNIST, architecture and robust training searched",
    "letters-size": "letters A-J, single models of widely varied width (architecture vs size)",
}
BIN_WIDTH = 2.0  # accuracy points: about 60 trials spread over ~15 points need bins this wide to hold both groups
sys.path.insert(0, str(ROOT))
from nas.analysis import HEADLINE_METRICS as HEADLINE  # noqa: E402  the metrics the dashboard and report draw


def nas(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "nas", *args], cwd=ROOT, env=env, text=True, check=True,
                          capture_output=True)


def storage(run: str) -> tuple[str, Path]:
    path = ROOT / "runs" / "paper_hyatt_lee" / f"{run}.db"
    return f"sqlite:///runs/paper_hyatt_lee/{run}.db", path


def search(run: str, timeout: float) -> None:
    url, path = storage(run)
    resume = ["--resume"] if path.exists() else []
    print(f"searching {run} ({RUNS[run]}), at most {timeout:.0f} s ...", flush=True)
    nas("search", str(HERE / f"{run}.toml"), "--threads", "1", "--timeout", str(timeout), *resume)


def analyze(run: str) -> dict:
    url, _ = storage(run)
    out = HERE / "results" / run
    nas("analyze", "--storage", url, "--bin-width", str(BIN_WIDTH), "--out", str(out))
    return json.loads((out / "analysis.json").read_text())


def accuracy_range(run: str) -> str:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, _ = storage(run)
    study = optuna.load_study(study_name=f"hyatt-lee-{run}", storage=url)
    values = [t.values[0] for t in study.get_trials(deepcopy=False) if t.values]
    return f"{min(values):.3f}-{max(values):.3f}" if values else "none"


def table(results: dict[str, dict]) -> str:
    lines = [f"Validation-accuracy bins {BIN_WIDTH:g} points wide; ratio = group A / group B of the bin-matched means "
             "(Mantel-Haenszel weights), 95% seeded bootstrap interval; 'better' reads the metric's direction and "
             "the difference's interval (undecided: it holds 0). Every metric is in results/<run>/analysis.csv.", "",
             "| run | trials (accuracy range) | comparison | metric | A | B | ratio A/B [95% interval] | better | "
             "n A vs B |", "|---|---|---|---|---|---|---|---|---|"]
    for run, found in results.items():
        label = f"{run} | {found['completed_trials']} ({accuracy_range(run)})"
        for row in found["comparisons"]:
            if row["metric"] not in HEADLINE or row["ratio"] is None:
                continue
            interval = (f" [{row['ratio_low']:.2f}, {row['ratio_high']:.2f}]" if row["ratio_low"] is not None
                        else " (no interval)")
            lines.append(f"| {label} | {row['group_a']} vs {row['group_b']} | {row['metric']} | {row['mean_a']:.3g} | "
                         f"{row['mean_b']:.3g} | {row['ratio']:.2f}x{interval} | {row['better'] or '-'} | "
                         f"{row['n_a']} vs {row['n_b']} |")
        for name, note in found["not_compared"].items():
            lines.append(f"| {label} | {name} | - | - | - | not compared: {note} | - | - |")
    return "\n".join(lines) + "\n"


def figure(results: dict[str, dict], out: Path) -> None:
    """One panel per run: the headline ratios of each comparison with their intervals, on a log axis around 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"ensembles": "#1f5fbf", "cardinality": "#e8710a", "adversarial training": "#2ca02c",
              "outlier exposure": "#9467bd", "size": "#8c564b"}
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    shown = [m for m in HEADLINE if any(r["metric"] == m and r["ratio"] is not None
                                        for found in results.values() for r in found["comparisons"])]
    columns = min(3, len(results))
    rows_of_panels = -(-len(results) // columns)
    fig, axes = plt.subplots(rows_of_panels, columns, figsize=(5.2 * columns, 4.4 * rows_of_panels + 0.6),
                             squeeze=False)
    panels = list(axes.flat)
    for axis in panels[len(results):]:
        axis.set_visible(False)
    for axis, (run, found) in zip(panels, results.items()):
        rows = [r for r in found["comparisons"] if r["metric"] in HEADLINE and r["ratio"] is not None]
        labelled: set[str] = set()
        for position, metric in enumerate(shown):
            for offset, (name, color) in enumerate(colors.items()):
                row = next((r for r in rows if r["comparison"] == name and r["metric"] == metric), None)
                if row is None:
                    continue
                y = position + (offset - 2) * 0.15
                low, high = row["ratio_low"], row["ratio_high"]
                error = [[row["ratio"] - low], [high - row["ratio"]]] if low is not None else None
                axis.errorbar(row["ratio"], y, xerr=error, fmt="o", color=color, ms=4, capsize=2,
                              label=None if name in labelled else name)
                labelled.add(name)
        axis.axvline(1.0, color="#999", linestyle="--", linewidth=1)
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(FormatStrFormatter("%.2g"))
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_title(f"{run} ({found['completed_trials']} trials)", fontsize=10)
        axis.set_xlabel("ratio at equal accuracy (95% interval)")
        axis.set_yticks(range(len(shown)), shown, fontsize=8)
        axis.invert_yaxis()
    handles, labels = [], []
    for axis in panels:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    words = {"ensembles": "ensembles / single models", "cardinality": "cardinality > 1 / 1",
             "size": "larger / smaller single models (median split)"}
    fig.legend(handles, [words.get(label, f"{label} / none") for label in labels], loc="lower center", ncol=5,
               fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(out, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(RUNS), help="runs to search (default: all)")
    parser.add_argument("--timeout", type=float, default=2700.0, help="seconds per search (default 2,700)")
    parser.add_argument("--analyze-only", action="store_true", help="skip the searches")
    args = parser.parse_args()
    runs = args.only or list(RUNS)
    if not args.analyze_only:
        for run in runs:
            search(run, args.timeout)
    results = {run: analyze(run) for run in RUNS if storage(run)[1].exists()}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "results.md").write_text(table(results))
    figure(results, HERE / "results" / "equal_accuracy.png")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
