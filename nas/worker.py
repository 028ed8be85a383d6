"""``nas worker``: join a stored study from any host and run trials until it holds its target.

A worker needs only the storage URL and the study name: the experiment config, the sampler and the
artifact store are read from the study. Any number of workers (and ``nas search --workers K`` children)
share one study; Optuna's storage is the only coordination. A worker that loses the database retries
with back-off for ``--retry-for`` seconds, then exits with code 3.

    nas worker --storage postgresql://nas@db-host/nas --study-name big --device cuda:0
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import time
import zlib
from typing import Any, Callable, TypeVar

import numpy
import optuna

from .errors import UsageError
from .storage import (HEARTBEAT_SECONDS, StorageUnavailable, TrialStranded, connection_error, describe_error,
                      fail_stranded_trial, is_connection_error, mask_url, worker_id)

T = TypeVar("T")
STORAGE_ENV = "NAS_STORAGE"  # keeps passwords out of shell history and `ps`
RETRY_SECONDS = 300.0


def run_with_reconnect(study: optuna.Study, storage_url: str, step: Callable[[], T], retry_for: float = RETRY_SECONDS,
                       console: Any = None) -> T:
    """Run ``step``; when the database drops, wait with back-off (1, 2, 4 .. 30 s) until it answers, then run it again.

    ``step`` must be safe to repeat (``run_search`` is: it counts what the study already holds). The clock
    restarts whenever the database answers; after ``retry_for`` seconds without an answer, raise
    :class:`StorageUnavailable`. A trial stranded by the drop (:class:`TrialStranded`) is FAILED, with the
    reason in its ``fail_reason``, and its parameters retried as soon as the database answers; if this worker
    gives up, the heartbeat of the other workers does the same.
    """
    while True:
        try:
            return step()
        except Exception as error:
            if not is_connection_error(error):
                raise
            stranded = error.number if isinstance(error, TrialStranded) else None
            lost_at, delay = time.monotonic(), 1.0
            reason = lost_reason = describe_error(connection_error(error), storage_url)
            while True:
                left = retry_for - (time.monotonic() - lost_at)
                if left <= 0:
                    raise StorageUnavailable(
                        f"lost the connection to {mask_url(storage_url)} for {retry_for:.0f} s ({reason}); "
                        "completed trials are stored, restart 'nas worker' once the database is reachable"
                    ) from None
                if console is not None:
                    console.print(f"storage {mask_url(storage_url)} unreachable ({reason}); "
                                  f"retrying in {min(delay, left):.0f} s", style="yellow")
                time.sleep(min(delay, left))
                delay = min(2 * delay, 30.0)
                try:
                    study.user_attrs  # a cheap query: is the database back?
                    if stranded is not None:
                        cause = f"database unreachable during the trial ({lost_reason})"
                        retry = fail_stranded_trial(study, stranded, cause)
                        if console is not None:
                            console.print(f"[yellow]storage is back; trial {stranded} was cut off and is marked FAILED"
                                          + (f", its parameters retried as trial {retry}" if retry is not None else ""))
                    break
                except Exception as again:
                    if not is_connection_error(again):
                        raise
                    reason = describe_error(connection_error(again), storage_url)


def create_only(config: dict[str, Any], resume: bool, console: Any) -> int:
    """``nas search CONFIG --n-trials 0``: create the study with its config, then say how workers join it."""
    from .study import create_or_load

    study = create_or_load(config, resume=resume)
    url = mask_url(config["study"]["storage"])
    console.print(f"study '{study.study_name}' is ready in {url} "
                  f"(target {config['study']['n_trials']} COMPLETE trials, "
                  f"artifacts {study.user_attrs.get('artifacts')}); on any host run: "
                  f"nas worker --storage {shlex.quote(url)} --study-name {shlex.quote(study.study_name)}")
    return 0


def storage_from(args: argparse.Namespace) -> str:
    url = args.storage or os.environ.get(STORAGE_ENV)
    if not url:
        raise UsageError(f"--storage is required (or set {STORAGE_ENV}); e.g. --storage postgresql://user@host/db")
    return url


def _cmd_worker(args: argparse.Namespace) -> int:
    import torch
    from .progress import make_console

    from .config import apply_overrides
    from .progress import SearchProgress
    from .storage import load_study
    from .study import Experiment, counts, create_sampler, run_search, stored_config

    if args.threads:
        torch.set_num_threads(args.threads)
    url = storage_from(args)
    console = make_console()
    study = load_study(url, args.study_name, heartbeat_interval=args.heartbeat)
    config = apply_overrides(stored_config(study, url), {"study.device": args.device, "study.timeout": args.timeout})
    config["study"]["artifacts"] = study.user_attrs.get("artifacts") or config["study"]["artifacts"]
    n_trials = args.n_trials or config["study"]["n_trials"]
    if n_trials < 1:
        raise UsageError(f"study '{study.study_name}' was created with n_trials = 0; "
                         "pass --n-trials N (the target of COMPLETE trials)")
    experiment = Experiment.from_config(config)
    # Workers must not draw the same parameters: each seeds its sampler from the study seed, its host and pid.
    entropy = [config["study"]["seed"], len(study.get_trials(deepcopy=False)), os.getpid(),
               zlib.crc32(socket.gethostname().encode())]
    study.sampler = create_sampler(config["study"]["sampler"],
                                   int(numpy.random.SeedSequence(entropy).generate_state(1)[0]),
                                   config["study"].get("sampler_options"))
    remote = not url.startswith(("sqlite", "journal:"))
    if remote and not os.path.isabs(str(experiment.artifact_dir)) and "://" not in config["study"]["artifacts"]:
        console.print(f"artifacts go to the relative folder {experiment.artifact_dir} on this host; "
                      "for workers on several hosts set study.artifacts to a shared folder or s3://bucket/prefix",
                      style="yellow")
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    console.print(f"worker {worker_id()} joined study '{study.study_name}' in {mask_url(url)}: "
                  f"target {n_trials} COMPLETE trials, device {experiment.device}, "
                  f"{torch.get_num_threads()} thread(s) (OMP_WAIT_POLICY {wait_policy}), "
                  f"artifacts {experiment.artifact_dir}")
    try:
        with SearchProgress(study, n_trials, console) as progress:
            experiment.epoch_listener = progress.on_epoch
            run_with_reconnect(study, url, lambda: run_search(
                study, experiment, n_trials, timeout=config["study"]["timeout"] or None,
                max_failed=config["study"]["max_failed"] or None, callbacks=[progress]), args.retry_for, console)
    except KeyboardInterrupt as stop:
        console.print(f"worker stopped ({stop or 'SIGINT'}); a trial it was running is marked FAILED, "
                      "completed trials are stored")
        return 130
    tally = {state: n for state, n in counts(study).items() if n}
    console.print(f"worker {worker_id()} done; study '{study.study_name}': "
                  + ", ".join(f"{n} {s}" for s, n in tally.items()))
    return 0


def sigterm_as_interrupt(number: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(number).name)


def _run(args: argparse.Namespace) -> int:
    """SIGTERM outside a trial (loading data, backing off) stops the worker like Ctrl-C."""
    previous = signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    try:
        return _cmd_worker(args)
    except KeyboardInterrupt as stop:
        print(f"worker stopped ({stop or 'SIGINT'})")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def register_command(commands: Any) -> None:
    from .cli_types import non_empty_str, non_negative_float, positive_int

    worker = commands.add_parser(
        "worker", help="join a stored study (any host) and run trials until it holds its target",
        description="Join a study created by 'nas search' (the experiment config is stored on it) and run trials "
                    "until the study holds its target of COMPLETE trials. Start any number of workers, on any host, "
                    f"against the same storage. The storage URL may come from ${STORAGE_ENV} instead of --storage.",
    )
    worker.add_argument("--storage", type=non_empty_str,
                        help=f"storage URL, e.g. postgresql://user@host/db (default: ${STORAGE_ENV})")
    worker.add_argument("--study-name", type=non_empty_str,
                        help="study name (optional when the storage holds exactly one study)")
    worker.add_argument("--n-trials", type=positive_int,
                        help="target number of COMPLETE trials in the study (default: the study's n_trials)")
    worker.add_argument("--device", type=non_empty_str,
                        help="auto, cpu, cuda or cuda:N for this worker (default: the study's device)")
    worker.add_argument("--threads", type=positive_int,
                        help="torch CPU threads for this worker (default: torch's choice)")
    worker.add_argument("--timeout", type=non_negative_float,
                        help="stop starting new trials after this many seconds (0: no limit)")
    worker.add_argument("--heartbeat", type=positive_int, default=HEARTBEAT_SECONDS,
                        help=f"seconds between heartbeats on RDB storages (default {HEARTBEAT_SECONDS}); "
                             "a trial whose worker misses 4 of them is FAILED and retried")
    worker.add_argument("--retry-for", type=non_negative_float, default=RETRY_SECONDS,
                        help="seconds to keep retrying a lost database connection before exiting with code 3 "
                             f"(default {RETRY_SECONDS:.0f})")
    worker.set_defaults(handler=_run)
