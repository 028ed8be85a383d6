"""``nas search``: run (or resume) a multi-objective search from an experiment TOML file."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..cli_types import non_empty_str, non_negative_float, non_negative_int, positive_int, seed


def run_search_command(args: argparse.Namespace) -> int:
    from .. import config as config_module
    from ..files import check_folder_path
    from ..parallel import prepare_workers, run_local_workers
    from ..pareto import print_front, write_front
    from ..progress import SearchProgress, make_console
    from ..storage import default_artifact_dir
    from ..study import Experiment, counts, create_or_load, failure_budget, run_search
    from ..worker import create_only, run_with_reconnect

    config = config_module.load(args.config)
    config = config_module.apply_overrides(config, {  # --n-trials 0 creates the study and keeps the file's target
        "study.n_trials": args.n_trials or None, "study.storage": args.storage, "study.name": args.study_name,
        "study.seed": args.seed, "study.sampler": args.sampler, "study.timeout": args.timeout,
        "study.device": args.device, "data.data_dir": args.data_dir,
    })
    console = make_console()
    config = prepare_workers(config, args.workers, console)
    out_dir = Path(args.out) if args.out else default_artifact_dir(config["study"]["storage"]).parent
    check_folder_path(out_dir, "--out")  # a file in the way fails now, not after the trials have run
    if args.n_trials == 0:
        return create_only(config, args.resume, console)
    experiment = Experiment.from_config(config)
    study = create_or_load(config, resume=args.resume)
    n_trials = config["study"]["n_trials"]
    console.print(
        f"study '{study.study_name}': {len(experiment.dataset.train_x)} train / {len(experiment.dataset.val_x)} val "
        f"samples of {config['data']['name']}, space {config['space']['name']}, objectives "
        f"{', '.join(experiment.objective_names)}, sampler {config['study']['sampler']}, device {experiment.device}"
    )
    stopped_by = None
    failed_before = counts(study)["FAIL"]
    with SearchProgress(study, n_trials, console) as progress:
        if args.workers > 1:
            stopped_by = run_local_workers(study, config, args.workers, progress, console, out_dir / "logs")
        else:
            experiment.epoch_listener = progress.on_epoch
            run_with_reconnect(study, config["study"]["storage"], lambda: run_search(
                study, experiment, n_trials, timeout=config["study"]["timeout"] or None,
                max_failed=config["study"]["max_failed"] or None, callbacks=[progress]), console=console)
    tally = counts(study)
    if not tally["COMPLETE"]:  # a search without one result is a failure, not a success with an empty front
        sys.stderr.write(f"nas: error: {_no_trial_completed(study, stopped_by)}\n")
        return 1
    if tally["COMPLETE"] < n_trials:
        budget = failure_budget(n_trials, config["study"]["max_failed"] or None)
        too_many_failed = tally["FAIL"] - failed_before >= budget
        why = "too many FAILED trials (study.max_failed)" if too_many_failed else (stopped_by or "timeout reached")
        console.print(f"stopped with {tally['COMPLETE']}/{n_trials} COMPLETE trials: {why}; "
                      "see 'nas status' for failure reasons", style="yellow")
    print_front(study, console)
    csv_path, json_path = write_front(study, out_dir)
    console.print(f"Pareto front written to {csv_path} and {json_path}")
    return 1 if stopped_by and tally["COMPLETE"] < n_trials else 0  # workers crashed before the target


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
    return (f"no trial completed in study '{study.study_name}': {len(failed)} FAILED, "
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
    search.set_defaults(handler=run_search_command)
