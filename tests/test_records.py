"""A trial's bulky results live in one record artifact; user attributes stay small enough for any Optuna client."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import smoke_study
from nas.dashboard.source import Snapshot
from nas.errors import UsageError
from nas.records import RECORD_ATTR, RECORD_FIELDS, RecordError, Records, trial_record
from nas.study import Experiment, run_search

# Every user attribute of a trial together; optuna-dashboard renders them all in its trial list. Before records,
# one smoke-robust trial carried about 9,700 bytes (objectives 6,600, metrics 1,700).
MAX_ATTR_BYTES = 1200


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    folder = tmp_path_factory.mktemp("records")
    storage = f"sqlite:///{folder / 'records.db'}"
    _, study = smoke_study(storage, 2)
    return study, storage, folder


def test_user_attributes_are_small_and_the_record_holds_the_rest(searched):
    study, storage, _ = searched
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 2
    for trial in complete:
        attrs = trial.user_attrs
        assert not set(RECORD_FIELDS) & set(attrs), sorted(attrs)
        assert all(not isinstance(value, list) for value in attrs.values()), "no growing lists in user attributes"
        assert len(json.dumps(attrs)) < MAX_ATTR_BYTES, {k: len(json.dumps(v)) for k, v in attrs.items()}
        assert attrs["last_epoch"]["epoch"] == attrs["last_epoch"]["epochs"] == 2
        record = trial_record(study, trial)
        for field in RECORD_FIELDS:
            assert field in record, field
        assert len(record["history"]) == 2 and record["history"][-1]["epoch"] == 2
        assert record["metrics"]["accuracy"] == trial.values[0]
        assert record["requirements"]["accuracy"]["pass"] is attrs["feasible"]
        assert record["spec_summary"] == attrs["spec_summary"]  # small attributes are part of the view
        # Optuna knows the record as one of the trial's artifacts (optuna-dashboard lists and downloads it)
        metas = optuna.artifacts.get_all_artifact_meta(trial, storage=study._storage)
        assert attrs[RECORD_ATTR] in {meta.artifact_id for meta in metas}


def test_a_record_is_read_once_then_served_from_the_cache(searched, tmp_path):
    study, storage, folder = searched
    trial = study.get_trials(states=(TrialState.COMPLETE,))[0]
    first = trial_record(study, trial, storage)
    path = folder / "artifacts" / trial.user_attrs[RECORD_ATTR]
    moved = tmp_path / "record.json"
    path.rename(moved)  # records never change, so a second read does not touch the store
    try:
        assert trial_record(study, trial, storage) == first
    finally:
        moved.rename(path)


def _copy_with(study: optuna.Study, trial: optuna.trial.FrozenTrial, **attrs) -> optuna.trial.FrozenTrial:
    study.add_trial(optuna.trial.create_trial(values=trial.values, user_attrs={**trial.user_attrs, **attrs}))
    return study.get_trials()[-1]


def test_missing_or_altered_records_give_one_line(searched, tmp_path):
    study, storage, folder = searched
    trial = study.get_trials(states=(TrialState.COMPLETE,))[0]
    copy = optuna.copy_study(from_study_name=study.study_name, from_storage=storage,
                             to_storage=f"sqlite:///{tmp_path / 'copy.db'}", to_study_name="copy")
    copy = optuna.load_study(study_name="copy", storage=f"sqlite:///{tmp_path / 'copy.db'}")
    altered = _copy_with(copy, trial, record_artifact="../../etc/passwd")
    with pytest.raises(RecordError, match="is not an artifact id") as raised:
        trial_record(copy, altered)
    assert isinstance(raised.value, UsageError) and "\n" not in str(raised.value)
    gone = _copy_with(copy, trial, record_artifact="0" * 8 + "-0000-4000-8000-" + "0" * 12)
    with pytest.raises(RecordError, match="is missing from"):
        trial_record(copy, gone)
    garbage = folder / "artifacts" / "11111111-1111-4111-8111-111111111111"
    garbage.write_text("{not json")
    corrupt = _copy_with(copy, trial, record_artifact=garbage.name)
    with pytest.raises(RecordError, match="unreadable"):
        trial_record(copy, corrupt)
    with pytest.raises(RecordError, match="artifact folder not found"):
        trial_record(copy, trial, artifacts=tmp_path / "nowhere")
    # the dashboard and report draw the page anyway, with the reason on it
    snap = Snapshot.take(copy, f"sqlite:///{tmp_path / 'copy.db'}")
    view = snap.record(snap.trial(corrupt.number))
    assert "unreadable" in view["record_problem"] and view["spec_summary"] == trial.user_attrs["spec_summary"]


def test_studies_from_before_records_read_the_same_way():
    """Their bulky results are still user attributes: the loader returns them as they are."""
    study = optuna.create_study(directions=["maximize"])
    old = {"spec": {"space": "cnn", "ensemble": 2}, "recipe": {"epochs": 3}, "metrics": {"accuracy": 0.9},
           "history": [{"epoch": 1, "val_accuracy": 0.9}], "spec_summary": "cnn 8"}
    study.add_trial(optuna.trial.create_trial(values=[0.9], user_attrs=old))
    assert trial_record(study, study.trials[0]) == old
    assert Records(study)(study.trials[0])["metrics"] == {"accuracy": 0.9}


def test_a_stopped_trial_keeps_what_it_trained_as_its_record(tmp_path):
    """A trial that fails after training started still stores its spec, recipe and learning curve so far."""
    storage = f"sqlite:///{tmp_path / 'fail.db'}"
    config, study = smoke_study(storage, 1, search=False)
    experiment = Experiment.from_config(config)

    def fail_after_first_epoch(number: int, epoch: dict, epochs: int) -> None:
        raise RuntimeError("the machine caught fire")

    experiment.epoch_listener = fail_after_first_epoch
    run_search(study, experiment, 1, max_failed=1)
    (failed,) = study.get_trials(states=(TrialState.FAIL,))
    assert failed.user_attrs["fail_reason"] == "RuntimeError: the machine caught fire"
    record = trial_record(study, failed)
    assert len(record["history"]) == 1 and record["spec"]["space"] == "cnn" and "epochs" in record["recipe"]
    assert "metrics" not in record
    assert Path(study.user_attrs["artifacts"], failed.user_attrs[RECORD_ATTR]).is_file()
