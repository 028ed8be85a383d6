"""A trial's record: its bulky results kept as one JSON artifact, read back through one cached loader.

Optuna user attributes are shown, in full, by every Optuna client (optuna-dashboard renders them in its trial
list), and each one is a storage write. So a trial keeps only small scalar attributes (``spec_summary``,
``recipe_summary``, ``seed``, ``feasible``, the artifact ids, ``last_epoch`` while it trains); the spec, recipe,
learning curve, objective results, metrics and requirement table go into ``record.json``, uploaded once when the
trial ends, beside the weights and details in the study's artifact store. Readers call :func:`trial_record` (or a
:class:`Records` loader for many trials) and get the record's fields merged with the small attributes; studies
written before records existed kept everything in user attributes and read the same way.
"""
from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial

from .errors import UsageError
from .storage import default_artifact_dir, is_artifact_id, open_artifact_store

RECORD_ATTR = "record_artifact"
LAST_EPOCH_ATTR = "last_epoch"  # the latest epoch's record while the trial trains (live progress)
RECORD_FIELDS = ("spec", "recipe", "history", "objectives", "metrics", "requirements", "outlier_families_seen")


class RecordError(UsageError):
    """A trial's record cannot be read: missing, corrupt, or its id was altered (one line, no traceback)."""


# ---------------------------------------------------------------------------------------------- where
def artifact_folders(study: optuna.Study, storage_url: str | None = None,
                     artifacts: str | Path | None = None) -> list[str]:
    """Where the study's artifacts may be: ``artifacts`` when given, else the folder (or ``s3://``) recorded on the
    study, then the default folder beside the storage file."""
    if artifacts:
        return [str(artifacts)]
    recorded = study.user_attrs.get("artifacts")
    candidates = [recorded] if isinstance(recorded, str) and recorded else []
    if storage_url:
        candidates.append(str(default_artifact_dir(storage_url)))
    return list(dict.fromkeys(candidates))


def _is_s3(location: str) -> bool:
    return location.startswith("s3:")


def existing_locations(study: optuna.Study, storage_url: str | None = None,
                       artifacts: str | Path | None = None) -> list[str]:
    """The candidates of :func:`artifact_folders` that exist here (folders resolved), ``s3://`` as recorded."""
    found = [c if _is_s3(c) else str(Path(c).resolve()) for c in artifact_folders(study, storage_url, artifacts)
             if _is_s3(c) or Path(c).is_dir()]
    return list(dict.fromkeys(found))


def artifact_location(study: optuna.Study, storage_url: str | None = None,
                      artifacts: str | Path | None = None) -> str | None:
    """The study's artifact store here: the first of :func:`existing_locations`, or None."""
    found = existing_locations(study, storage_url, artifacts)
    return found[0] if found else None


# ---------------------------------------------------------------------------------------------- read
@lru_cache(maxsize=4096)
def read_json_artifact(location: str, artifact_id: str) -> Any:
    """One JSON artifact. Artifacts never change once written, so reads are cached by id (errors are not)."""
    if not is_artifact_id(artifact_id):
        raise ValueError(f"{artifact_id!r} is not an artifact id")
    store = open_artifact_store(location)  # an existing folder or s3://: nothing is created
    with store.open_reader(artifact_id) as reader:
        return json.loads(reader.read())


class Records:
    """The merged view of the trials of one study: record fields plus small user attributes.

    Example::

        records = Records(study, storage_url)
        metrics = [records(trial)["metrics"] for trial in study.get_trials(states=[TrialState.COMPLETE])]

    Args:
        study: the study holding the trials.
        storage_url: its storage, to find the default artifact folder beside an SQLite or journal file.
        artifacts: the artifact folder (or ``s3://``) to read, instead of the one recorded on the study.
    """

    def __init__(self, study: optuna.Study, storage_url: str | None = None,
                 artifacts: str | Path | None = None) -> None:
        self.study = study
        self.folders = artifact_folders(study, storage_url, artifacts)
        self.locations = existing_locations(study, storage_url, artifacts)

    def __call__(self, trial: FrozenTrial) -> dict[str, Any]:
        """The trial's view; a trial without a record (still training, or from an older study) is its user
        attributes. Raises :class:`RecordError` when a recorded record cannot be read."""
        attrs = trial.user_attrs
        artifact_id = attrs.get(RECORD_ATTR)
        if artifact_id is None:
            return dict(attrs)
        return {**self._read(trial.number, artifact_id), **attrs}

    def _read(self, number: int, artifact_id: Any) -> dict[str, Any]:
        if not is_artifact_id(artifact_id):
            raise RecordError(f"trial {number}: its record artifact id {artifact_id!r} is not an artifact id (it "
                              "would name a path outside the artifact folder); the study's storage was altered")
        if not self.locations:
            raise RecordError(f"trial {number}: artifact folder not found (looked in "
                              f"{', '.join(self.folders) or 'nowhere'}); pass --artifacts DIR, the folder "
                              "'nas search' wrote next to the storage, or run from the folder where it ran")
        for location in self.locations:
            try:
                record = read_json_artifact(location, artifact_id)
            except ArtifactNotFound:
                continue
            except (OSError, ValueError) as error:
                raise RecordError(f"trial {number}: its record {artifact_id} in {location} is unreadable "
                                  f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                                  "the artifact folder was altered") from None
            if not isinstance(record, dict):
                raise RecordError(f"trial {number}: its record {artifact_id} in {location} is corrupt "
                                  "(not a JSON object); the artifact folder was altered")
            return record
        raise RecordError(f"trial {number}: its record (artifact {artifact_id}) is missing from "
                          f"{', '.join(self.locations)}; pass --artifacts DIR pointing at the study's artifact folder")


def trial_record(study: optuna.Study, trial: FrozenTrial, storage_url: str | None = None,
                 artifacts: str | Path | None = None) -> dict[str, Any]:
    """The merged view of one trial (see :class:`Records`); cached by record id, so calling it again is cheap."""
    return Records(study, storage_url, artifacts)(trial)


# ---------------------------------------------------------------------------------------------- write
def write_record(trial: optuna.Trial, store: Any, record: dict[str, Any]) -> str:
    """Upload ``record`` as the trial's ``record.json`` (one artifact, one user attribute) and return its id."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "record.json"
        path.write_text(json.dumps(record, default=_plain), encoding="utf-8")
        artifact_id = upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)
    trial.set_user_attr(RECORD_ATTR, artifact_id)
    return artifact_id


def _plain(value: Any) -> Any:
    """Tensors and numpy values as plain JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
