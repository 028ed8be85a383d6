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
import threading
import urllib.parse
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages.journal import JournalFileSymlinkLock
from optuna.trial import FrozenTrial, TrialState

from . import optuna_compat
from .errors import UsageError
from .files import prepare_folder, reading
from .optuna_compat import storage_backend, study_storage, trial_id

DEFAULT_STORAGE = "sqlite:///runs/nas.db"
HEARTBEAT_SECONDS = 10
# A RUNNING trial whose worker missed this many heartbeats is FAILED and its parameters retried.
MISSED_HEARTBEATS = 4
MAX_RETRY = 2
# Per worker process: the main thread plus Optuna's heartbeat thread; never more, so
# `max_connections / 2` workers fit on one PostgreSQL server (use PgBouncer beyond that).
POOL_SIZE = 2
FAIL_REASON = "fail_reason"  # user attribute: why a trial FAILED, shown by the progress display, status and dashboard


class StorageUnavailable(UsageError):
    """The storage stopped answering during a run and did not come back in time. Exit code 3."""

    exit_code = 3


# Every place a database URL can carry a password, in the forms SQLAlchemy and libpq accept:
# ``scheme://user:SECRET@host/db`` and ``scheme://user@host/db?password=SECRET`` (also ``passwd=``, any case).
_USERINFO_PASSWORD = re.compile(r"(?P<keep>[A-Za-z][\w+.-]*://[^:/@\s]*):(?P<secret>[^\s]*)@")
_QUERY_PASSWORD = re.compile(r"(?P<keep>[?&](?:password|passwd)=)(?P<secret>[^&#\s]*)", re.IGNORECASE)


class TrialStranded(Exception):
    """The database dropped while this process ran trial ``number``: the trial is left RUNNING, to be FAILED and
    retried by :func:`fail_stranded_trial` once the database answers (``__cause__`` is the lost connection)."""

    def __init__(self, number: int) -> None:
        super().__init__(f"trial {number} could not be stored: the database connection was lost")
        self.number = number


def mask_url(text: str) -> str:
    """Hide every password in ``text`` (a URL, or a message holding URLs), for printing:
    ``postgresql://user:s@cret@host/db`` -> ``postgresql://user:***@host/db``,
    ``...?password=s`` -> ``...?password=***``."""
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


def connection_error(error: BaseException | None) -> BaseException | None:
    """The error in ``error``'s chain that says the database cannot be reached right now, else None.

    Describe this one, not ``error``: Optuna wraps a lost connection in a StorageInternalError whose message
    blames "invalid data in the commit, e.g. exceeding max length".
    """
    import sqlalchemy.exc

    lost = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DisconnectionError)
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, lost) or (isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated):
            return error
        error = error.__cause__ or error.__context__
    return None


def is_connection_error(error: BaseException) -> bool:
    """True when ``error`` (or what caused it) says the database cannot be reached right now."""
    return connection_error(error) is not None


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Several processes may share the file (``nas status`` beside a search): wait for locks, do not fail.
        return {"pool_pre_ping": True, "connect_args": {"timeout": 60}}
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_size": POOL_SIZE, "max_overflow": 0, "pool_timeout": 60,
                              "pool_recycle": 300}
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
    """Optuna's RDB storage, for workers that outlive database outages.

    A missed heartbeat is skipped: Optuna's thread dies on the first error, and the trial would later be failed as
    stale while it runs. A trial about to be failed as stale gets its ``fail_reason`` first (a finished trial takes
    no new attributes, and readers cache finished trials); :func:`retry_trial` then adds the retry's number.
    Inside :meth:`one_transaction` a trial's parameters and attributes are buffered and committed together.
    """

    _amending = threading.local()
    _batches = threading.local()  # per thread: {(storage, trial_id): {(kind, name): value}} while a block is open

    @contextlib.contextmanager
    def one_transaction(self, trial_id: int) -> Iterator[None]:
        """Parameters and user/system attributes this thread sets on trial ``trial_id`` inside the block are
        committed in one transaction when it ends, also when it raises (what was set before the error is kept)."""
        buffers = self._batches.__dict__.setdefault("buffers", {})
        if (id(self), trial_id) in buffers:  # nested: the outer block commits
            yield
            return
        buffers[id(self), trial_id] = {}
        try:
            yield
        finally:
            pending = buffers.pop((id(self), trial_id))
            if pending:
                optuna_compat.write_trial_fields(self, trial_id, [(*kind_name, value)
                                                                  for kind_name, value in pending.items()])

    def _buffered(self, trial_id: int, kind: str, name: str, value: Any) -> bool:
        """Keep the field for the open :meth:`one_transaction` of this trial; False when none is open."""
        pending = getattr(self._batches, "buffers", {}).get((id(self), trial_id))
        if pending is not None:
            pending[kind, name] = value
        return pending is not None

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        if not self._buffered(trial_id, "user", key, value):
            super().set_trial_user_attr(trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        if not self._buffered(trial_id, "system", key, value):
            super().set_trial_system_attr(trial_id, key, value)

    def _set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                         distribution: optuna.distributions.BaseDistribution,
                         previous_distribution: optuna.distributions.BaseDistribution | None) -> None:
        arguments = (param_value_internal, distribution, previous_distribution)
        if not self._buffered(trial_id, "param", param_name, arguments):
            super()._set_trial_param(trial_id, param_name, *arguments)

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except Exception as error:
            if not is_connection_error(error):
                raise

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = super()._get_stale_trial_ids(study_id)
        for stale_id in stale:
            worker = self.get_trial(stale_id).user_attrs.get("worker", "unknown")
            reason = f"heartbeat lost for over {self.grace_period} s: its worker {worker} died or could not reach " \
                     "the database"
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # another worker failed it already
                self.set_trial_user_attr(stale_id, FAIL_REASON, reason)
        return stale

    def check_trial_is_updatable(self, trial_id: int, trial_state: TrialState) -> None:
        if not getattr(self._amending, "active", False):
            super().check_trial_is_updatable(trial_id, trial_state)

    def amend_fail_reason(self, trial_id: int, reason: str) -> None:
        """Replace the ``fail_reason`` of a trial this process has just FAILED (Optuna refuses it otherwise)."""
        self._amending.active = True
        try:
            self.set_trial_user_attr(trial_id, FAIL_REASON, reason)
        finally:
            self._amending.active = False


STORAGE_FIX = ("pass the --storage URL that 'nas search' used (e.g. --storage sqlite:///runs/nas.db), "
               "or restore the file from a backup")


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
    # Only through SQLite, never open()/close() on the file: closing any descriptor of a database file drops
    # every POSIX lock this process holds on it, including those of a connection in use (SQLite's documented
    # pitfall), which broke a dashboard reading beside an in-process search.
    with reading(path, what, STORAGE_FIX):
        # Not mode=ro: a hot rollback journal left by a killed writer must be rolled back before reading.
        connection = sqlite3.connect(str(path), timeout=60)
        try:
            verdict = connection.execute("PRAGMA quick_check").fetchall()
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as error:
            kind = "is not an SQLite database" if "not a database" in str(error) else f"is damaged ({error})"
            raise UsageError(f"{what} {path} {kind}; {STORAGE_FIX}") from None
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
        raise UsageError(f"cannot open storage {mask_url(url)}: {describe_error(error, url)}; "
                         "check the URL, the password and that the server is running") from None


def _queue_retry(study: optuna.Study, trial: FrozenTrial) -> int | None:
    """Queue the parameters of a FAILED trial as a new WAITING trial (at most ``MAX_RETRY`` times); the retry's number.

    The retry gets a copy without the dead run's user attributes (partial history, its worker), so it starts clean.
    Queued once per dead trial even if two workers notice it. None when ``MAX_RETRY`` is reached.
    """
    def retry_of() -> int | None:
        trials = study.get_trials(deepcopy=False)
        return next((t.number for t in trials if trial.number in t.system_attrs.get("retry_history", ())), None)

    if (number := retry_of()) is not None:
        return number
    retry_class = (getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
                   or optuna.storages.RetryFailedTrialCallback)
    clean = copy.deepcopy(trial)
    clean.user_attrs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        retry_class(max_retry=MAX_RETRY)(study, clean)
    return retry_of()


def _with_retry(reason: str, retry: int | None) -> str:
    return f"{reason}; " + (f"parameters retried as trial {retry}" if retry is not None else
                            f"not retried: these parameters were retried {MAX_RETRY} times already")


def retry_trial(study: optuna.Study, trial: FrozenTrial) -> int | None:
    """Queue the parameters of a trial just FAILED as stale, and name the retry in its ``fail_reason``.

    Optuna's heartbeat-stale callback; :class:`_RDBStorage` wrote the reason before the trial was failed.
    Returns the retry's number (None when ``MAX_RETRY`` is reached).
    """
    retry = _queue_retry(study, trial)
    backend = storage_backend(study)
    if isinstance(backend, _RDBStorage):
        reason = trial.user_attrs.get(FAIL_REASON, "heartbeat lost")
        backend.amend_fail_reason(trial_id(trial), _with_retry(reason, retry))
    return retry


def fail_stranded_trial(study: optuna.Study, number: int, reason: str) -> int | None:
    """FAIL trial ``number``, left RUNNING when the database dropped under this process, say why, and retry it.

    Returns the retry's number; None when another worker failed it first (as stale: that one retries it and says why).
    """
    storage, stranded = study_storage(study), trial_id(study.get_trials(deepcopy=False)[number])
    with contextlib.suppress(ValueError, optuna.exceptions.UpdateFinishedTrialError):  # no longer RUNNING
        storage.set_trial_user_attr(stranded, FAIL_REASON, reason)
        study.tell(number, state=TrialState.FAIL)
    failed = storage.get_trial(stranded)
    if failed.state != TrialState.FAIL or failed.user_attrs.get(FAIL_REASON) != reason:
        return None
    return retry_trial(study, failed)


def one_transaction(trial: optuna.Trial) -> contextlib.AbstractContextManager[None]:
    """The parameters sampled and the attributes and constraints set on ``trial`` inside the block are stored in one
    transaction on an RDB storage (one commit, not one per field: an SQLite commit waits for the disk), elsewhere
    as they come. Optuna's own trial object sees them at once; other processes when the block ends."""
    backend = storage_backend(trial.study)
    return backend.one_transaction(trial_id(trial)) if isinstance(backend, _RDBStorage) else contextlib.nullcontext()


def heartbeat_enabled(study: optuna.Study) -> bool:
    """Does this study's storage record heartbeats (RDB storages opened by :func:`open_storage`)?"""
    return optuna_compat.heartbeat_enabled(study_storage(study))


def heartbeat_thread(study: optuna.Study, trial: optuna.Trial) -> Any:
    """A context manager recording ``trial``'s heartbeat while it runs (Optuna does so only in ``study.optimize``)."""
    return optuna_compat.heartbeat_thread(trial_id(trial), study_storage(study))


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
            # Retry first, then the reason naming it, then FAIL: a journal keeps no attribute set after FAIL.
            retry = _queue_retry(study, trial)
            reason = f"worker {trial.user_attrs['worker']} died (its process is gone)"
            study_storage(study).set_trial_user_attr(trial_id(trial), FAIL_REASON, _with_retry(reason, retry))
            study.tell(trial.number, state=TrialState.FAIL)
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
    """A folder (local, or shared by all workers) or ``s3://bucket[/prefix]``
    (needs boto3: ``pip install 'robust-nas[s3]'``)."""
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
            raise UsageError(f"--study-name is required; studies in {mask_url(storage_url)}: "
                             f"{', '.join(names) or 'none'}")
        study_name = names[0]
    return optuna.load_study(study_name=study_name, storage=storage)
