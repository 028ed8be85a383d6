"""Open Optuna storages and artifact stores from a URL, with credentials never shown in clear."""
from __future__ import annotations

import re
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore

from .errors import UsageError

DEFAULT_STORAGE = "sqlite:///runs/nas.db"


def mask_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage for ``sqlite:///``/``postgresql://``..., a journal file for ``journal:PATH``."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if str(path) and str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
    elif "://" not in url:
        raise UsageError(f"storage {url!r} is not a storage URL; use sqlite:///PATH, postgresql://USER@HOST/DB or journal:PATH")
    engine_kwargs = {"pool_pre_ping": True}
    if not url.startswith("sqlite"):
        engine_kwargs.update(pool_size=2, max_overflow=2, pool_recycle=300)
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=None)
    except Exception as error:  # sqlalchemy/driver errors: one line, no password
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UsageError(f"cannot open storage {mask_url(url)}: {mask_url(reason)}") from None


def default_artifact_dir(storage_url: str) -> Path:
    """Artifacts live beside an SQLite/journal file (``runs/nas.db`` -> ``runs/artifacts``), else ``runs/artifacts``."""
    for prefix in ("sqlite:///", "journal:"):
        if storage_url.startswith(prefix):
            return Path(storage_url[len(prefix):]).parent / "artifacts"
    return Path("runs") / "artifacts"


def open_artifact_store(path: str | Path) -> FileSystemArtifactStore:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))


def load_study(storage_url: str, study_name: str | None) -> optuna.Study:
    """Load an existing study or raise a one-line :class:`UsageError` listing the studies present."""
    storage = open_storage(storage_url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if study_name is None:
        if len(names) == 1:
            study_name = names[0]
        else:
            raise UsageError(f"--study-name is required; studies in {mask_url(storage_url)}: {', '.join(names) or 'none'}")
    if study_name not in names:
        raise UsageError(f"no study named '{study_name}' in {mask_url(storage_url)}; studies there: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=study_name, storage=storage)
