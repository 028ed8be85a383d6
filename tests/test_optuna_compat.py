"""One test per helper of nas.optuna_compat: when an Optuna release moves a private API, the failing test names it."""
from __future__ import annotations

import inspect
import sqlite3

import numpy as np
import optuna
import pytest

from nas import optuna_compat
from nas.storage import _RDBStorage, open_storage

from conftest import wait_for

MAX, MIN = optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE


def _trials(values: list[tuple[float, float]], violations: list[float] | None = None) -> list[optuna.trial.FrozenTrial]:
    key = optuna_compat.constraints_key()
    return [
        optuna.trial.create_trial(values=list(v), system_attrs={key: [violations[i]]} if violations else {})
        for i, v in enumerate(values)
    ]


def _numbered(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    for number, trial in enumerate(trials):
        trial.number = number
    return trials


def test_pareto_front_of_a_list_of_trials():
    trials = _numbered(_trials([(0.9, 100), (0.8, 200), (0.95, 300), (0.5, 50)]))
    front = optuna_compat.pareto_front(trials, [MAX, MIN])
    assert sorted(t.number for t in front) == [0, 2, 3]  # (0.8, 200) is dominated by (0.9, 100)


def test_pareto_front_respects_constraints_when_asked():
    trials = _numbered(_trials([(0.9, 100), (0.99, 50)], violations=[-1.0, 3.0]))
    assert [t.number for t in optuna_compat.pareto_front(trials, [MAX, MIN])] == [1]
    assert [t.number for t in optuna_compat.pareto_front(trials, [MAX, MIN], consider_constraint=True)] == [0]


def test_non_domination_rank_with_and_without_penalty():
    losses = np.array([[1.0, 1.0], [2.0, 2.0], [0.5, 3.0], [0.0, 0.0]])
    assert optuna_compat.non_domination_rank(losses).tolist() == [1, 2, 1, 0]
    # the best row is infeasible: every feasible row ranks before it
    ranks = optuna_compat.non_domination_rank(losses, penalty=np.array([0.0, 0.0, 0.0, 5.0]))
    assert ranks.tolist() == [0, 1, 0, 2]


def test_constraints_key_is_what_trials_read_their_constraints_from():
    (trial,) = _trials([(1.0, 2.0)], violations=[0.25])
    assert list(trial.constraints.values()) == [0.25]


def test_storage_access_and_trial_ids(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'compat.db'}", heartbeat_interval=None)
    study = optuna.create_study(storage=storage, directions=["maximize"])
    running = study.ask()
    study.tell(study.ask(), 1.0)
    assert isinstance(optuna_compat.study_storage(study), optuna.storages.BaseStorage)
    assert isinstance(optuna_compat.storage_backend(study), _RDBStorage)
    for trial in [running, *study.get_trials(deepcopy=False)]:
        stored = optuna_compat.study_storage(study).get_trial(optuna_compat.trial_id(trial))
        assert stored.number == trial.number


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # we run our own ask/tell loop
def test_heartbeat_helpers_record_a_heartbeat(tmp_path):
    path = tmp_path / "heartbeat.db"
    assert not optuna_compat.heartbeat_enabled(optuna.storages.InMemoryStorage())
    storage = open_storage(f"sqlite:///{path}", heartbeat_interval=1)
    assert optuna_compat.heartbeat_enabled(storage)
    study = optuna.create_study(storage=storage, directions=["maximize"])
    trial = study.ask()
    trial_id = optuna_compat.trial_id(trial)

    def recorded() -> bool:
        with sqlite3.connect(path, timeout=60) as connection:
            return bool(connection.execute("SELECT 1 FROM trial_heartbeats WHERE trial_id = ?", (trial_id,)).fetchall())

    with optuna_compat.heartbeat_thread(trial_id, storage):
        wait_for(recorded, what="a heartbeat row for the running trial")
    study.tell(trial, 1.0)


@pytest.mark.parametrize("name", sorted(optuna_compat.RDB_STORAGE_HOOKS))
def test_overridden_rdb_storage_hooks_still_exist(name):
    method = getattr(optuna.storages.RDBStorage, name, None)
    assert method is not None, f"optuna.storages.RDBStorage.{name} is gone: nas.storage._RDBStorage overrides it"
    assert tuple(inspect.signature(method).parameters) == optuna_compat.RDB_STORAGE_HOOKS[name]


def test_hypervolume_of_losses_up_to_a_reference():
    reference = np.array([1.0, 1.0])
    assert optuna_compat.hypervolume(np.array([[0.5, 0.5]]), reference) == pytest.approx(0.25)
    # two boxes overlapping in [0.5, 1]^2: 0.5 * 0.75 + 0.75 * 0.5 - 0.25
    both = optuna_compat.hypervolume(np.array([[0.5, 0.25], [0.25, 0.5]]), reference)
    assert both == pytest.approx(0.5)
    assert optuna_compat.hypervolume(np.array([[1.5, 0.0]]), reference) == 0.0  # outside the reference box


def test_one_transaction_stores_a_trials_fields_in_one_commit(tmp_path):
    """Parameters, user and system attributes set inside ``nas.storage.one_transaction`` reach the database together
    when the block ends (another connection sees none of them before), also when the block raises."""
    from nas.storage import one_transaction

    path = tmp_path / "batch.db"
    study = optuna.create_study(storage=open_storage(f"sqlite:///{path}", heartbeat_interval=None),
                                directions=["maximize"])

    def stored(table: str) -> int:
        with sqlite3.connect(path, timeout=60) as connection:
            return connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    trial = study.ask()
    with one_transaction(trial):
        trial.suggest_float("lr", 1e-3, 1e-1, log=True)
        trial.suggest_categorical("width", [8, 16])
        trial.set_user_attr("seed", 7)
        trial.set_constraint("accuracy", -0.5)
        assert trial.params.keys() == {"lr", "width"} and trial.user_attrs["seed"] == 7  # the trial sees them now
        assert (stored("trial_params"), stored("trial_user_attributes"), stored("trial_system_attributes")) == (0, 0, 0)
    assert (stored("trial_params"), stored("trial_user_attributes"), stored("trial_system_attributes")) == (2, 1, 1)
    with pytest.raises(RuntimeError), one_transaction(trial):
        trial.set_user_attr("fail_reason", "diverged")
        trial.set_user_attr("seed", 8)  # an attribute already stored is overwritten
        raise RuntimeError("the trial's own error")
    study.tell(trial, 1.0)
    (stored_trial,) = optuna.load_study(study_name=study.study_name, storage=f"sqlite:///{path}").trials
    assert stored_trial.params["width"] in (8, 16) and stored_trial.user_attrs == {"seed": 8, "fail_reason": "diverged"}
    assert list(stored_trial.constraints.values()) == [-0.5]
    # A parameter whose choices differ from what the study's trials used is refused, as Optuna refuses it.
    other = optuna.load_study(study_name=study.study_name,
                              storage=open_storage(f"sqlite:///{path}", heartbeat_interval=None)).ask()
    with pytest.raises(ValueError, match="dynamic value space"), one_transaction(other):
        other.suggest_categorical("width", [8, 32])
    with pytest.raises(RuntimeError, match="finished"), one_transaction(trial):  # a finished trial takes nothing
        trial.set_user_attr("late", 1)
