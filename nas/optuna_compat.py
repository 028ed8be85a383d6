"""Every use of Optuna's private API, in one place, each behind a small function with its own test.

Optuna offers no public way to rank trials by constrained non-domination, to take the Pareto front of a
list of trials, to compute a hypervolume, to run its heartbeat outside ``study.optimize``, to reach a
study's storage and a trial's id, or to store several trial attributes in one transaction. We need all of
these, so they live here: when Optuna changes one, ``tests/test_optuna_compat.py`` names the helper that
broke, and this module is the only one to fix.
``pyproject.toml`` keeps ``optuna<6`` until the next major has been checked against those tests.

Storage subclasses in ``nas.storage`` also override private hooks of ``RDBStorage``; their names are
listed in :data:`RDB_STORAGE_HOOKS` so the tests can check they still exist with the same signatures.
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

# Private methods of optuna.storages.RDBStorage that nas.storage._RDBStorage overrides, with their parameters.
RDB_STORAGE_HOOKS: dict[str, tuple[str, ...]] = {
    "_get_stale_trial_ids": ("self", "study_id"),
    "check_trial_is_updatable": ("self", "trial_id", "trial_state"),
    "_set_trial_param": ("self", "trial_id", "param_name", "param_value_internal", "distribution",
                         "previous_distribution"),
}


def pareto_front(trials: Sequence[FrozenTrial], directions: Sequence[optuna.study.StudyDirection],
                 consider_constraint: bool = False) -> list[FrozenTrial]:
    """The non-dominated trials among ``trials`` (``study.best_trials`` works only on a whole study)."""
    from optuna.study._multi_objective import _get_pareto_front_trials_by_trials

    return list(_get_pareto_front_trials_by_trials(list(trials), list(directions),
                                                   consider_constraint=consider_constraint))


def non_domination_rank(losses: np.ndarray, penalty: np.ndarray | None = None) -> np.ndarray:
    """0-based non-domination rank of each row of ``losses`` (all minimised); with ``penalty`` (constraint
    violation per row, <= 0 feasible), feasible rows rank first and infeasible ones after, by violation."""
    from optuna.study._multi_objective import _fast_non_domination_rank

    return np.asarray(_fast_non_domination_rank(np.asarray(losses, dtype=float), penalty=penalty))


def constraints_key() -> str:
    """The system attribute holding a trial's constraint values (for building trials in tests and tools)."""
    from optuna.study._constrained_optimization import _CONSTRAINTS_KEY

    return _CONSTRAINTS_KEY


def study_storage(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes through (Optuna may wrap an RDB storage in a cache)."""
    return study._storage


def storage_backend(study: optuna.Study) -> BaseStorage:
    """The storage underneath Optuna's cache wrapper, i.e. the object :func:`nas.storage.open_storage` built."""
    storage = study_storage(study)
    return getattr(storage, "_backend", storage)


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (what storage methods take; not the trial's number)."""
    return trial._trial_id


def heartbeat_enabled(storage: BaseStorage) -> bool:
    """Does ``storage`` record heartbeats (an RDB storage opened with a heartbeat interval)?"""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return bool(is_heartbeat_enabled(storage))


def heartbeat_thread(trial_id_: int, storage: BaseStorage) -> AbstractContextManager[Any]:
    """A context manager recording the trial's heartbeat while it runs (Optuna does so only in ``optimize``)."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    return get_heartbeat_thread(trial_id_, storage)


def write_trial_fields(storage: optuna.storages.RDBStorage, trial_id_: int,
                       fields: Sequence[tuple[str, str, Any]]) -> None:
    """Store ``(kind, name, value)`` fields of one RUNNING trial in one transaction: kind ``"user"`` or
    ``"system"`` (an attribute and its value) or ``"param"`` (value: the arguments of ``RDBStorage._set_trial_param``
    after the name). ``RDBStorage`` commits once per field (on SQLite every commit waits for the disk) and looks the
    trial up again for each; here the trial is checked once, the parameters are added together and each kind of
    attribute is one multi-row upsert (SQLite and PostgreSQL; field by field elsewhere)."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    attribute_models = {"user": models.TrialUserAttributeModel, "system": models.TrialSystemAttributeModel}
    with _create_scoped_session(storage.scoped_session, True) as session:
        trial = models.TrialModel.find_or_raise_by_id(trial_id_, session)
        storage.check_trial_is_updatable(trial_id_, trial.state)
        params = {name: value for kind, name, value in fields if kind == "param"}
        if params:
            _add_params(session, trial, params)
        for kind, model in attribute_models.items():
            attributes = {name: value for kind_, name, value in fields if kind_ == kind}
            if attributes:
                _upsert_attributes(storage, session, model, trial, attributes)


def _add_params(session: Any, trial: Any, params: dict[str, tuple[Any, ...]]) -> None:
    """``RDBStorage._set_trial_param_without_commit`` for several parameters: one query for the distributions other
    trials of the study used (each new distribution must be compatible with it), one insert."""
    from optuna import distributions
    from optuna.storages._rdb import models

    unknown = [name for name, (_, _, previous) in params.items() if previous is None]
    earlier: dict[str, Any] = {}
    if unknown:
        rows = (session.query(models.TrialParamModel.param_name, models.TrialParamModel.distribution_json)
                .join(models.TrialModel).filter(models.TrialModel.study_id == trial.study_id)
                .filter(models.TrialParamModel.param_name.in_(unknown)).distinct().all())  # not one row per trial
        for name, distribution_json in rows:
            earlier.setdefault(name, distribution_json)
    for name, (value, distribution, previous) in params.items():
        if previous is None and name in earlier:
            previous = distributions.json_to_distribution(earlier[name])
        if previous is not None:
            distributions.check_distribution_compatibility(previous, distribution)
    session.add_all([models.TrialParamModel(trial_id=trial.trial_id, param_name=name, param_value=value,
                                            distribution_json=distributions.distribution_to_json(distribution))
                     for name, (value, distribution, _) in params.items()])


def _upsert_attributes(storage: optuna.storages.RDBStorage, session: Any, model: Any, trial: Any,
                       attributes: dict[str, Any]) -> None:
    import json
    import sqlite3

    from sqlalchemy.dialects import postgresql, sqlite

    dialect = {"postgresql": postgresql, "sqlite": sqlite if sqlite3.sqlite_version_info >= (3, 24) else None}
    module = dialect.get(storage.engine.name)
    if module is None:  # the dialects without a multi-row upsert in SQLAlchemy: Optuna's way, one by one
        for key, value in attributes.items():
            storage._set_trial_attr_without_commit(session, model, trial.trial_id, key, value)
        return
    insert = module.insert(model).values([{"trial_id": trial.trial_id, "key": key, "value_json": json.dumps(value)}
                                          for key, value in attributes.items()])
    session.execute(insert.on_conflict_do_update(index_elements=[model.trial_id, model.key],
                                                 set_={"value_json": insert.excluded.value_json}))


def hypervolume(losses: np.ndarray, reference: np.ndarray) -> float:
    """The hypervolume dominated by ``losses`` (rows of points, every objective minimised) up to ``reference``."""
    from optuna._hypervolume import compute_hypervolume

    points = np.asarray(losses, dtype=float).reshape(-1, len(reference))
    inside = points[np.all(points < reference, axis=1)]
    return float(compute_hypervolume(inside, np.asarray(reference, dtype=float))) if len(inside) else 0.0
