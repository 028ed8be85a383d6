"""Open Optuna storages and artifact stores from a URL, with credentials never shown in clear."""
from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import json
import os
import re
import socket
import sqlite3
import tempfile
import urllib.parse
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages.journal import JournalFileSymlinkLock
from optuna.trial import FrozenTrial, TrialState

from .errors import UsageError
from .files import prepare_folder, reading

DEFAULT_STORAGE = "sqlite:///runs/nas.db"
HEARTBEAT_SECONDS = 10
# A RUNNING trial whose worker missed this many heartbeats is FAILED and its parameters retried.
MISSED_HEARTBEATS = 4
MAX_RETRY = 2
# Per worker process: the main thread plus Optuna's heartbeat thread; never more, so
# `max_connections / 2` workers fit on one PostgreSQL server (use PgBouncer beyond that).
POOL_SIZE = 2


class StorageUnavailable(UsageError):
    """The storage stopped answering during a run and did not come back in time. Exit code 3."""

    exit_code = 3


# Every place a database URL can carry a password, in the forms SQLAlchemy and libpq accept:
# ``scheme://user:SECRET@host/db`` and ``scheme://user@host/db?password=SECRET`` (also ``passwd=``, any case).
_USERINFO_PASSWORD = re.compile(r"(?P<keep>[A-Za-z][\w+.-]*://[^:/@\s]*):(?P<secret>[^\s]*)@")
_QUERY_PASSWORD = re.compile(r"(?P<keep>[?&](?:password|passwd)=)(?P<secret>[^&#\s]*)", re.IGNORECASE)


def mask_url(text: str) -> str:
    """Hide every password in ``text`` (a URL, or a message holding URLs), for printing:
    ``postgresql://user:s@cret@host/db`` -> ``postgresql://user:***@host/db``, ``...?password=s`` -> ``...?password=***``."""
    text = _USERINFO_PASSWORD.sub(r"\g<keep>:***@", str(text))
    return _QUERY_PASSWORD.sub(r"\g<keep>***", text)


def strip_credentials(url: str) -> str:
    """``url`` without any password, for storing (a worker brings its own credentials): the userinfo password and
    ``password=``/``passwd=`` query parameters are removed, everything else is kept."""
    url = _USERINFO_PASSWORD.sub(r"\g<keep>@", str(url))
    url = re.sub(r"[?&](?:password|passwd)=[^&#\s]*", "", url, flags=re.IGNORECASE)
    return url if "?" in url or "&" not in url else url.replace("&", "?", 1)


def _passwords(url: str) -> set[str]:
    """The password(s) in ``url``, raw and percent-decoded, so they can be blanked out of any driver message."""
    found = {m.group("secret") for m in (*_USERINFO_PASSWORD.finditer(url), *_QUERY_PASSWORD.finditer(url))}
    found |= {urllib.parse.unquote_plus(secret) for secret in found}
    return {secret for secret in found if secret}


def describe_error(error: BaseException, url: str) -> str:
    """First line of a driver error with URLs masked and the password itself blanked out."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    reason = mask_url(reason)
    for secret in sorted(_passwords(url), key=len, reverse=True):
        reason = reason.replace(secret, "***")
    return reason


def is_connection_error(error: BaseException) -> bool:
    """True when ``error`` (or what caused it) says the database cannot be reached right now."""
    import sqlalchemy.exc

    lost = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DisconnectionError)
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, lost) or (isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated):
            return True
        error = error.__cause__ or error.__context__
    return False


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Several processes may share the file (``nas status`` beside a search): wait for locks, do not fail.
        return {"pool_pre_ping": True, "connect_args": {"timeout": 60}}
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_size": POOL_SIZE, "max_overflow": 0, "pool_timeout": 60, "pool_recycle": 300}
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": 10, "application_name": "nas"}
    return kwargs


def _heartbeat_kwargs(interval: int | None) -> dict[str, Any]:
    if not interval:
        return {}
    name = "heartbeat_stale_trial_callback"  # ``failed_trial_callback`` before Optuna 4.9
    if name not in inspect.signature(optuna.storages.RDBStorage.__init__).parameters:
        name = "failed_trial_callback"
    return {"heartbeat_interval": int(interval), "grace_period": MISSED_HEARTBEATS * int(interval), name: retry_trial}


class _RDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose heartbeat thread outlives a database blip: a missed beat is skipped.

    (Optuna's thread dies on the first error, and the trial would later be failed as stale while it runs.)
    """

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except Exception as error:
            if not is_connection_error(error):
                raise


STORAGE_FIX = ("pass the --storage URL that 'nas search' used (e.g. --storage sqlite:///runs/nas.db), "
               "or restore the file from a backup")
SQLITE_HEADER = b"SQLite format 3\x00"


def storage_file(url: str) -> Path | None:
    """The file behind an SQLite or journal URL (None for a server URL or an in-memory database)."""
    for prefix in ("sqlite:///", "journal:"):
        if url.startswith(prefix):
            path = url[len(prefix):]
            return Path(path) if path and path != ":memory:" else None
    return None


def _journal_problem(blob: bytes) -> str | None:
    """What makes ``blob`` not a journal of Optuna operations (one JSON object per line), or None."""
    *lines, tail = blob.split(b"\n")
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError:
            return f"line {number} is not JSON"
        if not isinstance(entry, dict) or not isinstance(entry.get("op_code"), int):
            return f"line {number} is not an Optuna journal entry (no op_code)"
    return f"its last line is cut off after {len(tail)} bytes (the file was truncated)" if tail else None


def _read_journal_locked(path: Path) -> bytes | None:
    """The journal read while holding its writers' lock (no append can be half-written), or None if we cannot lock."""
    lock = JournalFileSymlinkLock(str(path))
    try:
        lock.acquire()
    except OSError:  # a read-only folder: nobody can be appending there either
        return None
    try:
        return path.read_bytes()
    finally:
        lock.release()


def _check_journal(path: Path, what: str) -> None:
    """Optuna silently skips a garbled last line and a cut-off one, so a damaged journal would read as a smaller
    (or empty) study: every line must be an Optuna entry. A cut-off last line may be an append in progress, so
    it counts only if it is still there under the writers' lock."""
    with reading(path, what, STORAGE_FIX):
        blob = path.read_bytes()
        if not blob.endswith(b"\n"):
            blob = _read_journal_locked(path) or blob
    problem = _journal_problem(blob)
    if problem:
        raise UsageError(f"{what} {path} is not an intact Optuna journal: {problem}; {STORAGE_FIX}")


def _check_sqlite(path: Path, what: str, must_hold_study: bool) -> None:
    """An SQLite file must pass SQLite's own quick check (it only reads), so a truncated or garbled database is one
    line here, not a driver traceback in the middle of reading trials."""
    with reading(path, what, STORAGE_FIX):
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise UsageError(f"{what} {path} is not an SQLite database (no SQLite header); {STORAGE_FIX}")
    with reading(path, what, STORAGE_FIX):
        # Not mode=ro: a hot rollback journal left by a killed writer must be rolled back before reading.
        connection = sqlite3.connect(str(path), timeout=60)
        try:
            verdict = connection.execute("PRAGMA quick_check").fetchall()
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            connection.close()
    if verdict != [("ok",)]:
        raise UsageError(f"{what} {path} is damaged (SQLite quick_check: {verdict[0][0]}); {STORAGE_FIX}")
    if must_hold_study and "studies" not in tables:
        raise UsageError(
            f"{what} {path} is an SQLite database but holds no Optuna study (no 'studies' table); {STORAGE_FIX}"
        )


def _check_storage_file(url: str, path: Path, must_exist: bool) -> None:
    """The file behind an SQLite/journal URL is a readable storage (or, unless ``must_exist``, not there yet)."""
    what = f"storage {mask_url(url)}:"
    if path.exists() and not path.is_file():
        raise UsageError(f"{what} {path} is a folder or a device, not a storage file; {STORAGE_FIX}")
    if not path.is_file():
        if must_exist:
            raise UsageError(f"{what} no such file '{path}'; {STORAGE_FIX}")
        return
    if path.stat().st_size == 0:
        if must_exist:
            raise UsageError(f"{what} {path} is empty: no study was ever stored in it; {STORAGE_FIX}")
        return  # an empty file is a new storage to a writer
    if url.startswith("journal:"):
        _check_journal(path, what)
    else:
        _check_sqlite(path, what, must_hold_study=must_exist)


def open_storage(
    url: str, heartbeat_interval: int | None = HEARTBEAT_SECONDS, *, must_exist: bool = False
) -> optuna.storages.BaseStorage:
    """An RDB storage for ``sqlite:///``/``postgresql://``..., a journal file for ``journal:PATH``.

    RDB storages get Optuna heartbeats: a trial whose worker died is FAILED and retried (see :func:`retry_trial`).
    Journal files have no heartbeat; :func:`fail_trials_of_dead_workers` covers workers on this host.
    An existing SQLite or journal file is checked first: a damaged one is one line naming it. With ``must_exist``
    the file must be there and hold a study (readers: a typo is an error, not a new empty database).
    """
    if not url.startswith("journal:") and "://" not in url:
        raise UsageError(
            f"storage {url!r} is not a storage URL; use sqlite:///PATH, postgresql://USER@HOST/DB or journal:PATH"
        )
    path = storage_file(url)
    if path is not None:
        _check_storage_file(url, path, must_exist)
        prepare_folder(path.parent, f"storage {mask_url(url)}")
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        with reading(path, f"storage {mask_url(url)}: journal file", STORAGE_FIX):  # replaying the operations
            return JournalStorage(JournalFileBackend(str(path)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _RDBStorage(url, engine_kwargs=_engine_kwargs(url), **_heartbeat_kwargs(heartbeat_interval))
    except Exception as error:  # sqlalchemy/driver errors: one line, no password
        raise UsageError(f"cannot open storage {mask_url(url)}: {describe_error(error, url)}; check the URL, the password and that the server is running") from None


def retry_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue the parameters of a trial whose worker died as a new WAITING trial (at most ``MAX_RETRY`` times).

    Optuna's retry callback, given a copy without the dead run's user attributes (partial history, its
    worker), so the retried trial starts clean. Runs once per dead trial even if two workers notice it.
    """
    if any(trial.number in t.system_attrs.get("retry_history", ()) for t in study.get_trials(deepcopy=False)):
        return
    retry_class = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    clean = copy.deepcopy(trial)
    clean.user_attrs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        retry_class(max_retry=MAX_RETRY)(study, clean)


def heartbeat_enabled(study: optuna.Study) -> bool:
    """Does this study's storage record heartbeats (RDB storages opened by :func:`open_storage`)?"""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(study._storage)


def worker_id() -> str:
    """``host:pid`` of this process, stored on every trial it runs (attribute ``worker``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_trials_of_dead_workers(study: optuna.Study) -> list[int]:
    """FAIL and retry RUNNING trials whose worker process on this host is gone (killed, crashed).

    The heartbeat stand-in for journal storages; RDB storages rely on Optuna's heartbeats instead.
    """
    host = socket.gethostname()

    def orphans() -> list[FrozenTrial]:
        found = []
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner_host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
            if owner_host == host and pid.isdigit() and not _process_exists(int(pid)):
                found.append(trial)
        return found

    if not orphans():
        return []
    failed = []
    with _host_lock(f"nas-recover-{hashlib.sha256(study.study_name.encode()).hexdigest()[:16]}.lock"):
        for trial in orphans():  # again, under the lock: another worker may have taken them
            study.tell(trial.number, state=TrialState.FAIL)
            retry_trial(study, trial)
            failed.append(trial.number)
    return failed


@contextlib.contextmanager
def _host_lock(name: str) -> Iterator[None]:
    """An exclusive lock among the processes of this host (a journal file has no compare-and-set to lean on)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(Path(tempfile.gettempdir()) / name, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_ARTIFACT_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")


def is_artifact_id(value: object) -> bool:
    """An artifact id read from storage names a file in the artifact folder, never a path (no ``/``, no ``..``)."""
    return isinstance(value, str) and _ARTIFACT_ID.fullmatch(value) is not None


def default_artifact_dir(storage_url: str) -> Path:
    """Artifacts live beside an SQLite/journal file (``runs/nas.db`` -> ``runs/artifacts``), else ``runs/artifacts``."""
    for prefix in ("sqlite:///", "journal:"):
        if storage_url.startswith(prefix):
            return Path(storage_url[len(prefix):]).parent / "artifacts"
    return Path("runs") / "artifacts"


class _PrefixedArtifactStore:
    """An artifact store that keeps every artifact under ``prefix`` (``s3://bucket/prefix``)."""

    def __init__(self, store: Any, prefix: str) -> None:
        self.store, self.prefix = store, prefix

    def open_reader(self, artifact_id: str) -> IO[bytes]:
        return self.store.open_reader(self.prefix + artifact_id)

    def write(self, artifact_id: str, content_body: IO[bytes]) -> None:
        self.store.write(self.prefix + artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        self.store.remove(self.prefix + artifact_id)


def open_artifact_store(location: str | Path) -> Any:
    """A folder (local, or shared by all workers) or ``s3://bucket[/prefix]`` (needs boto3: ``pip install 'robust-nas[s3]'``)."""
    match = re.match(r"s3:/+([^/]+)/*(.*)$", str(location))  # Path() squashes s3:// to s3:/
    if match:
        try:
            import boto3  # noqa: F401
        except ImportError:
            raise UsageError(
                f"artifact store {location!s} needs boto3, which is not installed; run pip install 'robust-nas[s3]' "
                "or set study.artifacts to a folder"
            ) from None
        from optuna.artifacts import Boto3ArtifactStore

        store = Boto3ArtifactStore(match.group(1))
        prefix = match.group(2).strip("/")
        return _PrefixedArtifactStore(store, prefix + "/") if prefix else store
    return FileSystemArtifactStore(str(prepare_folder(location, "artifact folder (study.artifacts)")))


def open_existing_storage(url: str, heartbeat_interval: int | None = None) -> optuna.storages.BaseStorage:
    """Open a storage that must already exist: an SQLite or journal URL must name an existing file holding a
    study (a typo is an error, not a new empty database). No heartbeat thread by default: a reader never marks
    a trial stale."""
    return open_storage(url, heartbeat_interval=heartbeat_interval, must_exist=True)


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]


def check_study_name(storage: optuna.storages.BaseStorage, storage_url: str, study_name: str | None) -> list[str]:
    """The studies in the storage; raises a one-line :class:`UsageError` when ``study_name`` is not among them."""
    names = study_names(storage)
    if study_name is not None and study_name not in names:
        raise UsageError(
            f"no study named '{study_name}' in {mask_url(storage_url)}; studies there: {', '.join(names) or 'none'} "
            "(pass one of them as --study-name)"
        )
    return names


def load_study(storage_url: str, study_name: str | None, heartbeat_interval: int | None = None) -> optuna.Study:
    """Load an existing study; without a name the storage must hold exactly one. Errors are one line.

    Readers (status, export, dashboard, report) keep the default: no heartbeat thread. Workers pass theirs.
    """
    storage = open_existing_storage(storage_url, heartbeat_interval)
    names = check_study_name(storage, storage_url, study_name)
    if study_name is None:
        if len(names) != 1:
            raise UsageError(f"--study-name is required; studies in {mask_url(storage_url)}: {', '.join(names) or 'none'}")
        study_name = names[0]
    return optuna.load_study(study_name=study_name, storage=storage)
