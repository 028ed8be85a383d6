"""A read-only view of a live study, shared by ``nas dashboard`` and ``nas report``.

Nothing here writes to the storage or the artifact store, and no file path ever comes from a request:
the artifact folder is the study's own ``artifacts`` attribute and artifact ids come from trial attributes.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..card import estimates, fmt, fmt_interval, fmt_value
from ..pareto import front_trials, is_feasible, objective_names
from ..records import LAST_EPOCH_ATTR, RecordError, Records, read_json_artifact
from ..storage import is_artifact_id, open_existing_storage, study_names

ARROWS = {"maximize": "↑", "minimize": "↓"}


def _direction(direction: optuna.study.StudyDirection) -> str:
    return "maximize" if direction == optuna.study.StudyDirection.MAXIMIZE else "minimize"


@dataclass
class Snapshot:
    """One read of a study; every figure and table of one page is drawn from the same snapshot."""

    study: optuna.Study
    storage_url: str
    names: list[str]
    directions: list[str]
    trials: list[FrozenTrial]
    front: frozenset[int]
    front_feasible: bool
    records: Records
    _views: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def take(cls, study: optuna.Study, storage_url: str) -> "Snapshot":
        trials = study.get_trials(deepcopy=False)
        completed = {t.number for t in trials if t.state == TrialState.COMPLETE}
        front, feasible = front_trials(study) if completed else ([], True)
        return cls(
            study=study,
            storage_url=storage_url,
            names=list(objective_names(study)),
            directions=[_direction(d) for d in study.directions],
            trials=trials,
            front=frozenset(t.number for t in front if t.number in completed),
            front_feasible=feasible,
            records=Records(study, storage_url),
        )

    @property
    def artifact_location(self) -> str | None:
        return self.records.locations[0] if self.records.locations else None

    def record(self, trial: FrozenTrial) -> dict[str, Any]:
        """The trial's merged view (``nas.records``); a record that cannot be read leaves the small attributes
        and says why under ``record_problem`` (a line on the page, not a crash)."""
        view = self._views.get(trial.number)
        if view is None:
            try:
                view = self.records(trial)
            except RecordError as error:
                view = {**trial.user_attrs, "record_problem": str(error)}
            self._views[trial.number] = view
        return view

    @property
    def study_name(self) -> str:
        return self.study.study_name

    @property
    def completed(self) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state == TrialState.COMPLETE and t.values]

    def trial(self, number: Any) -> FrozenTrial | None:
        """The trial with this number, or None (``number`` may come from a request: it is only compared)."""
        try:
            number = int(number)
        except (TypeError, ValueError):
            return None
        return next((t for t in self.trials if t.number == number), None)

    def counts(self) -> dict[str, int]:
        tally = {state.name: 0 for state in TrialState}
        for trial in self.trials:
            tally[trial.state.name] += 1
        return tally

    def counts_text(self) -> str:
        tally = {state.lower(): n for state, n in self.counts().items() if n}
        return ", ".join(f"{n} {state}" for state, n in tally.items()) or "no trials yet"

    def signature(self) -> str:
        """Changes whenever a trial is added, changes state or logs another epoch (drives the live refresh)."""
        parts = [(t.number, t.state.name, _epoch(t)) for t in self.trials]
        return hashlib.sha1(json.dumps([self.study_name, parts]).encode()).hexdigest()[:16]

    def label(self, index: int) -> str:
        return f"{self.names[index]} {ARROWS[self.directions[index]]}"

    def feasible(self, trial: FrozenTrial) -> bool:
        return is_feasible(trial) and trial.user_attrs.get("feasible", True) is not False

    def best_values(self) -> dict[str, tuple[float, int]]:
        """Best value of each objective over completed trials and the trial that reached it (each objective
        on its own: usually different trials, so the row names them)."""
        best: dict[str, tuple[float, int]] = {}
        for index, name in enumerate(self.names):
            sign = 1 if self.directions[index] == "maximize" else -1
            ranked = sorted(self.completed, key=lambda t: (-sign * t.values[index], t.number))
            if ranked:
                best[name] = (ranked[0].values[index], ranked[0].number)
        return best

    def reference_point(self) -> list[float] | None:
        """Hypervolume reference point: per objective the worst value among feasible completed trials,
        pushed 10% of the observed range further (10% of |value| when all agree) so every front trial adds volume."""
        trials = [t for t in self.completed if self.feasible(t)] or self.completed
        if not trials or len(self.names) < 2:
            return None
        point = []
        for index, direction in enumerate(self.directions):
            values = [t.values[index] for t in trials]
            low, high = min(values), max(values)
            margin = 0.1 * (high - low) or 0.1 * abs(high) or 0.1
            point.append(low - margin if direction == "maximize" else high + margin)
        return point

    def ideal_point(self) -> list[float] | None:
        trials = [t for t in self.completed if self.feasible(t)] or self.completed
        if not trials:
            return None
        pick = {"maximize": max, "minimize": min}
        return [pick[d](t.values[i] for t in trials) for i, d in enumerate(self.directions)]


def _epoch(trial: FrozenTrial) -> int:
    """The trial's latest epoch: ``last_epoch`` while it trains, its learning curve's length in older studies."""
    last = trial.user_attrs.get(LAST_EPOCH_ATTR)
    if isinstance(last, dict) and isinstance(last.get("epoch"), int):
        return last["epoch"]
    return len(trial.user_attrs.get("history", ()))


class StudySource:
    """Loads snapshots of the studies in one storage, briefly cached so the callbacks of one refresh share a read."""

    def __init__(self, storage_url: str, max_age: float = 1.0) -> None:
        self.storage_url = storage_url
        self.storage = open_existing_storage(storage_url)
        self.max_age = max_age
        self._cache: dict[str, tuple[float, Snapshot]] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return study_names(self.storage)

    def snapshot(self, study_name: Any) -> Snapshot | None:
        """A fresh (at most ``max_age`` seconds old) snapshot, or None when no such study exists."""
        if not isinstance(study_name, str):
            return None
        with self._lock:
            cached = self._cache.get(study_name)
            if cached and time.monotonic() - cached[0] < self.max_age:
                return cached[1]
            if study_name not in self.names():
                return None
            study = optuna.load_study(study_name=study_name, storage=self.storage)
            snap = Snapshot.take(study, self.storage_url)
            self._cache[study_name] = (time.monotonic(), snap)
            return snap

    def study_rows(self) -> list[dict[str, Any]]:
        """One row per study: trials by state, objectives with directions, best values, start time."""
        rows = []
        for summary in optuna.get_all_study_summaries(self.storage, include_best_trial=False):
            snap = self.snapshot(summary.study_name)
            if snap is None:
                continue
            best = snap.best_values()
            rows.append({
                "study": snap.study_name,
                "trials": snap.counts_text(),
                "objectives": ", ".join(snap.label(i) for i in range(len(snap.names))),
                "front": (f"{len(snap.front)} trials" + ("" if snap.front_feasible else " (none feasible)")
                          if snap.front else "-"),
                "best of each objective": ", ".join(f"{name} {format_value(value)} (#{number})"
                                                    for name, (value, number) in best.items()) or "-",
                "started": summary.datetime_start.strftime("%Y-%m-%d %H:%M") if summary.datetime_start else "-",
            })
        return rows


def format_value(value: Any) -> str:
    """Table cells: the robustness card's number format, nested recipe values as compact JSON."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(", ", ": "))
    return fmt(value)


# ------------------------------------------------------------------------------------------- details
def load_details(snap: Snapshot, trial: FrozenTrial) -> tuple[dict[str, Any], str | None]:
    """The trial's ``details.json`` (``{objective: details}``) and, when it cannot be read, why not."""
    artifact_id = trial.user_attrs.get("details_artifact")
    if not artifact_id:  # not finished yet, or no objective of the study records details
        return {}, None
    if not is_artifact_id(artifact_id):
        return {}, "the trial's details_artifact id is malformed"
    if snap.artifact_location is None:
        return {}, (f"artifact folder '{snap.study.user_attrs.get('artifacts', '?')}' not found; "
                    "start the dashboard from the folder where 'nas search' ran")
    try:
        details = read_json_artifact(snap.artifact_location, artifact_id)
        if not isinstance(details, dict):
            raise ValueError("details.json is not a JSON object")
        return details, None
    except Exception as error:  # a missing file, an S3 client error, no boto3: a line on the page, not a crash
        return {}, (f"details artifact {artifact_id} could not be read "
                    f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")


# --------------------------------------------------------------------------------- plain-data views
# The numbers a reader looks at first; the rest stay one click away.
HEADLINE_METRICS = ("ood.min_auroc", "ood.max_fpr95", "adversarial.clean_accuracy", "adversarial.pgd_accuracy",
                    "adversarial.median_min_eps", "calibration.ece",
                    "explainability.deletion", "explainability.insertion")


def metric_columns(snap: Snapshot, trials: list[FrozenTrial]) -> tuple[list[str], list[str]]:
    """``(headline, rest)`` metric names over ``trials``: objectives, requirement metrics and the headline
    robustness metrics first, every other measured metric after."""
    views = [snap.record(t) for t in trials]
    measured = {m for view in views for m in (view.get("metrics") or {})}
    requirements = [m for view in views for m in (view.get("requirements") or {})]
    headline = [m for m in dict.fromkeys([*snap.names, *requirements, *HEADLINE_METRICS]) if m in measured]
    return headline, sorted(measured - set(headline))


def with_interval(view: dict[str, Any], metric: str, value: Any = None) -> Any:
    """``0.853 [0.82, 0.88]``: a measured number with its 95% interval (and the digits the interval supports)
    when the objective reported one; other values as they are. A bare number would read as exact.
    ``view`` is the trial's merged record (:meth:`Snapshot.record`), as for the tables below."""
    value = (view.get("metrics") or {}).get(metric) if value is None else value
    interval = estimates(view.get("objectives") or {}).get(metric, {}).get("interval")
    if interval is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return value
    return f"{fmt_value(value, interval)} {fmt_interval(interval)}"


def metric_table(snap: Snapshot, trials: list[FrozenTrial], metrics: list[str]) -> list[dict[str, Any]]:
    """One row per metric, one column per trial (``trial N``), each value with its 95% interval."""
    views = {t.number: snap.record(t) for t in trials}
    return [{"metric": m, **{f"trial {n}": with_interval(view, m) for n, view in views.items()}} for m in metrics]


def trial_row(snap: Snapshot, trial: FrozenTrial) -> dict[str, Any]:
    """Number, objective values, feasibility, front membership and spec summary of one completed trial."""
    row: dict[str, Any] = {"trial": trial.number}
    row.update({name: value for name, value in zip(snap.names, trial.values or ())})
    row["feasible"] = snap.feasible(trial)
    row["front"] = trial.number in snap.front
    row["spec"] = trial.user_attrs.get("spec_summary", "")
    return row


def objective_table(view: dict[str, Any]) -> list[dict[str, Any]]:
    """Each evaluated objective: value, seconds spent, and whether it was skipped (staged evaluation)."""
    rows = []
    for name, result in (view.get("objectives") or {}).items():
        rows.append({
            "objective": name,
            "value": ("skipped (a requirement already failed)" if result.get("skipped")
                      else format_value(with_interval(view, name, result.get("value")))),
            "seconds": format_value(result.get("seconds")),
        })
    return rows


def requirement_table(view: dict[str, Any]) -> list[dict[str, Any]]:
    """Each requirement: bound, measured value and PASS / FAIL / not evaluated."""
    rows = []
    for metric, row in (view.get("requirements") or {}).items():
        bound = " and ".join(f"{'≥' if side == 'min' else '≤'} {format_value(row[side])}"
                             for side in ("min", "max") if side in row)
        verdict = {True: "PASS", False: "FAIL", None: "not evaluated"}[row.get("pass")]
        value = format_value(with_interval(view, metric, row.get("value")))
        rows.append({"requirement": metric, "bound": bound, "value": value, "result": verdict})
    return rows


def architecture_layers(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """The spec as ``(layer, detail)`` boxes read left to right, for the drawn architecture."""
    if not isinstance(spec, dict):
        return []
    shape = spec.get("input_shape", [])
    layers = [("input", "×".join(map(str, shape))), ("normalize", "per channel")]
    activation = spec.get("activation", "")
    bn = " + BN" if spec.get("batch_norm") else ""
    if spec.get("space") == "cnn":
        card = spec.get("cardinality", 1)
        for i, block in enumerate(spec.get("blocks", [])):
            kind = f"ResNeXt block, {card} groups" if card > 1 else "conv"
            pool = "" if block.get("pool") == "none" else f", {block.get('pool')} pool"
            layers.append((f"block {i + 1}", f"{kind} {block.get('kernel')}×{block.get('kernel')}, "
                                             f"{block.get('channels')} ch{bn}, {activation}{pool}"))
        head = f"dropout {spec.get('dropout', 0)}"
        if spec.get("hidden"):
            head += f", linear {spec['hidden']}, {activation}"
        layers.append(("head", head))
    elif spec.get("space") == "mlp":
        for i, width in enumerate(spec.get("hidden", [])):
            layers.append((f"layer {i + 1}", f"linear {width}{bn}, {activation}, dropout {spec.get('dropout', 0)}"))
    elif spec.get("space") == "ensemble":  # `nas ensemble`: one box per member, its own layers in one line
        members = spec.get("members") if isinstance(spec.get("members"), list) else []
        weights = spec.get("weights") if isinstance(spec.get("weights"), list) else [1] * len(members)
        for i, (member, weight) in enumerate(zip(members, weights)):
            inner = "; ".join(f"{name} {detail}" for name, detail in architecture_layers(member)[2:])
            layers.append((f"member {i + 1} (weight {weight})", f"{member.get('space')}: {inner}"))
        return layers + [("output", "log of the members' weighted mean softmax")]
    else:
        skip = {"space", "input_shape", "num_classes", "normalize", "ensemble"}
        layers += [(key, json.dumps(value)) for key, value in spec.items() if key not in skip]
    layers.append(("output", f"linear {spec.get('num_classes', '?')} classes"))
    if spec.get("ensemble", 1) > 1:
        layers.append(("ensemble", f"× {spec['ensemble']} members, averaged softmax"))
    return layers
