"""Live progress for a search (rich): trial n/N, elapsed, ETA, best value per objective, failures."""
from __future__ import annotations

import os
import time

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .pareto import objective_names


def make_console() -> Console:
    """A rich console; when output is piped (logs, CI) tables get 160 columns instead of 80 so rows do not wrap.

    Markup is off: study names, fail reasons and paths are printed as they are (a ``[/]`` in a study name would
    otherwise be a markup error); colour comes from ``style=`` arguments and :class:`rich.text.Text`.
    """
    console = Console(markup=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(markup=False, width=160)
    return console


class SearchProgress:
    """A rich progress bar driven by an Optuna callback; works with several workers on one storage.

    The finished trials it is handed are added to what it knows; other workers' trials are read from the storage
    at most every ``sync_seconds`` and when it stops (a full read per trial was a fifth of a small trial's
    overhead).
    """

    def __init__(self, study: optuna.Study, n_trials: int, console: Console | None = None,
                 sync_seconds: float = 2.0) -> None:
        self.study = study
        self.sync_seconds = sync_seconds
        self.console = console or make_console()
        self.names = objective_names(study)
        self.progress = Progress(
            TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[status]}", markup=False),
            TextColumn("{task.fields[running]}", style="dim", markup=False),
            console=self.console, transient=False,
        )
        self.finished: dict[int, optuna.trial.FrozenTrial] = {}
        self._sync()
        done = sum(t.state == TrialState.COMPLETE for t in self.finished.values())
        self.task = self.progress.add_task("search", total=n_trials, completed=min(done, n_trials),
                                           status="", running="")

    def _sync(self) -> None:
        self.finished = {t.number: t for t in self.study.get_trials(deepcopy=False) if t.state.is_finished()}
        self.synced_at = time.monotonic()

    def __enter__(self) -> "SearchProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:  # after a failure (a lost database, Ctrl-C) the bar stays as it was
                self._sync()
                self._update_bar()
        finally:
            self.progress.stop()

    def on_epoch(self, trial_number: int, record: dict[str, float], epochs: int) -> None:
        """Show the running trial's epoch so long trials do not look stuck."""
        self.progress.update(self.task, running=f"trial {trial_number}: epoch {record['epoch']}/{epochs}, "
                                                f"val acc {record['val_accuracy']:.3f}")

    def _update_bar(self) -> None:
        complete = [t for t in self.finished.values() if t.state == TrialState.COMPLETE]
        failed = sum(t.state == TrialState.FAIL for t in self.finished.values())
        best = []
        for index, (name, direction) in enumerate(zip(self.names, self.study.directions)):
            if complete:
                pick = max if direction.name == "MAXIMIZE" else min
                best.append(f"{name} {pick(t.values[index] for t in complete):.4g}")
        status = "best: " + ", ".join(best) if best else ""
        if failed:
            status += f" | failed {failed}"
        self.progress.update(self.task, completed=min(len(complete), self.progress.tasks[0].total),
                             status=status, running="")

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if time.monotonic() - self.synced_at >= self.sync_seconds:
            self._sync()
        self.finished[trial.number] = trial
        self._update_bar()
        if trial.state == TrialState.FAIL:
            self.progress.console.print(f"trial {trial.number} FAILED: "
                                        f"{trial.user_attrs.get('fail_reason', 'unknown reason')}", style="yellow")
        elif trial.state == TrialState.PRUNED and trial.user_attrs.get("pruned_reason"):
            self.progress.console.print(f"trial {trial.number} stopped: {trial.user_attrs['pruned_reason']}",
                                        style="dim")
        elif trial.state == TrialState.COMPLETE:
            values = ", ".join(f"{n}={v:.4g}" for n, v in zip(self.names, trial.values))
            self.progress.console.print(f"trial {trial.number} done "
                                        f"({trial.user_attrs.get('spec_summary', '')}): {values}")
