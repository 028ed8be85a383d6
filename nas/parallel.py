"""``nas search --workers K``: K ``nas worker`` processes on this machine share one study.

The parent creates the study, starts the workers, divides the CPU threads between them (or gives each
its own GPU), and drives the live progress display from the storage, so it covers every worker.
SQLite lets one writer in at a time, so a SQLite storage becomes Optuna's journal file beside it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import optuna
import torch
from optuna.trial import TrialState

from .errors import UsageError
from .paths import safe_filename
from .records import LAST_EPOCH_ATTR
from .storage import fail_trials_of_dead_workers, heartbeat_enabled
from .worker import STORAGE_ENV, sigterm_as_interrupt

STOP_GRACE_SECONDS = 60.0


def shared_storage(url: str) -> str:
    """A storage several local processes can write: ``sqlite:///runs/x.db`` -> ``journal:runs/x.journal``."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path or path == ":memory:":
            raise UsageError("--workers needs a storage on disk; use --storage journal:runs/nas.journal or postgresql://user@host/db")
        return f"journal:{Path(path).with_suffix('.journal')}"
    return url


def prepare_workers(config: dict[str, Any], workers: int, console: Any) -> dict[str, Any]:
    """Check ``--workers`` and, for several, move an SQLite storage to a journal file (announced, not silent)."""
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    url = config["study"]["storage"]
    if workers == 1 or shared_storage(url) == url:
        return config
    config = {**config, "study": {**config["study"], "storage": shared_storage(url)}}
    console.print(f"--workers {workers}: SQLite takes one writer at a time, "
                  f"so this search uses {config['study']['storage']} "
                  "(pass that --storage to 'nas status', 'nas dashboard' and --resume)")
    return config


def threads_per_worker(workers: int) -> int:
    """This machine's CPU cores split evenly, at least one thread each (``torch.set_num_threads``)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // workers)


def worker_devices(device: str, workers: int) -> list[str | None]:
    """One GPU per worker, round robin, when several are present and the study may use CUDA; else the study's device."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device in ("auto", "cuda") and count > 1:
        return [f"cuda:{index % count}" for index in range(workers)]
    return [None] * workers


@dataclass
class _Child:
    index: int
    process: subprocess.Popen
    log_path: Path
    log: IO[str]
    reported: bool = False

    def last_line(self) -> str:
        self.log.flush()
        lines = [line.strip() for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1] if lines else "no output"


def _stop(children: list[_Child], console: Any) -> None:
    """SIGTERM every worker (each abandons its trial, marked FAILED), wait, then SIGKILL stragglers."""
    console.print(f"stopping {sum(c.process.poll() is None for c in children)} worker(s)...")
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


class _Progress:
    """Feed trials finished by any worker into the search's progress callback, once each."""

    def __init__(self, study: optuna.Study, progress: Any) -> None:
        self.study, self.progress = study, progress
        self.seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}

    def poll(self) -> None:
        running = []
        for trial in self.study.get_trials(deepcopy=False):
            if trial.state.is_finished() and trial.number not in self.seen:
                self.seen.add(trial.number)
                self.progress(self.study, trial)
            elif trial.state == TrialState.RUNNING and isinstance(trial.user_attrs.get(LAST_EPOCH_ATTR), dict):
                running.append(trial)
        if running and hasattr(self.progress, "on_epoch"):
            latest = max(running, key=lambda t: t.number)  # the newest running trial, as one line
            epoch = latest.user_attrs[LAST_EPOCH_ATTR]
            self.progress.on_epoch(latest.number, epoch, int(epoch["epochs"]))


def run_local_workers(study: optuna.Study, config: dict[str, Any], workers: int, progress: Any, console: Any,
                      log_dir: Path, threads: int | None = None) -> str | None:
    """Run ``workers`` ``nas worker`` processes on the study until they all exit (target: ``study.n_trials``),
    each with ``threads`` CPU threads (default: the cores split evenly) and OpenMP threads that sleep when idle.

    Returns why the run may have stopped short (a worker that crashed or was killed), else ``None``.
    Ctrl-C or SIGTERM stops every worker (their running trials are marked FAILED) and re-raises.
    """
    threads = threads or threads_per_worker(workers)
    devices = worker_devices(config["study"]["device"], workers)
    log_dir.mkdir(parents=True, exist_ok=True)
    # The URL travels in the environment, never on a command line that `ps` shows.
    env = {**os.environ, STORAGE_ENV: config["study"]["storage"],
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    console.print(f"starting {workers} workers with {threads} CPU thread(s) each; logs in {log_dir}")
    children: list[_Child] = []
    previous = {number: signal.signal(number, handler) for number, handler in
                ((signal.SIGTERM, sigterm_as_interrupt), (signal.SIGINT, signal.default_int_handler))}
    try:
        for index, device in enumerate(devices):
            command = [sys.executable, "-m", "nas", "worker", "--study-name", study.study_name,
                       "--n-trials", str(config["study"]["n_trials"]), "--threads", str(threads)]
            command += ["--device", device] if device else []
            command += ["--timeout", str(config["study"]["timeout"])] if config["study"]["timeout"] else []
            log_path = log_dir / f"{safe_filename(study.study_name)}-worker{index}.log"
            log = log_path.open("w")
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            children.append(_Child(index, process, log_path, log))
        return _supervise(study, children, progress, console)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan the workers
        _stop(children, console)
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for child in children:
            child.log.close()


def _supervise(study: optuna.Study, children: list[_Child], progress: Any, console: Any) -> str | None:
    feed = _Progress(study, progress)
    problems: dict[int, str] = {}  # by worker index: the same order however the deaths are noticed
    while True:
        feed.poll()
        for child in children:
            code = child.process.poll()
            if code is None or child.reported:
                continue
            child.reported = True
            if code != 0:
                how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
                problems[child.index] = f"worker {child.index} {how} ({child.last_line()})"
                console.print(f"worker {child.index} (pid {child.process.pid}) {how}; log {child.log_path}",
                              style="yellow")
                if not heartbeat_enabled(study):
                    for number in fail_trials_of_dead_workers(study):
                        console.print(f"trial {number} of that worker is marked FAILED; "
                                      "its parameters are queued for a retry", style="yellow")
        if all(child.reported for child in children):
            feed.poll()
            return "; ".join(problems[index] for index in sorted(problems)) or None
        time.sleep(0.5)
