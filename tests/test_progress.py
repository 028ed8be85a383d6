"""The live progress bar: counts what it is handed at once, other workers' trials at its next sync and at the end."""
from __future__ import annotations

import io

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from rich.console import Console

from nas.progress import SearchProgress


def _finished(values, state=TrialState.COMPLETE):
    return create_trial(state=state, values=values if state == TrialState.COMPLETE else None,
                        params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)})


def test_progress_reads_the_storage_only_at_syncs_and_ends_with_every_workers_trials():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("objective_names", ["accuracy", "params"])
    reads = []
    get_trials = study.get_trials
    study.get_trials = lambda *a, **k: reads.append(1) or get_trials(*a, **k)
    out = io.StringIO()
    progress = SearchProgress(study, n_trials=3, console=Console(file=out, width=200), sync_seconds=3600)
    assert len(reads) == 1
    with progress:
        study.add_trial(_finished([0.9, 500.0]))       # another worker's trial: not read yet
        study.add_trial(_finished([0.5, 100.0]))
        mine = get_trials()[-1]
        progress(study, mine)
        assert len(reads) == 1                          # no read per trial
        task = progress.progress.tasks[0]
        assert task.completed == 1 and "accuracy 0.5" in task.fields["status"]
        study.add_trial(_finished(None, TrialState.FAIL))
    task = progress.progress.tasks[0]
    assert len(reads) == 2                              # one read when it stops
    assert task.completed == 2
    assert "accuracy 0.9" in task.fields["status"] and "params 100" in task.fields["status"]
    assert "failed 1" in task.fields["status"]
    assert "trial 1 done" in out.getvalue()


def test_progress_syncs_with_the_storage_once_its_interval_has_passed():
    study = optuna.create_study(directions=["maximize"])
    study.set_user_attr("objective_names", ["accuracy"])
    progress = SearchProgress(study, n_trials=2, console=Console(file=io.StringIO()), sync_seconds=0.0)
    with progress:
        study.add_trial(_finished([0.8]))
        study.add_trial(_finished([0.6]))
        progress(study, study.trials[-1])
        assert progress.progress.tasks[0].completed == 2
        assert "accuracy 0.8" in progress.progress.tasks[0].fields["status"]
