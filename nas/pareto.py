"""The Pareto front as rows: printed as a rich table, written as CSV and JSON."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.table import Table

from .optuna_compat import pareto_front
from .paths import safe_filename


def objective_names(study: optuna.Study) -> list[str]:
    return (study.user_attrs.get("objective_names") or study.metric_names
            or [f"objective{i}" for i in range(len(study.directions))])


def front_trials(study: optuna.Study) -> tuple[list[optuna.trial.FrozenTrial], bool]:
    """Optuna's Pareto front (feasible trials only when requirements exist).

    When no trial is feasible, the unconstrained front is returned instead, flagged ``False``, so a user
    still sees the best trade-offs (each marked infeasible).
    """
    best = study.best_trials
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if best or not completed:
        return sorted(best, key=lambda t: t.number), True
    unconstrained = pareto_front(completed, study.directions, consider_constraint=False)
    return sorted(unconstrained, key=lambda t: t.number), False


def is_feasible(trial: optuna.trial.FrozenTrial) -> bool:
    return all(value <= 0 for value in trial.constraints.values()) if trial.constraints else True


def front_rows(study: optuna.Study) -> list[dict[str, Any]]:
    trials, _ = front_trials(study)
    names = objective_names(study)
    rows = []
    for trial in trials:
        row: dict[str, Any] = {"trial": trial.number}
        row.update({name: value for name, value in zip(names, trial.values)})
        row["feasible"] = is_feasible(trial)
        row["spec"] = trial.user_attrs.get("spec_summary", "")
        rows.append(row)
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


def print_front(study: optuna.Study, console: Console | None = None) -> list[dict[str, Any]]:
    console = console or Console(markup=False)
    rows = front_rows(study)
    names = objective_names(study)
    arrows = {"MAXIMIZE": "↑", "MINIMIZE": "↓"}
    table = Table(title=f"Pareto front of study '{study.study_name}' ({len(rows)} trials)")
    table.add_column("trial", justify="right")
    for name, direction in zip(names, study.directions):
        table.add_column(f"{name} {arrows[direction.name]}", justify="right")
    table.add_column("feasible")
    table.add_column("spec")
    for row in rows:
        table.add_row(*[_fmt(row[key]) for key in ["trial", *names, "feasible", "spec"]])
    console.print(table)
    return rows


def write_front(study: optuna.Study, out_dir: Path) -> tuple[Path, Path]:
    """Write ``<study>-pareto.csv`` and ``<study>-pareto.json`` into ``out_dir`` (study name made file-safe)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = front_rows(study)
    names = objective_names(study)
    csv_path = out_dir / f"{safe_filename(study.study_name)}-pareto.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["trial", *names, "feasible", "spec"])
        writer.writeheader()
        writer.writerows(rows)
    json_path = out_dir / f"{safe_filename(study.study_name)}-pareto.json"
    directions = {name: d.name.lower() for name, d in zip(names, study.directions)}
    json_path.write_text(json.dumps({"study": study.study_name, "directions": directions, "front": rows}, indent=2))
    return csv_path, json_path
