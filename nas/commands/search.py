"""``nas search``: run (or resume) a multi-objective search from an experiment TOML file."""
from __future__ import annotations

import argparse
import copy
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cli_types import non_empty_str, non_negative_float, non_negative_int, positive_int, seed
from ..errors import UsageError


# Keyword of ``nas.search`` (and, dashed, option of ``nas search``) -> the config entry it overrides.
OVERRIDES = {"n_trials": "study.n_trials", "storage": "study.storage", "study_name": "study.name", "seed": "study.seed",
             "sampler": "study.sampler", "timeout": "study.timeout", "device": "study.device",
             "data_dir": "data.data_dir"}


@dataclass
class SearchOutcome:
    """What a search run left behind, for the CLI (messages, exit code) and the Python API (the study)."""

    study: Any
    n_trials: int
    complete: int
    failure: str | None = None  # one line when the run failed: no COMPLETE trial, or workers crashed before the target


def search_config(source: str | os.PathLike | dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The resolved experiment: a TOML file (or a raw config table) with the given overrides, None = unset.

    ``n_trials=0`` keeps the file's target (it means "only create the study", see :func:`run_configured_search`).
    """
    from .. import config as config_module

    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise UsageError(f"unknown search option '{unknown[0]}'; allowed: {', '.join(OVERRIDES)}, resume, out, workers")
    if isinstance(source, dict):
        config = config_module.resolve(copy.deepcopy(source))
    elif isinstance(source, (str, os.PathLike)) and str(source):
        config = config_module.load(source)
    else:
        raise UsageError(f"config must be the path of an experiment TOML file or a config table, got {source!r}")
    values = {**overrides, "n_trials": overrides.get("n_trials") or None}
    return config_module.apply_overrides(config, {OVERRIDES[key]: value for key, value in values.items()})


def run_configured_search(config: dict[str, Any], *, create_only: bool = False, resume: bool = False,
                          workers: int = 1, out: str | os.PathLike | None = None,
                          console: Any = None, threads: int | None = None) -> SearchOutcome:
    """Run (or, with ``create_only``, only create) the study of a resolved config, as ``nas search`` does:
    progress and the Pareto front go to ``console``, the front's CSV/JSON to ``out`` (default: beside the storage).
    ``threads``: torch CPU threads of this process, or of each worker (default: the cores, split between workers)."""
    from ..files import check_folder_path
    from ..parallel import prepare_workers, run_local_workers
    from ..pareto import print_front, write_front
    from ..progress import SearchProgress, make_console
    from ..storage import default_artifact_dir, load_study
    from ..study import Experiment, counts, create_or_load, failure_budget, run_search
    from ..worker import create_only as create_study_only, run_with_reconnect

    console = console or make_console()
    config = prepare_workers(config, workers, console)
    out_dir = Path(out) if out else default_artifact_dir(config["study"]["storage"]).parent
    check_folder_path(out_dir, "--out")  # a file in the way fails now, not after the trials have run
    n_trials = config["study"]["n_trials"]
    if create_only:
        create_study_only(config, resume, console)
        study = load_study(config["study"]["storage"], config["study"]["name"])
        return SearchOutcome(study, n_trials, counts(study)["COMPLETE"])
    import torch

    if threads and workers == 1:
        torch.set_num_threads(threads)
    experiment = Experiment.from_config(config)
    study = create_or_load(config, resume=resume)
    console.print(
        f"study '{study.study_name}': {len(experiment.dataset.train_x)} train / {len(experiment.dataset.val_x)} val "
        f"samples of {config['data']['name']}, space {config['space']['name']}, objectives "
        f"{', '.join(experiment.objective_names)}, sampler {config['study']['sampler']}, device {experiment.device}"
        + ("" if workers > 1 else f", {torch.get_num_threads()} CPU thread(s)")
    )
    stopped_by = None
    failed_before = counts(study)["FAIL"]
    with SearchProgress(study, n_trials, console) as progress:
        if workers > 1:
            stopped_by = run_local_workers(study, config, workers, progress, console, out_dir / "logs", threads)
        else:
            experiment.epoch_listener = progress.on_epoch
            run_with_reconnect(study, config["study"]["storage"], lambda: run_search(
                study, experiment, n_trials, timeout=config["study"]["timeout"] or None,
                max_failed=config["study"]["max_failed"] or None, callbacks=[progress]), console=console)
    tally = counts(study)
    if not tally["COMPLETE"]:  # a search without one result is a failure, not a success with an empty front
        return SearchOutcome(study, n_trials, 0, _no_trial_completed(study, stopped_by))
    failure = None
    if tally["COMPLETE"] < n_trials:
        budget = failure_budget(n_trials, config["study"]["max_failed"] or None)
        too_many_failed = tally["FAIL"] - failed_before >= budget
        why = "too many FAILED trials (study.max_failed)" if too_many_failed else (stopped_by or "timeout reached")
        stopped = f"stopped with {tally['COMPLETE']}/{n_trials} COMPLETE trials: {why}"
        console.print(f"{stopped}; see 'nas status' for failure reasons", style="yellow")
        failure = stopped if stopped_by else None  # workers crashed before the target
    print_front(study, console)
    csv_path, json_path = write_front(study, out_dir)
    console.print(f"Pareto front written to {csv_path} and {json_path}")
    return SearchOutcome(study, n_trials, tally["COMPLETE"], failure)


def run_search_command(args: argparse.Namespace) -> int:
    config = search_config(args.config, {key: getattr(args, key) for key in OVERRIDES})
    outcome = run_configured_search(config, create_only=args.n_trials == 0, resume=args.resume,
                                    workers=args.workers, out=args.out, threads=args.threads)
    if outcome.failure and not outcome.complete:  # no front to print: the reason is the error line
        sys.stderr.write(f"nas: error: {outcome.failure}\n")
    return 1 if outcome.failure else 0


def _no_trial_completed(study: Any, stopped_by: str | None) -> str:
    """One line: the search ended without a COMPLETE trial, and the most common reason its trials FAILED."""
    from collections import Counter

    from optuna.trial import TrialState

    from ..storage import mask_url

    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    reasons = Counter(str(trial.user_attrs.get("fail_reason", "no reason recorded")) for trial in failed)
    if not reasons:
        return f"no trial completed in study '{study.study_name}' ({stopped_by or 'timeout reached'})"
    reason, times = reasons.most_common(1)[0]
    cause = f"{stopped_by}; " if stopped_by else ""  # dead workers explain the failures better than their symptoms
    return (f"no trial completed in study '{study.study_name}': {cause}{len(failed)} FAILED, "
            f"most often ({times} of {len(failed)}) with: {mask_url(reason)}")


def register_command(subparsers: Any) -> None:
    search = subparsers.add_parser(
        "search", help="run (or resume) a multi-objective search from an experiment TOML file",
        description="Run an Optuna multi-objective study: sample architectures and training recipes, "
                    "train each candidate, score every objective, print and write the Pareto front.")
    search.add_argument("config", type=non_empty_str, help="experiment TOML file, e.g. experiments/quickstart.toml")
    search.add_argument("--n-trials", type=non_negative_int,
                        help="target number of COMPLETE trials in the study (overrides study.n_trials)")
    search.add_argument("--storage", type=non_empty_str,
                        help="storage URL (overrides study.storage; default sqlite:///runs/nas.db)")
    search.add_argument("--study-name", type=non_empty_str, help="study name (overrides study.name)")
    search.add_argument("--seed", type=seed, help="base seed for the sampler and every trial (overrides study.seed)")
    search.add_argument("--sampler", type=non_empty_str,
                        help="tpe, nsga2, nsga3, random or gp (overrides study.sampler)")
    search.add_argument("--timeout", type=non_negative_float,
                        help="stop starting new trials after this many seconds (0: no limit)")
    search.add_argument("--device", type=non_empty_str, help="auto, cpu, cuda or cuda:N (overrides study.device)")
    search.add_argument("--data-dir", type=non_empty_str,
                        help="folder holding the dataset files (overrides data.data_dir)")
    search.add_argument("--resume", action="store_true",
                        help="continue an existing study with the same config; completed trials are kept")
    search.add_argument("--out", type=non_empty_str,
                        help="folder for the Pareto front CSV/JSON (default: next to the storage)")
    search.add_argument("--workers", type=positive_int, default=1,
                        help="worker processes on this machine (default 1); CPU threads are split between them, an "
                             "SQLite storage becomes a journal file beside it. --n-trials 0 only creates the study "
                             "for 'nas worker'")
    search.add_argument("--threads", type=positive_int,
                        help="torch CPU threads of the search, or of each worker with --workers (default: this "
                             "machine's cores, split between the workers); fewer threads often run faster on a "
                             "machine busy with other work")
    search.set_defaults(handler=run_search_command)
