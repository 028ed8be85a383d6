"""What a finished study says about robustness: which searched choices matter, and whether architecture and
training scheme change robustness among models of the *same* accuracy.

The seed paper (Hyatt & Lee 2019) compares models of equal validation accuracy: a robustness gap between two
models that also differ in accuracy could be the accuracy's doing. So trials are grouped into validation-accuracy
bins and each comparison (ensembles vs single models, cardinality > 1 vs 1, adversarial training and outlier
exposure on vs off, and larger vs smaller single models: "architecture is not the same as size") is made within
bins, then pooled.

Pooling rule: in every bin holding trials of both groups, the group means ``a_b`` and ``b_b`` are weighted by
``w_b = n_a,b * n_b,b / (n_a,b + n_b,b)`` (Mantel-Haenszel weights: the bin's matched-pair count scaled by its
size, so one large bin does not swamp the others quadratically); the ratio is ``sum w_b a_b / sum w_b b_b`` and
the difference ``sum w_b (a_b - b_b) / sum w_b``. The 95% interval is a seeded percentile bootstrap that resamples
trials within each bin and group (strata with a single trial are held fixed: there is nothing to resample).

Importance: Optuna's PED-ANOVA per objective (it handles conditional parameters), with maximised objectives
negated since PED-ANOVA looks for the lowest values, and once for the Pareto front as a whole.
"""
from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from .errors import UsageError
from .pareto import objective_names
from .records import Records

ROBUSTNESS_PREFIXES = ("ood.", "adversarial.", "explainability.", "calibration.")
# Reported by robustness objectives but not robustness: clean accuracy, bookkeeping, fitted settings.
NOT_ROBUSTNESS = {"adversarial.clean_accuracy", "adversarial.masking_flags", "calibration.temperature",
                  "ood.id_confidence"}
POOLING_RULE = ("within-bin group means weighted by n_a*n_b/(n_a+n_b) (Mantel-Haenszel); ratio = weighted mean of "
                "group A / weighted mean of group B; 95% seeded bootstrap resampling trials within each bin and group")
FRONT = "pareto front"
# What the drawings show: each robustness objective's value and the seed paper's own measures (overconfidence on OOD
# inputs, the smallest eps that flips a prediction); the tables and files keep every metric.
EQUAL_ACCURACY_HINT = ("The seed paper's question: among models of the same validation accuracy, do ensembles, "
                       "cardinality > 1, adversarial training or outlier exposure change robustness? Trials are "
                       "grouped into accuracy bins; each point is the ratio of the two groups' means pooled over "
                       "bins, with a seeded bootstrap 95% interval. Green: the first group is better on that metric; "
                       "red: the second; grey: undecided. 'nas analyze' prints every metric and writes CSV/JSON.")
HEADLINE_METRICS = ("ood.min_auroc", "ood.max_ood_confidence", "adversarial.pgd_accuracy", "adversarial.median_min_eps",
                    "explainability.deletion", "calibration.ece")


# ------------------------------------------------------------------------------------------ groups
def ensemble_members(spec: dict[str, Any]) -> int:
    """Members of a trial's model: a heterogeneous ensemble lists them, a deep ensemble counts them."""
    members = spec.get("members")
    return len(members) if isinstance(members, list) else int(spec.get("ensemble", 1) or 1)


def _recipe_flag(name: str) -> Callable[[dict[str, Any]], bool | None]:
    def flag(view: dict[str, Any]) -> bool | None:
        table = (view.get("recipe") or {}).get(name)
        return bool(table.get("enabled")) if isinstance(table, dict) else None
    return flag


def _spec_value(read: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], bool | None]:
    def flag(view: dict[str, Any]) -> bool | None:
        spec = view.get("spec")
        return read(spec) if isinstance(spec, dict) else None
    return flag


@dataclass(frozen=True)
class Comparison:
    """Two groups of trials: ``member(view)`` is True for group A, False for group B, None for neither
    (``view``: the trial's merged record, see ``nas.records``)."""

    name: str
    group_a: str
    group_b: str
    member: Callable[[dict[str, Any]], bool | None]


COMPARISONS = (
    Comparison("ensembles", "ensembles", "single models", _spec_value(lambda spec: ensemble_members(spec) > 1)),
    Comparison("cardinality", "cardinality > 1", "cardinality 1",
               _spec_value(lambda spec: int(spec.get("cardinality", 1) or 1) > 1)),
    Comparison("adversarial training", "adversarial training", "no adversarial training", _recipe_flag("adversarial")),
    Comparison("outlier exposure", "outlier exposure", "no outlier exposure", _recipe_flag("outlier_exposure")),
)


def size_comparison(views: list[dict[str, Any]]) -> Comparison | None:
    """The seed paper's "architecture is not the same as size": single models above the median parameter count of
    the study's single models against the rest, at equal accuracy. Single models only, so that the ensembles' extra
    parameters do not stand in for size: if ensembles gain robustness and larger single models do not, it is the
    architecture."""
    def params(view: dict[str, Any]) -> float | None:
        spec, value = view.get("spec"), (view.get("metrics") or {}).get("params")
        single = isinstance(spec, dict) and ensemble_members(spec) == 1
        return float(value) if single and _finite(value) else None

    counts = [value for view in views if (value := params(view)) is not None]
    if not counts:
        return None
    median = float(np.median(counts))

    def larger(view: dict[str, Any]) -> bool | None:
        value = params(view)
        return None if value is None else value > median

    return Comparison("size", f"single models of more than {median:.3g} parameters",
                      f"single models of {median:.3g} parameters or fewer", larger)


# ------------------------------------------------------------------------------------------ results
@dataclass
class ComparisonResult:
    """One comparison on one metric at equal accuracy; ``ratio`` is None when the data cannot give one."""

    comparison: str
    metric: str
    group_a: str
    group_b: str
    n_a: int
    n_b: int
    bins: int
    mean_a: float | None = None
    mean_b: float | None = None
    ratio: float | None = None
    ratio_low: float | None = None
    ratio_high: float | None = None
    difference: float | None = None
    difference_low: float | None = None
    difference_high: float | None = None
    note: str = ""

    @property
    def better(self) -> str:
        """Which group the metric favours, read from its direction and the difference's 95% interval:
        the group's name, ``undecided`` (the interval holds 0) or ``""`` (no interval or direction unknown)."""
        from .requirements import metric_direction  # imports the objectives (and torch): only when asked

        objective, _, metric = self.metric.partition(".")
        direction = metric_direction(objective, metric or objective)
        if direction is None or self.difference_low is None or self.difference_high is None:
            return ""
        if self.difference_low > 0:
            return self.group_a if direction == "maximize" else self.group_b
        if self.difference_high < 0:
            return self.group_b if direction == "maximize" else self.group_a
        return "undecided"

    @property
    def sentence(self) -> str:
        """E.g. 'ensembles: 2.40x the adversarial.pgd_accuracy of single models at equal accuracy, interval
        1.80-3.10, n = 14 vs 22'."""
        counts = f"n = {self.n_a} vs {self.n_b}"
        if self.ratio is None:
            return f"{self.group_a} vs {self.group_b} on {self.metric}: {self.note} ({counts})"
        interval = f"interval {self.ratio_low:.2f}-{self.ratio_high:.2f}, " if self.ratio_low is not None else ""
        return (f"{self.group_a}: {self.ratio:.2f}x the {self.metric} of {self.group_b} at equal accuracy, "
                f"{interval}{counts}" + (f" ({self.note})" if self.note else ""))


@dataclass
class Analysis:
    study: str
    trials: int
    bin_width: float
    importance: dict[str, dict[str, float]] = field(default_factory=dict)
    importance_notes: dict[str, str] = field(default_factory=dict)
    comparisons: list[ComparisonResult] = field(default_factory=list)
    not_compared: dict[str, str] = field(default_factory=dict)  # comparison -> why (e.g. nothing varied it)

    def to_json(self) -> dict[str, Any]:
        return {"study": self.study, "completed_trials": self.trials, "bin_width_points": self.bin_width,
                "pooling": POOLING_RULE, "importance": self.importance, "importance_notes": self.importance_notes,
                "comparisons": [{**asdict(row), "better": row.better, "sentence": row.sentence}
                                for row in self.comparisons],
                "not_compared": self.not_compared}


# ------------------------------------------------------------------------------------------ importance
def _target_quantile(n: int) -> float:
    """PED-ANOVA's top quantile: 10%, raised so at least 5 trials sit above it (its docs' advice), at most 50%."""
    return min(0.5, max(0.1, 5.0 / max(n, 1)))


def param_importances(study: optuna.Study, trials: list[FrozenTrial]) -> tuple[dict[str, dict[str, float]],
                                                                                  dict[str, str]]:
    """PED-ANOVA importance of every searched parameter per objective and for the front; notes say why one
    could not be computed (too few trials, nothing searched)."""
    import warnings

    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    evaluator = PedAnovaImportanceEvaluator(target_quantile=_target_quantile(len(trials)))
    targets: dict[str, Callable[[FrozenTrial], float] | None] = {}
    for index, (name, direction) in enumerate(zip(objective_names(study), study.directions)):
        sign = -1.0 if direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        targets[name] = (lambda t, i=index, s=sign: s * t.values[i])
    if len(study.directions) > 1:
        targets[FRONT] = None  # non-domination rank, as multi-objective TPE ranks trials
    importance: dict[str, dict[str, float]] = {}
    notes: dict[str, str] = {}
    if not any(trial.params for trial in trials):
        return importance, {name: "no searched parameters" for name in targets}
    for name, target in targets.items():
        try:
            # Optuna warns that it looks for low target values (negated above) and about sparse regimes,
            # once per parameter; the latter becomes one note.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                found = get_param_importances(study, evaluator=evaluator, target=target)
        except (ValueError, RuntimeError, ZeroDivisionError) as error:
            notes[name] = f"not computable: {str(error).splitlines()[0]}"
            continue
        importance[name] = {param: float(value) for param, value in found.items()}
        sparse = sorted({match.group(1) for w in caught
                         if (match := re.search(r"parameter `([^`]+)` have less than", str(w.message)))})
        if sparse:
            notes[name] = f"rough: some values of {', '.join(sparse)} were tried by fewer than 2 trials"
    return importance, notes


# ------------------------------------------------------------------------------------------ equal accuracy
def robustness_metrics(views: list[dict[str, Any]]) -> list[str]:
    """Every robustness metric some trial reports, in a stable order."""
    names: set[str] = set()
    for view in views:
        names.update(view.get("metrics") or {})
    return sorted(name for name in names if name.startswith(ROBUSTNESS_PREFIXES) and name not in NOT_ROBUSTNESS)


def validation_accuracy(trial: FrozenTrial, view: dict[str, Any], names: list[str]) -> float | None:
    metrics = view.get("metrics") or {}
    if "accuracy" in metrics:
        return float(metrics["accuracy"])
    if "accuracy" in names and trial.values is not None:
        return float(trial.values[names.index("accuracy")])
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _pooled(strata: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mantel-Haenszel weights and per-bin means of groups A and B."""
    weights = np.array([len(a) * len(b) / (len(a) + len(b)) for a, b in strata])
    means_a = np.array([a.mean() for a, _ in strata])
    means_b = np.array([b.mean() for _, b in strata])
    return weights, means_a, means_b


def _interval(strata: list[tuple[np.ndarray, np.ndarray]], which: str, seed: int) -> tuple[float, float] | None:
    """Stratified bootstrap interval of the pooled ratio or difference (strata of one trial held fixed); None when
    the bootstrap cannot give one."""
    from objectives.stats import bootstrap_interval

    flat = [array for pair in strata for array in pair]
    moving = [i for i, array in enumerate(flat) if len(array) >= 2]
    if not moving:
        return None
    weights = _pooled(strata)[0]

    def statistic(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        means: list[Any] = [float(array.mean()) for array in flat]
        for i, array in zip(moving, resampled):
            means[i] = np.mean(array, axis=axis)
        shape = np.broadcast(*[np.asarray(m) for m in means]).shape
        stacked = np.stack([np.broadcast_to(np.asarray(m, dtype=float), shape) for m in means], -1)
        a, b = stacked[..., 0::2], stacked[..., 1::2]
        if which == "ratio":
            return (a * weights).sum(-1) / (b * weights).sum(-1)
        return ((a - b) * weights).sum(-1) / weights.sum()

    low, high = bootstrap_interval(statistic, *[flat[i] for i in moving], seed=seed, vectorized=True)
    return None if math.isnan(low) else (low, high)


def compare(views: list[dict[str, Any]], accuracies: list[float], comparison: Comparison, metric: str,
            bin_width: float, min_trials: int, seed: int) -> ComparisonResult:
    """One comparison on one metric, matched on validation-accuracy bins ``bin_width`` points wide."""
    bins: dict[int, tuple[list[float], list[float]]] = {}
    for view, accuracy in zip(views, accuracies):
        side = comparison.member(view)
        value = (view.get("metrics") or {}).get(metric)
        if side is None or not _finite(value):
            continue
        key = math.floor(accuracy * 100.0 / bin_width + 1e-9)
        bins.setdefault(key, ([], []))[0 if side else 1].append(float(value))
    total_a = sum(len(a) for a, _ in bins.values())
    total_b = sum(len(b) for _, b in bins.values())
    matched = [(np.array(a), np.array(b)) for _, (a, b) in sorted(bins.items()) if a and b]
    n_a, n_b = sum(len(a) for a, _ in matched), sum(len(b) for _, b in matched)
    row = ComparisonResult(comparison.name, metric, comparison.group_a, comparison.group_b, n_a, n_b, len(matched))
    if not total_a or not total_b:
        missing = comparison.group_a if not total_a else comparison.group_b
        row.note = f"no trial of {missing} reports this metric: not compared"
        return row
    if n_a < min_trials or n_b < min_trials:
        row.note = (f"too few trials in matched accuracy bins ({n_a} vs {n_b} of {total_a} vs {total_b}; "
                    f"need {min_trials} per group)")
        return row
    weights, means_a, means_b = _pooled(matched)
    row.mean_a = float((means_a * weights).sum() / weights.sum())
    row.mean_b = float((means_b * weights).sum() / weights.sum())
    row.difference = row.mean_a - row.mean_b
    if row.mean_a > 0 and row.mean_b > 0 and all((a >= 0).all() and (b >= 0).all() for a, b in matched):
        row.ratio = row.mean_a / row.mean_b
    else:
        row.note = "ratio undefined (a mean is <= 0 or values are negative); see the difference"
    # A bin group of one trial cannot be resampled: when a whole group is made of them, its spread is unknown and
    # an interval would look far surer than the data are; when some are, the interval is too narrow and says so.
    lone = [sum(len(pair[side]) == 1 for pair in matched) for side in (0, 1)]
    if lone[0] == len(matched) or lone[1] == len(matched):
        group = comparison.group_a if lone[0] == len(matched) else comparison.group_b
        row.note = "; ".join(filter(None, [row.note, f"no interval: every matched bin holds one trial of {group}"]))
        return row
    found = _interval(matched, "difference", seed)
    if found:
        row.difference_low, row.difference_high = found
    if row.ratio is not None:
        found = _interval(matched, "ratio", seed)
        if found:
            row.ratio_low, row.ratio_high = found
    if sum(lone):
        row.note = "; ".join(filter(None, [row.note, f"interval too narrow: {sum(lone)} of {2 * len(matched)} bin "
                                                     "groups hold one trial (held fixed)"]))
    return row


def analyze(study: optuna.Study, bin_width: float = 1.0, min_trials: int = 3, seed: int = 0,
            metrics: tuple[str, ...] | None = None, importance: bool = True, storage_url: str | None = None,
            artifacts: str | Path | None = None) -> Analysis:
    """Importance per objective and the equal-accuracy comparisons of a study's COMPLETE trials (their records
    found as ``nas.records`` does, from ``storage_url`` and ``artifacts``).

    ``metrics`` limits the comparisons to those metrics (the drawings use :data:`HEADLINE_METRICS`); ``importance``
    False skips PED-ANOVA (the dashboard draws it separately). Raises a one-line :class:`UsageError` when the study
    has no completed trial or no accuracy to bin by.
    """
    if not math.isfinite(bin_width) or bin_width <= 0:
        raise UsageError(f"bin_width must be a number > 0 (accuracy points), got {bin_width!r}")
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not trials:
        states = {t.state.name for t in study.get_trials(deepcopy=False)}
        raise UsageError(f"study '{study.study_name}' has no COMPLETE trial to analyze "
                         f"({'trials there: ' + ', '.join(sorted(states)) if states else 'no trials'}); "
                         "run 'nas search' first")
    result = Analysis(study.study_name, len(trials), bin_width)
    if importance:
        result.importance, result.importance_notes = param_importances(study, trials)
    names = objective_names(study)
    records = Records(study, storage_url, artifacts)
    views = [records(trial) for trial in trials]
    accuracies = [validation_accuracy(trial, view, names) for trial, view in zip(trials, views)]
    scored = [(v, a) for v, a in zip(views, accuracies) if a is not None and math.isfinite(a)]
    if not scored:
        raise UsageError(f"study '{study.study_name}': no COMPLETE trial reports a validation 'accuracy' metric "
                         "to bin by; add [objectives.accuracy] to the experiment")
    binned, accuracy_values = [t for t, _ in scored], [a for _, a in scored]
    size = size_comparison(binned)
    for index, comparison in enumerate(COMPARISONS + ((size,) if size else ())):
        sides = [comparison.member(view) for view in binned]
        missing = [group for group, side in ((comparison.group_a, True), (comparison.group_b, False))
                   if side not in sides]
        if missing:  # the study never varied this choice: one note, not one empty row per metric
            result.not_compared[comparison.name] = f"no trials with {' or '.join(missing)}"
            continue
        for metric_index, metric in enumerate(robustness_metrics(binned)):
            if metrics is not None and metric not in metrics:
                continue
            result.comparisons.append(compare(binned, accuracy_values, comparison, metric, bin_width, min_trials,
                                              seed + 1000 * index + metric_index))
    return result


# ------------------------------------------------------------------------------------------ output
def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def print_analysis(analysis: Analysis, console: Any) -> None:
    """Two rich tables: importance per objective, and the equal-accuracy comparisons."""
    from rich.table import Table

    objectives = list(analysis.importance)
    params = sorted({p for values in analysis.importance.values() for p in values})
    table = Table(title=f"Importance of searched choices (PED-ANOVA) in study '{analysis.study}' "
                        f"({analysis.trials} completed trials)")
    table.add_column("parameter")
    for name in objectives:
        table.add_column(name, justify="right")
    for param in params:
        table.add_row(param, *[_fmt(analysis.importance.get(name, {}).get(param), 2) for name in objectives])
    console.print(table)
    for name, note in analysis.importance_notes.items():
        console.print(f"importance for {name}: {note}")

    table = Table(title=f"Equal-accuracy comparisons (validation-accuracy bins {analysis.bin_width:g} points wide)",
                  caption=f"pooling: {POOLING_RULE}")
    for column in ("comparison", "metric", "A", "B", "ratio A/B", "95% interval", "difference", "better",
                   "n A vs B", "bins", "note"):
        table.add_column(column, justify="right" if column in {"A", "B", "ratio A/B", "difference", "bins"}
                         else "left")
    for row in analysis.comparisons:
        interval = (f"{row.ratio_low:.2f}-{row.ratio_high:.2f}" if row.ratio_low is not None else
                    f"diff {row.difference_low:.3g}..{row.difference_high:.3g}" if row.difference_low is not None
                    else "")
        table.add_row(f"{row.group_a} vs {row.group_b}", row.metric, _fmt(row.mean_a), _fmt(row.mean_b),
                      "" if row.ratio is None else f"{row.ratio:.2f}x", interval, _fmt(row.difference),
                      row.better, f"{row.n_a} vs {row.n_b}", str(row.bins), row.note)
    console.print(table)
    for name, note in analysis.not_compared.items():
        console.print(f"{name}: not compared, {note}")


CSV_FIELDS = ["kind", "comparison", "metric", "group_a", "group_b", "n_a", "n_b", "bins", "mean_a", "mean_b",
              "ratio", "ratio_low", "ratio_high", "difference", "difference_low", "difference_high", "note",
              "objective", "parameter", "importance"]


def write_analysis(analysis: Analysis, out_dir: Path) -> tuple[Path, Path]:
    """``analysis.csv`` (one row per comparison and metric, one per importance, one per comparison the study
    could not make) and ``analysis.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "analysis.csv", out_dir / "analysis.json"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in analysis.comparisons:
            writer.writerow({"kind": "comparison", **asdict(row)})
        for objective, values in analysis.importance.items():
            for param, value in values.items():
                writer.writerow({"kind": "importance", "objective": objective, "parameter": param,
                                 "importance": value})
        for name, note in analysis.not_compared.items():
            writer.writerow({"kind": "not compared", "comparison": name, "note": note})
    json_path.write_text(json.dumps(analysis.to_json(), indent=2))
    return csv_path, json_path
