"""Multi-objective early stopping (nas.early_stopping): the rung rule, requirements at rungs, and whole studies
(one process, and two worker processes sharing a journal file) that end with exactly N COMPLETE trials."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from conftest import PATIENCE, component_text, run_nas

from nas import config as config_module
from nas.records import trial_record
from nas.early_stopping import PRUNED_REASON, EarlyStopping, out_of_reach, rung_records, standing
from nas.errors import UsageError
from nas.optuna_compat import hypervolume
from nas.storage import open_storage

GOOD_LR, BAD_LR = 0.01, 1e-6  # Adam at 1e-6 does not leave chance level within one epoch

CONFIG = """
[study]
name = "{name}"
sampler = "random"
n_trials = {n_trials}
seed = 0
storage = "journal:{workdir}/{name}.journal"
artifacts = "{workdir}/artifacts"
early_stopping = {{ rungs = [1], reduction_factor = 2, min_trials = 2 }}
[data]
name = "synthetic"
synthetic_size = 400
[space]
name = "mlp"
depth = 1
width = 16
activation = "relu"
dropout = 0.0
batch_norm = false
ensemble = 1
[training]
epochs = 3
batch_size = 32
lr = [{good}, {bad}]
[objectives.accuracy]
[objectives.params]
"""


def write_config(workdir: Path, name: str, n_trials: int) -> Path:
    path = workdir / f"{name}.toml"
    path.write_text(CONFIG.format(name=name, n_trials=n_trials, workdir=workdir, good=GOOD_LR, bad=BAD_LR))
    return path


def create_with_queue(workdir: Path, name: str, n_trials: int, queued: int) -> tuple[dict, optuna.Study]:
    """The study of ``write_config``, with ``queued`` trials enqueued alternating good and bad learning rates."""
    from nas.study import create_or_load

    config = config_module.load(write_config(workdir, name, n_trials))
    study = create_or_load(config, resume=False)
    for index in range(queued):
        study.enqueue_trial({"train.lr": GOOD_LR if index % 2 == 0 else BAD_LR})
    return config, study


def lr_of(trial: optuna.trial.FrozenTrial) -> float | None:
    return trial.params.get("train.lr")  # None while a queued trial waits


# ---------------------------------------------------------------------------------------------- the rule
def test_everyone_continues_below_min_trials_then_only_the_best_share():
    worse = [np.array([0.0, 0.0])] * 2  # losses: the new trial (1, 1) is dominated by both
    assert standing(np.array([1.0, 1.0]), worse, [0, 1], 2, reduction_factor=2, min_trials=4).promoted
    place = standing(np.array([1.0, 1.0]), worse, [0, 1], 2, reduction_factor=2, min_trials=3)
    assert (place.promoted, place.position, place.keep, place.rank) == (False, 2, 1, 1)


def test_a_dominating_trial_is_never_stopped():
    rng = np.random.default_rng(0)
    for _ in range(50):
        others = list(rng.uniform(0.0, 1.0, size=(int(rng.integers(1, 30)), 3)))
        place = standing(np.array([-0.1, -0.1, -0.1]), others, list(range(len(others))), 99, 3, 1)
        assert place.promoted and place.position == 0 and place.rank == 0


def test_ties_within_a_rank_go_to_the_larger_hypervolume_contribution():
    # Four non-dominated points: two near-duplicates in the middle add little hypervolume; the new trial is one.
    others = [np.array([0.0, 1.0]), np.array([1.0, 0.0]), np.array([0.5, 0.5])]
    crowded = standing(np.array([0.51, 0.49]), others, [0, 1, 2], 3, reduction_factor=2, min_trials=1)
    assert crowded.rank == 0 and not crowded.promoted
    lonely = standing(np.array([0.2, 0.3]), others, [0, 1, 2], 3, reduction_factor=2, min_trials=1)
    assert lonely.promoted


def test_copies_of_a_point_share_its_contribution():
    # Three copies of (0.5, 0.5) beside two extremes (reference 1.1 after normalising): removing every copy loses
    # 0.25, removing an extreme 0.05. Each copy gets 0.25 (not 0, which each would get beside the others), so the
    # copies lead, in trial-number order.
    others = [np.array([0.0, 1.0]), np.array([1.0, 0.0]), np.array([0.5, 0.5]), np.array([0.5, 0.5])]
    copy = standing(np.array([0.5, 0.5]), others, [0, 1, 2, 3], 4, reduction_factor=2, min_trials=1)
    assert (copy.rank, copy.position, copy.keep) == (0, 2, 2)
    first = standing(np.array([0.5, 0.5]), others, [5, 6, 7, 8], 4, reduction_factor=2, min_trials=1)
    assert first.position == 0 and first.promoted


def test_hypervolume_helper_matches_a_hand_computed_area():
    assert hypervolume(np.array([[0.0, 0.5], [0.5, 0.0]]), np.array([1.0, 1.0])) == pytest.approx(0.75)
    assert hypervolume(np.empty((0, 2)), np.array([1.0, 1.0])) == 0.0


def test_requirements_stop_only_when_out_of_reach():
    bound = {"min": 0.8}
    # training does not change a parameter count: a failing bound stops at once
    assert "training does not change it" in out_of_reach("params", {"max": 100.0}, 250.0, [], 4, 0.05)
    assert out_of_reach("params", {"max": 100.0}, 50.0, [], 4, 0.05) is None
    # accuracy 0.3 at the rung: out of reach when COMPLETE trials gained at most 0.2 from here, not when one gained 0.6
    assert out_of_reach("accuracy", bound, 0.3, [0.1, 0.2, 0.05, 0.15], 4, 0.05).startswith("requirement accuracy")
    assert out_of_reach("accuracy", bound, 0.3, [0.1, 0.6, 0.05, 0.15], 4, 0.05) is None
    assert out_of_reach("accuracy", bound, 0.3, [0.1, 0.2], 4, 0.05) is None, "too few COMPLETE trials to judge"


def test_decide_reads_every_trial_at_the_rung_and_keeps_its_scores_when_it_stops():
    stopper = EarlyStopping(rungs=(1,), reduction_factor=2, min_trials=2, objective_names=["accuracy"],
                            directions=["maximize"])
    study = optuna.create_study(directions=["maximize"])
    for number, accuracy in enumerate([0.9, 0.8, 0.7]):
        study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, user_attrs={
            "rung_1": {"epoch": 1, "values": [accuracy], "metrics": {"accuracy": accuracy}}}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, values=[0.95]))  # never at the rung
    from objectives import ObjectiveResult

    low = study.ask()
    with pytest.raises(optuna.TrialPruned, match="position 3 of 4 trials"):
        stopper.decide(low, 1, {"accuracy": ObjectiveResult(0.75)}, {"accuracy": 0.75})
    record = study.trials[low.number].user_attrs["rung_1"]
    assert record["values"] == [0.75] and record["compared_with"] == [0, 1, 2] and record["decision"] == "stop"
    assert study.trials[low.number].user_attrs[PRUNED_REASON].startswith("early stopping after epoch 1: position 3")
    high = study.ask()
    stopper.decide(high, 1, {"accuracy": ObjectiveResult(0.99)}, {"accuracy": 0.99})  # best of 5: continues
    assert study.trials[high.number].user_attrs["rung_1"]["decision"] == "continue"


def test_config_errors_name_the_key_and_what_is_allowed():
    cases = {
        "rung 3 is not below training.epochs (2)": {"rungs": [1, 3]},
        "rungs must be strictly increasing": {"rungs": [2, 1]},
        "rungs must be a list of whole numbers >= 1": {"rungs": [0]},
        "reduction_factor = 1 is out of range; allowed: [2, 100]": {"rungs": [1], "reduction_factor": 1},
        "unknown key study.early_stopping.eta; allowed:": {"rungs": [1], "eta": 3},
    }
    for message, table in cases.items():
        with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            config_module.resolve({"study": {"early_stopping": table}, "training": {"epochs": 2}})
    assert config_module.resolve({})["study"]["early_stopping"]["rungs"] == [], "off by default"


# ---------------------------------------------------------------------------------------------- whole studies
def test_hopeless_trials_stop_at_the_first_rung_and_the_study_ends_with_n_complete(tmp_path):
    from nas.study import Experiment, run_search

    config, study = create_with_queue(tmp_path, "halving", n_trials=3, queued=12)
    run_search(study, Experiment.from_config(config), 3)
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3 and not [t for t in trials if t.state == TrialState.RUNNING]
    bad = [t for t in trials if lr_of(t) == BAD_LR and rung_records(t)]
    assert len(bad) >= 2
    for trial in bad:  # each stopped after its first epoch, with its rung scores and the reason
        # a stopped trial keeps its learning curve so far in its record
        assert trial.state == TrialState.PRUNED and len(trial_record(study, trial)["history"]) == 1
        assert rung_records(trial)[0]["decision"] == "stop" and "epoch 1" in trial.user_attrs[PRUNED_REASON]
    assert all(lr_of(t) == GOOD_LR and len(trial_record(study, t)["history"]) == 3 for t in complete)
    good_rungs = [rung_records(t)[0]["values"][0] for t in trials if lr_of(t) == GOOD_LR and rung_records(t)]
    assert min(good_rungs) > max(rung_records(t)[0]["values"][0] for t in bad), "the screen must tell them apart"
    # the dashboard's trial view shows the reason and one row per rung with the screened scores and the decision
    from nas.dashboard import callbacks
    from nas.dashboard.source import StudySource

    snap = StudySource(config["study"]["storage"]).snapshot("halving")
    page = component_text(callbacks.trial_body(snap, snap.trials[bad[0].number]))
    assert "Early-stopping rungs" in page and f"Stopped early: {bad[0].user_attrs[PRUNED_REASON]}" in page
    row = callbacks.rung_table(snap, snap.trials[bad[0].number])
    assert [r["decision"] for r in row] == ["stop"] and row[0]["accuracy ↑"] == rung_records(bad[0])[0]["values"][0]


def test_two_workers_share_rung_decisions_through_a_journal_file(tmp_path):
    # Four, not three: trial 1 (bad) may reach the rung first and finish, and trial 3 (bad, compared with the
    # earlier trials) must then still be needed, whatever the order the workers get there in.
    config, study = create_with_queue(tmp_path, "duo-es", n_trials=4, queued=12)
    env = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore"}
    search = subprocess.run([sys.executable, "-m", "nas", "search", str(tmp_path / "duo-es.toml"), "--resume",
                             "--workers", "2", "--threads", "1"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=PATIENCE)
    assert search.returncode == 0, search.stdout + search.stderr
    study = optuna.load_study(study_name="duo-es", storage=open_storage(config["study"]["storage"]))
    trials = study.get_trials()
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 4
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    at_rung = {t.number: t for t in trials if rung_records(t)}
    assert len({t.user_attrs["worker"] for t in at_rung.values()}) == 2, "both workers must have reached the rung"
    across = [t for t in at_rung.values() for other in rung_records(t)[0]["compared_with"]
              if at_rung[other].user_attrs["worker"] != t.user_attrs["worker"]]
    assert across, "a rung decision must have counted the other worker's trials"
    for trial in at_rung.values():  # every decision saw every earlier trial at the rung that had stored its scores
        assert len(rung_records(trial)[0]["compared_with"]) + 1 == rung_records(trial)[0]["competitors"]
    # A bad trial stops once at least `keep` of the trials it was compared with are good (they dominate it). Not
    # "every judged bad trial": on a long run, the good ones tie at accuracy 1.0 and later ones lose the tie, so the
    # rung fills with bad trials and a less bad one can be in the best half, as successive halving intends.
    judged = [t for t in at_rung.values() if lr_of(t) == BAD_LR and rung_records(t)[0]["competitors"] >= 2]
    outranked = [t for t in judged if sum(lr_of(at_rung[other]) == GOOD_LR for other in
                                          rung_records(t)[0]["compared_with"]) >= rung_records(t)[0]["keep"]]
    assert outranked and all(t.state == TrialState.PRUNED for t in outranked), "; ".join(
        f"{t.number} {t.state.name} lr={lr_of(t)} " + " ".join(f"{k}={v}" for k, v in rung_records(t)[0].items()
                                                             if k not in ("metrics", "seconds", "values"))
        for t in at_rung.values())
    assert "stopped: early stopping after epoch 1" in search.stdout


def test_nas_search_rejects_a_rung_at_the_last_epoch(tmp_path):
    path = write_config(tmp_path, "late", 1)
    path.write_text(path.read_text().replace("rungs = [1]", "rungs = [1, 3]"))
    result = run_nas("search", str(path), cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "study.early_stopping.rungs = [1, 3]: rung 3 is not below training.epochs (3)" in result.stderr
