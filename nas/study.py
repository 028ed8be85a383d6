"""The Optuna multi-objective study: sample a spec and recipe, train, score, store everything on the trial.

Requirements become Optuna constraints (``trial.set_constraint``); cheap objectives run first and,
when a requirement already fails, the expensive ones are skipped (staged evaluation).
"""
from __future__ import annotations

import contextlib
import gc
import json
import math
import signal
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
import torch
from optuna.artifacts import upload_artifact
from optuna.trial import FrozenTrial, TrialState
from safetensors.torch import save_file

import objectives
import search_spaces

from . import config as config_module
from . import data as data_module
from . import initial_design
from . import samplers
from .early_stopping import FINAL_METRICS_ATTR, EarlyStopping
from .errors import UsageError
from .recipe import recipe_summary, sample_recipe
from .records import LAST_EPOCH_ATTR, RECORD_ATTR, write_record
from .requirements import requirement_metrics, requirement_violation
from .robust_training import make_batch_loss
from .storage import (FAIL_REASON, HEARTBEAT_SECONDS, TrialStranded, default_artifact_dir, fail_trials_of_dead_workers,
                      heartbeat_enabled, heartbeat_thread, is_connection_error, mask_url, open_artifact_store,
                      one_transaction, open_existing_storage, open_storage, strip_credentials, study_names,
                      worker_id)
from .training import TrainingDiverged, resolve_device, train

CONFIG_ATTR = "config"


def create_sampler(name: str, seed: int, options: dict[str, Any] | None = None) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` of the registry in :mod:`nas.samplers` (built-in, installed or a reference)."""
    try:
        return samplers.create(name, seed, options)
    except LookupError as error:
        raise UsageError(f"study.sampler = {error}") from None


def check_requirements(metrics: dict[str, float],
                       requirements: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Per requirement: the measured value, the bound and whether it holds (None = not evaluated)."""
    table = {}
    for metric, bound in requirements.items():
        value = metrics.get(metric)
        holds = None if value is None else requirement_violation(value, bound) <= 0
        table[metric] = {**bound, "value": value, "pass": holds}
    return table


@dataclass
class Experiment:
    """Everything a worker needs to run trials, built from a resolved config alone."""

    config: dict[str, Any]
    dataset: data_module.Dataset
    device: torch.device
    artifact_dir: Path
    # Called after every epoch with (trial number, epoch record, total epochs): live progress hooks in here.
    epoch_listener: Callable[[int, dict[str, float], int], None] | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Experiment":
        dataset = data_module.load({**config["data"], "seed": config["data"]["seed"]})
        device = resolve_device(config["study"]["device"])
        artifact_dir = Path(config["study"]["artifacts"] or default_artifact_dir(config["study"]["storage"]))
        return cls(config, dataset, device, artifact_dir)

    @property
    def objective_names(self) -> list[str]:
        return list(self.config["objectives"])

    @property
    def directions(self) -> list[str]:
        return [objectives.get(name).direction for name in self.objective_names]

    def evaluated_objectives(self) -> list[objectives.Objective]:
        """Optimised objectives plus those only named by requirements, cheapest first."""
        options = dict(self.config["objectives"])
        needed = {requirement_metrics()[m][0] for m in self.config["requirements"]}
        for name in needed - set(options):
            options[name] = {}
        built = []
        for name, table in options.items():
            cls = objectives.get(name)
            built.append(cls(**{k: v for k, v in table.items() if k != "direction"}))
        return sorted(built, key=lambda objective: objective.cost_rank)

    def context(self, seed: int, recipe: dict[str, Any] | None = None,
                split: str = "val") -> objectives.EvaluationContext:
        """What objectives see on ``split`` ("val" during search, "test" in verify), seeded by the *study's*
        ``seed`` so that every trial, and every export of the study, is scored on the same samples."""
        if split not in ("val", "test"):
            raise ValueError(f"split must be 'val' or 'test', got {split!r}")
        test = split == "test"
        x, y = (self.dataset.test_x, self.dataset.test_y) if test else (self.dataset.val_x, self.dataset.val_y)
        return objectives.EvaluationContext(
            x=x, y=y, num_classes=self.dataset.num_classes, device=self.device, seed=seed, split=split,
            train_x=self.dataset.train_x, train_y=self.dataset.train_y, data_range=self.dataset.data_range,
            is_image=self.dataset.is_image, class_names=self.dataset.class_names,
            trained_outlier_families=tuple((recipe or {}).get("outlier_families_seen", ())),
            fit_x=self.dataset.val_x if test else None, fit_y=self.dataset.val_y if test else None,
            groups=self.dataset.test_groups if test else self.dataset.val_groups, group_names=self.dataset.group_names,
        )

    def score(self, model: torch.nn.Module, context: objectives.EvaluationContext,
              staged: bool = True) -> dict[str, objectives.ObjectiveResult]:
        """Run every needed objective, cheapest first; once a requirement fails, skip the rest."""
        requirements = self.config["requirements"]
        results: dict[str, objectives.ObjectiveResult] = {}
        failed = False
        for objective in self.evaluated_objectives():
            if failed and staged:
                results[objective.name] = objective.skipped()
                continue
            results[objective.name] = objective.evaluate(model, context)
            metrics = flatten_metrics(results)  # only what has been measured so far
            failed = any(requirement_violation(metrics[m], bound) > 0
                         for m, bound in requirements.items() if m in metrics)
        return results

    # ------------------------------------------------------------------------------------------ trial
    def run_trial(self, trial: optuna.Trial) -> tuple[float, ...]:
        """Train and score one trial; a failure is recorded as its ``fail_reason``, except a lost database
        connection, which is not the trial's fault (the trial is retried, see :func:`run_search`)."""
        record: dict[str, Any] = {}  # filled as the trial goes; stored as its record artifact when it ends
        try:
            return self._run_trial(trial, record)
        except optuna.TrialPruned:
            self._keep_partial_record(trial, record)
            raise  # stopped early: PRUNED, with its own reason
        except Exception as error:
            if is_connection_error(error):
                raise
            reason = f"{type(error).__name__}: {error}".splitlines()[0][:500]
            if isinstance(error, TrainingDiverged):
                reason = str(error)
            trial.set_user_attr(FAIL_REASON, reason)
            self._keep_partial_record(trial, record)
            raise

    def _run_trial(self, trial: optuna.Trial, record: dict[str, Any]) -> tuple[float, ...]:
        config = self.config
        seed = int(config["study"]["seed"]) + trial.number
        space = search_spaces.get(config["space"]["name"])
        ranges = {k: v for k, v in config["space"].items() if k != "name"}
        history: list[dict[str, float]] = []
        with one_transaction(trial):  # the sampled parameters and the first attributes, in one commit
            spec = {**space.sample(trial, ranges), **self.dataset.preprocessing()}
            recipe = sample_recipe(trial, config["training"])
            record.update(spec=spec, recipe=recipe, history=history)
            # Small scalar attributes only (what a plain Optuna client shows); the rest goes into the record.
            trial.set_user_attr("spec_summary", search_spaces.summary(spec))
            trial.set_user_attr("recipe_summary", recipe_summary(recipe))
            trial.set_user_attr("seed", seed)
            trial.set_user_attr("config_hash", config_module.fingerprint(config))
            trial.set_user_attr("device", str(self.device))

        torch.manual_seed(seed)
        model = search_spaces.build(spec)
        stopper = EarlyStopping.from_config(config)
        seed_of_study = int(config["study"]["seed"])

        def on_epoch(epoch: dict[str, float]) -> None:
            history.append(epoch)
            # live progress, a few rounded numbers; the whole curve goes into the record
            trial.set_user_attr(LAST_EPOCH_ATTR, {**{k: round(v, 4) for k, v in epoch.items()},
                                                  "epochs": int(recipe["epochs"])})
            if self.epoch_listener is not None:
                self.epoch_listener(trial.number, epoch, int(recipe["epochs"]))
            if stopper is not None and stopper.is_rung(int(epoch["epoch"]), int(recipe["epochs"])):
                # cheap screens at a rung; raises optuna.TrialPruned when the trial should stop (see early_stopping)
                results = stopper.screen(model, self.context(seed_of_study, recipe), self.evaluated_objectives())
                stopper.decide(trial, int(epoch["epoch"]), results, flatten_metrics(results))

        trained = train(model, recipe, self.dataset, self.device, seed, on_epoch=on_epoch,
                        batch_loss=self.batch_loss(recipe))
        record["outlier_families_seen"] = recipe.get("outlier_families_seen", [])

        # The study seed, not the trial seed: every trial is scored on the same validation subsets.
        context = self.context(int(config["study"]["seed"]), recipe)
        results = self.score(model, context)
        metrics = flatten_metrics(results)
        requirement_table = check_requirements(metrics, config["requirements"])
        record.update(objectives={name: result.to_json() for name, result in results.items()}, metrics=metrics,
                      requirements=requirement_table)
        with one_transaction(trial):  # what the trial's end stores, in one commit
            trial.set_user_attr("train_seconds", trained.seconds)
            trial.set_user_attr("feasible", all(row["pass"] for row in requirement_table.values()))
            # What early stopping compares across workers: a few numbers, readable without the record.
            trial.set_user_attr(FINAL_METRICS_ATTR, {m: metrics[m] for m in config["requirements"] if m in metrics})
            for metric, bound in config["requirements"].items():
                trial.set_constraint(metric, requirement_violation(metrics.get(metric), bound))
            self._store_artifacts(trial, model, results, record)
        values = tuple(results[name].value for name in self.objective_names)
        for name, value in zip(self.objective_names, values):
            if not math.isfinite(value):
                raise ValueError(f"objective '{name}' returned {value}")
        return values

    def _keep_partial_record(self, trial: optuna.Trial, record: dict[str, Any]) -> None:
        """A stopped or failed trial keeps what it got to (spec, recipe, learning curve) as its record.
        Best effort: the trial's own failure is what gets reported, not a second one here."""
        if not record or RECORD_ATTR in trial.user_attrs:
            return
        try:
            write_record(trial, open_artifact_store(self.artifact_dir), record)
        except Exception as error:  # e.g. the artifact store is what failed the trial
            if is_connection_error(error):
                raise

    def batch_loss(self, recipe: dict[str, Any]):
        """The per-batch training loss for this recipe: adversarial training and outlier exposure
        (``nas.robust_training``) when the recipe turns them on, else None (plain cross-entropy)."""
        return make_batch_loss(recipe, self.dataset.data_range)

    def _store_artifacts(self, trial: optuna.Trial, model: torch.nn.Module,
                         results: dict[str, objectives.ObjectiveResult], record: dict[str, Any]) -> None:
        store = open_artifact_store(self.artifact_dir)
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "weights.safetensors"
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(weights), metadata={"spec": json.dumps(record["spec"])})
            artifact = upload_artifact(artifact_store=store, file_path=str(weights), study_or_trial=trial)
            trial.set_user_attr("weights_artifact", artifact)
            details = {name: result.details for name, result in results.items() if result.details}
            if details:
                path = Path(tmp) / "details.json"
                path.write_text(json.dumps(details, default=_json_default))
                artifact = upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)
                trial.set_user_attr("details_artifact", artifact)
        write_record(trial, store, record)


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def flatten_metrics(results: dict[str, objectives.ObjectiveResult]) -> dict[str, float]:
    """``{"accuracy": 0.9, "adversarial.pgd_accuracy": 0.3, ...}``: the names requirements use."""
    flat: dict[str, float] = {}
    for name, result in results.items():
        if result.skipped:
            continue
        for metric, value in result.metrics.items():
            flat[name if metric == name else f"{name}.{metric}"] = float(value)
    return flat


# ---------------------------------------------------------------------------------------------- study
def _storable(config: dict[str, Any]) -> dict[str, Any]:
    """The config as stored on the study: plain JSON, storage URLs without credentials."""
    stored = json.loads(json.dumps(config))
    for table in (stored["study"], stored["study"]["warm_start"]):
        table["storage"] = strip_credentials(table["storage"])
    return stored


def create_or_load(config: dict[str, Any], resume: bool) -> optuna.Study:
    """Create the study (config stored on it) or, with ``resume``, load it and check the config matches."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_cfg = config["study"]
    # A resumed study must exist: a mistyped storage path or study name is an error, not a new empty study.
    url = study_cfg["storage"]
    design = [] if resume else initial_design.plan(config)  # first: a warm start that cannot be read creates nothing
    storage = open_existing_storage(url, HEARTBEAT_SECONDS) if resume else open_storage(url)
    name = study_cfg["name"]
    existing = study_names(storage)
    if resume and name not in existing:
        raise UsageError(
            f"--resume: no study named '{name}' in {mask_url(url)}; studies there: {', '.join(existing) or 'none'} "
            "(pass one of them as --study-name, or drop --resume to start a new study)"
        )
    if name in existing and not resume:
        raise UsageError(
            f"study '{name}' already exists in {mask_url(study_cfg['storage'])}; "
            "pass --resume to continue it or choose another --study-name"
        )
    if name in existing:
        study = optuna.load_study(study_name=name, storage=storage)
        stored = study.user_attrs.get(CONFIG_ATTR)
        if stored and config_module.fingerprint(stored) != config_module.fingerprint(config):
            raise UsageError(
                f"study '{name}' was created with a different experiment config; resume it with the same file "
                "(or 'nas worker'), or start a new --study-name"
            )
        n_done = len(study.get_trials(deepcopy=False))
        study.sampler = create_sampler(study_cfg["sampler"], study_cfg["seed"] + n_done, study_cfg["sampler_options"])
        base = stored or _storable(config)
        study.set_user_attr(CONFIG_ATTR, {**base, "study": {**base["study"], "n_trials": study_cfg["n_trials"]}})
        return study
    directions = [objectives.get(n).direction for n in config["objectives"]]
    study = optuna.create_study(
        study_name=name, storage=storage, directions=directions,
        sampler=create_sampler(study_cfg["sampler"], study_cfg["seed"], study_cfg["sampler_options"]),
    )
    study.set_user_attr(CONFIG_ATTR, _storable(config))
    study.set_user_attr("objective_names", list(config["objectives"]))
    study.set_user_attr("artifacts", str(config["study"]["artifacts"] or default_artifact_dir(study_cfg["storage"])))
    initial_design.enqueue(study, design)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(config["objectives"]))
    return study


def stored_config(study: optuna.Study, storage_url: str) -> dict[str, Any]:
    """The experiment config kept on the study (storage URL restored: it is stored without credentials)."""
    config = study.user_attrs.get(CONFIG_ATTR)
    if not config:
        raise UsageError(f"study '{study.study_name}' was not created by 'nas search' "
                         "(no experiment config stored on it)")
    config = json.loads(json.dumps(config))
    config["study"]["storage"] = storage_url
    return config_module.resolve(config)


def failure_budget(n_trials: int, max_failed: int | None) -> int:
    """FAILED trials one run tolerates before it stops: ``study.max_failed``, by default ``max(3, n_trials)``."""
    return max_failed or max(3, n_trials)


def is_searched(trial: FrozenTrial) -> bool:
    """A trial the search ran, not one ``nas ensemble`` built from stored trials (those do not count toward
    ``n_trials``)."""
    return "ensemble_members" not in trial.user_attrs


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state, searched trials only (see :func:`is_searched`)."""
    tally = {state.name: 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        if is_searched(trial):
            tally[trial.state.name] += 1
    return tally


class _StopSignals:
    """Ctrl-C / SIGTERM stop a search cleanly: the running trial is abandoned (FAILED with a reason), none starts.

    Without this, a signal landing between Optuna's bookkeeping steps could leave a trial RUNNING forever.
    """

    def __init__(self) -> None:
        self.requested: str | None = None
        self.in_trial = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: Any) -> None:
        self.requested = signal.Signals(number).name
        if self.in_trial:
            self.in_trial = False
            raise KeyboardInterrupt(self.requested)


def _is_surplus(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Would trial ``number`` overshoot ``n_trials``? Counts COMPLETE trials and unfinished ones created before it.

    Every worker applies this right after Optuna creates its trial, so two workers racing for the
    last slot cannot both run: the later trial number sees the earlier one and stands down.
    """
    ahead = 0
    for trial in study.get_trials(deepcopy=False):
        pending = trial.state in (TrialState.RUNNING, TrialState.WAITING) and trial.number < number
        if (trial.state == TrialState.COMPLETE or pending) and is_searched(trial):
            ahead += 1
    return ahead >= n_trials


@contextlib.contextmanager
def _frozen_start_up() -> Iterator[None]:
    """Keep start-up objects (~400k from imports, data, the study) out of the per-trial full collection, which
    then walks only what the trial made. After each trial its survivors are frozen too. Unfrozen on the way out,
    so a library caller's later objects are collected as usual."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _run_one_trial(study: optuna.Study, objective: Callable[[optuna.Trial], tuple[float, ...]],
                   callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]]) -> None:
    """Ask, run ``objective`` while the heartbeat beats, tell, call ``callbacks``: ``study.optimize`` for one trial,
    except that a lost database raises :class:`TrialStranded` and leaves the trial RUNNING.

    (``study.optimize(catch=(Exception,))`` would store a lost connection as the trial's failure, or, when the
    tell fails too, raise "cannot access local variable 'updated_state'" from Optuna's error path.)
    """
    trial = study.ask()
    values, state, interrupt = None, TrialState.FAIL, None
    try:
        with heartbeat_thread(study, trial):
            try:
                values, state = objective(trial), None  # None: tell checks the values and stores COMPLETE
            except optuna.TrialPruned:
                state = TrialState.PRUNED
            except KeyboardInterrupt as stop:
                interrupt = stop
            except Exception as error:
                if is_connection_error(error):
                    raise
        finished = study.tell(trial, values, state=state)
    except Exception as error:
        if interrupt is not None:  # stopping comes first; the heartbeat deals with the trial
            raise interrupt from None
        if is_connection_error(error):
            raise TrialStranded(trial.number) from error
        # Our trial was FAILED by another worker (missed heartbeats): its result is dropped, go on.
        if not (isinstance(error, (ValueError, optuna.exceptions.UpdateFinishedTrialError))
                and study.get_trials(deepcopy=False)[trial.number].state.is_finished()):
            raise
        return
    finally:
        gc.collect()  # walks only what this trial made: the rest is frozen (see _frozen_start_up)
    if interrupt is not None:
        raise interrupt
    for callback in callbacks:
        callback(study, finished)


def run_search(
    study: optuna.Study,
    experiment: Experiment,
    n_trials: int,
    timeout: float | None = None,
    max_failed: int | None = None,
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] | None = None,
    poll_seconds: float = 1.0,
) -> optuna.Study:
    """Run trials until the study holds exactly ``n_trials`` COMPLETE trials (or too many failed, or timeout).

    Safe with any number of workers on one storage: a worker waits while the trials under way elsewhere
    would reach the target, and a trial that would overshoot it is PRUNED before it trains. Trials of
    dead workers are FAILED and retried (heartbeats on RDB storages, process checks on a journal file).
    Raises ``KeyboardInterrupt`` after a Ctrl-C/SIGTERM, once the running trial is marked, and
    :class:`TrialStranded` when the database drops during a trial (see ``worker.run_with_reconnect``).
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    max_failed = failure_budget(n_trials, max_failed)
    failed_before = counts(study)["FAIL"]  # failures of earlier runs do not stop a resumed one
    deadline = time.monotonic() + timeout if timeout else None
    heartbeat = heartbeat_enabled(study)
    stop = _StopSignals()

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        trial.set_user_attr("worker", worker_id())
        if _is_surplus(study, trial.number, n_trials):
            trial.set_user_attr("surplus", True)
            raise optuna.TrialPruned(f"{n_trials} COMPLETE trials reached or under way in other workers")
        stop.in_trial = True
        try:
            if stop.requested:
                raise KeyboardInterrupt(stop.requested)
            return experiment.run_trial(trial)
        except KeyboardInterrupt:
            trial.set_user_attr(FAIL_REASON, f"abandoned: worker stopped by {stop.requested or 'SIGINT'}")
            raise
        except Exception as error:
            # The interrupt can surface as another error when a library wraps it: the stop is still the reason.
            if stop.requested and not is_connection_error(error):
                trial.set_user_attr(FAIL_REASON, f"abandoned: worker stopped by {stop.requested}")
            raise
        finally:
            stop.in_trial = False

    with stop, warnings.catch_warnings(), _frozen_start_up():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # _run_one_trial beats the heartbeat itself, as study.optimize would.
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize")
        while not stop.requested:
            if heartbeat:  # trials of dead workers: FAILED and retried
                optuna.storages.fail_stale_trials(study)
            else:
                fail_trials_of_dead_workers(study)
            tally = counts(study)
            if tally["COMPLETE"] >= n_trials or tally["FAIL"] - failed_before >= max_failed:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            if tally["COMPLETE"] + tally["RUNNING"] >= n_trials and not tally["WAITING"]:
                time.sleep(poll_seconds)
                continue
            _run_one_trial(study, objective, callbacks or [])
            gc.freeze()  # what outlives a trial (the first one's lazy imports, caches) lives as long as the process
    if stop.requested:
        raise KeyboardInterrupt(stop.requested)
    return study
