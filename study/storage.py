"""Opening study storage with errors a user can act on, and recovering from dead workers."""

import contextlib
import datetime
import errno
import os
import random
import shlex
import socket
import sqlite3
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from cnn.cli import runnable
from study.artifacts import remove_trial_artifacts
from study.retry import patient, refused_for_good, storage_wait_seconds

DEFAULT_STORAGE = "sqlite:///runs/cnn-study.db"
HEARTBEAT_SECONDS = 30  # a running trial writes a heartbeat this often ...
GRACE_SECONDS = 120  # ... and is failed (and retried once) when silent this long
SQLITE_LOCK_SECONDS = 120  # how long a SQLite writer waits for the lock before "database is locked"
ORPHAN_SECONDS = 30  # a running trial this old that names no worker was left by a process of an earlier release killed as it
# asked for it (trials of this release name their worker in the same write that makes them RUNNING: StudyStorage)
SCHEMA_ATTEMPTS = 5  # tries to open a new database whose tables other processes are creating at the same moment

MAX_RETRIES = 1  # a trial whose machine went silent is run again this many times by the other machines' heartbeat check
# System attributes a trial queued again keeps: the grid point it runs (GridSampler's grid_id and search_space),
# or the parameters it was enqueued with (the baseline's fixed_params). Without them, Optuna's GridSampler would
# give the retry a new grid point and the dead trial's point would never be trained.
KEPT_SYSTEM_ATTRS = ("grid_id", "search_space", "fixed_params")


def queue_again(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Remove a failed trial's weights and queue its grid point (or parameters) to run again.

    The new trial carries none of the dead one's results: only what it must run (its grid point,
    parameters, and whether it was the baseline), with Optuna's ``failed_trial`` and
    ``retry_history`` system attributes.
    """
    remove_trial_artifacts(study, trial)  # its weights, if any, belong to no finished trial
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    kept = {k: v for k, v in trial.system_attrs.items() if k in KEPT_SYSTEM_ATTRS}
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={k: v for k, v in trial.user_attrs.items() if k == "baseline"},
            system_attrs={**kept, "failed_trial": trial.system_attrs.get("failed_trial", trial.number), "retry_history": history},
        )
    )


def retry_stale_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """The heartbeat's callback: queue again a trial whose machine went silent, unless it already was ``MAX_RETRIES`` times.

    (A grid point left out here is still run: the grid sampler gives every point without a finished,
    running or queued trial to a later trial, and a resumed study queues its failed trials again.)
    """
    if len(trial.system_attrs.get("retry_history", [])) >= MAX_RETRIES:
        remove_trial_artifacts(study, trial)
        return
    queue_again(study, trial)


class StudyError(ValueError):
    """A problem with the study or its storage; the message says what to do."""


class StorageFault(RuntimeError):
    """A fault of the storage while a study runs (disk full, server gone), in one line: :func:`describe_fault`'s."""


def mask_password(url: str) -> str:
    """The storage URL with any password replaced by ``***``, fit to print or store."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url.split("@")[-1] if "@" in url else url


def command_line(module: str, argv: list[str]) -> str:
    """``python -m MODULE ARGV`` as one shell line, with the password of a ``--storage`` URL masked."""
    shown = []
    for i, arg in enumerate(argv):
        if i > 0 and argv[i - 1] == "--storage":
            arg = mask_password(arg)
        elif arg.startswith("--storage="):
            arg = "--storage=" + mask_password(arg.split("=", 1)[1])
        shown.append(arg)
    return shlex.join(["python", "-m", module, *shown])


def output_dir(storage: str, study_name: str, kind: str) -> Path:
    """Where a study's ``kind`` ("artifacts", "report") goes: beside a SQLite file, else under ``runs/``.

    The folder is named after the storage and the study, so that two studies of one name in two databases of one
    folder (``runs/cnn-study.db`` and ``runs/t50.db``) never share it: ``runs/t50-cnn-study-report``. A database
    named after its study keeps the short name (``runs/cnn-study.db``, study cnn-study: ``runs/cnn-study-report``).
    """
    path = sqlite_path(storage)
    if path is not None:
        folder, database = path.parent, path.stem
    else:
        folder, database = Path("runs"), make_url(storage).database or make_url(storage).get_backend_name()
    name = study_name if database == study_name else f"{database}-{study_name}"
    return folder / f"{name}-{kind}"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for other storages."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def check_storage_url(url: str, create_folder: bool = False) -> None:
    """Refuse a malformed URL or a SQLite file in a missing folder, before anything is written."""
    example = "for example sqlite:///runs/study.db or postgresql://user:password@host:5432/dbname"
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise StudyError(f"malformed storage URL {mask_password(url)!r}; expected {example}") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql", "mysql"):
        raise StudyError(f"unsupported storage {backend!r} in {mask_password(url)!r}; use sqlite or postgresql, {example}")
    path = sqlite_path(url)
    if path is not None and not path.parent.is_dir():
        if create_folder:
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            raise StudyError(f"the folder {path.parent} of storage {mask_password(url)} does not exist; create it or fix --storage")
    if path is not None and path.is_dir():
        raise StudyError(f"storage {mask_password(url)} names a folder; name a database file such as {path}/study.db")


def open_storage(url: str, create_folder: bool = False, must_exist: bool = False) -> RDBStorage:
    """An RDB storage with heartbeats, long SQLite lock waits and short connect timeouts.

    Args:
        url: the storage URL.
        create_folder: create the folder of a SQLite file when it is missing.
        must_exist: refuse a SQLite file that does not exist yet, instead of creating it
            (for commands that only read a study).

    Opening an empty database creates Optuna's tables; when other processes are creating them at
    the same moment, it waits for them and tries again (up to ``SCHEMA_ATTEMPTS`` times).

    Raises:
        StudyError: the URL is malformed, its folder or file is missing, the file is not a study database
            (not SQLite, or another program's), the server does not answer within ``storage_wait_seconds()``,
            or the tables cannot be created.
    """
    check_storage_url(url, create_folder)
    path = sqlite_path(url)
    if must_exist and path is not None and not path.is_file():
        raise StudyError(f"there is no study database at {path}; run {runnable('python -m study.run')} first, or fix --storage")
    if path is not None and path.is_file():
        _check_sqlite_file(path, url)
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine_kwargs = {"connect_args": {"timeout": SQLITE_LOCK_SECONDS}}
    else:
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    attempt = 1
    waited_since = time.monotonic()
    while True:
        try:
            return _rdb_storage(url, engine_kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as error:
            # Workers started together on an empty database all create Optuna's tables; on PostgreSQL the
            # losers fail with a duplicate type or table. The winner commits the schema in a moment, and
            # another try finds it there.
            if attempt == SCHEMA_ATTEMPTS:
                raise StudyError(
                    f"cannot create the study tables in {mask_password(url)}: {_reason(error)}; "
                    "check that the database user may create tables"
                ) from None
            time.sleep(0.5 * attempt + random.random())
            attempt += 1
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as error:
            waited = time.monotonic() - waited_since
            if path is None and not refused_for_good(error) and waited < storage_wait_seconds():
                time.sleep(min(2.0, storage_wait_seconds() - waited))  # a server that is starting, or restarting
                continue
            if path is not None:
                raise StudyError(f"cannot open storage {mask_password(url)}: {_reason(error)}") from None
            raise StudyError(
                f"cannot open storage {mask_password(url)} (waited {waited:.0f} s): {_reason(error)}; "
                "check that the server runs and the URL is right"
            ) from None
        except sqlalchemy.exc.DatabaseError as error:
            raise StudyError(f"storage {mask_password(url)} is not a study database: {_reason(error)}; name another --storage") from None
        except ModuleNotFoundError as error:
            raise StudyError(f"storage {mask_password(url)} needs the {error.name} driver: pip install 'cnn-study[postgres]'") from None


def _check_sqlite_file(path: Path, url: str) -> None:
    """Refuse, without writing to it, a file that is not SQLite or a SQLite database of another program."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        raise StudyError(f"{path} is not a SQLite database ({error}); name a study database or a new file with --storage") from None
    if tables and "studies" not in tables:
        listing = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StudyError(
            f"{path} is a SQLite database of another program (tables: {listing}), not a study database; "
            "name a new file with --storage (for example runs/cnn-study.db)"
        )


NOT_BY_A_RERUN = "; rerunning the same command will not mend this"  # in the line of a fault a resume alone cannot fix


def resumable(fault: str) -> bool:
    """Whether rerunning the same command recovers from the storage fault ``fault`` (a line of :func:`describe_fault`)."""
    return NOT_BY_A_RERUN not in fault


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def describe_fault(error: BaseException, url: str) -> str | None:
    """One line for a fault of the storage itself (disk full, server gone, not a database), or None for other errors."""
    shown = mask_password(url)
    while isinstance(error, optuna.exceptions.StorageInternalError) and error.__cause__ is not None:
        error = error.__cause__  # Optuna wraps a failed commit in its own error
    orig = getattr(error, "orig", None)
    text = f"{error.orig if orig is not None else error}".lower()
    if (isinstance(error, OSError) and error.errno == errno.ENOSPC) or "disk is full" in text or "no space left" in text:
        return f"the disk holding {shown} is full"
    if "readonly database" in text or "read-only file system" in text or (isinstance(error, OSError) and error.errno == errno.EROFS):
        return (
            f"{shown} is read-only ({_first_line(text)}){NOT_BY_A_RERUN}: make the file and its folder writable (SQLite writes a "
            "journal beside the file), or copy the database to a writable place and name it with --storage"
        )
    if "database is locked" in text:
        return (
            f"{shown} stayed locked by another process for over {SQLITE_LOCK_SECONDS} s{NOT_BY_A_RERUN}: stop the process that "
            "holds it (fuser names it), or run many processes on one study through PostgreSQL"
        )
    if isinstance(error, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return f"lost the connection to {shown}: {_reason(error)}"
    if isinstance(error, sqlalchemy.exc.DatabaseError):
        return f"{shown} failed: {_reason(error)}"
    return None


class StudyStorage(RDBStorage):
    """Optuna's RDB storage, where a trial names its process (``worker_id``) in the same write that makes it RUNNING.

    ``study.ask()`` creates a trial (or takes a queued one) and only then lets the sampler give it a
    grid point; a process killed in between left a RUNNING trial that nobody could tell apart from
    one a live process was still choosing a point for, so it was failed only after ``ORPHAN_SECONDS``.
    Here the trial's ``worker`` user attribute (host and pid) is written in the transaction that
    creates it or pops it from the queue: from its first moment, a trial of a dead process is
    recognised as one (:func:`dead`).
    """

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        if template_trial is None:  # study.ask(): a new RUNNING trial; add_trial and enqueue pass their own template
            template_trial = FrozenTrial(
                number=-1,
                state=TrialState.RUNNING,
                value=None,
                datetime_start=datetime.datetime.now(),
                datetime_complete=None,
                params={},
                distributions={},
                user_attrs={"worker": worker_id()},
                system_attrs={},
                intermediate_values={},
                trial_id=-1,
            )
        return super()._create_new_trial(study_id, template_trial)

    def set_trial_state_values(self, trial_id: int, state: TrialState, values=None) -> bool:
        if state != TrialState.RUNNING or values is not None:
            return super().set_trial_state_values(trial_id, state, values)
        # study.ask() takes a queued trial: RUNNING, its start time and its process, in one transaction (as RDBStorage does
        # for the first two).
        try:
            with _create_scoped_session(self.scoped_session) as session:
                trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
                self.check_trial_is_updatable(trial_id, trial.state)
                if trial.state != TrialState.WAITING:
                    return False
                trial.state = TrialState.RUNNING
                trial.datetime_start = datetime.datetime.now()
                self._set_trial_attr_without_commit(session, models.TrialUserAttributeModel, trial_id, "worker", worker_id())
        except sqlalchemy.exc.IntegrityError:
            return False
        return True


    def fail_running(self, trial_id: int) -> bool:
        """Fail a RUNNING trial in one conditional write; False when it is RUNNING no longer.

        Any process may fail a dead process's trial (:func:`fail_dead_trials`), so two may try at
        once. Optuna's ``set_trial_state_values`` reads the state before it takes SQLite's write
        lock: both would fail the trial, and both would queue its point again. Here only one wins.
        """
        now_utc = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        with _create_scoped_session(self.scoped_session) as session:
            done = session.execute(
                sqlalchemy.update(models.TrialModel)
                .where(models.TrialModel.trial_id == trial_id, models.TrialModel.state == TrialState.RUNNING)
                .values({
                    models.TrialModel.state: TrialState.FAIL,
                    models.TrialModel._datetime_complete_utc: now_utc,  # naive UTC, as Optuna stores it
                })
                .execution_options(synchronize_session=False)
            )
            return done.rowcount == 1


class PatientStorage(StudyStorage):
    """Optuna's RDB storage for a database server: a call that cannot reach the server is tried again.

    A server that restarts (or a network that drops for a moment) is waited out for up to
    ``storage_wait_seconds()``; then the error goes up and the command says in one line what
    happened. (Writes are retried too: a write whose commit reached the server but whose answer
    was lost is rare, and at worst leaves a trial that a resume fails and queues again.)
    """


for _name in dir(optuna.storages.BaseStorage):
    if not _name.startswith("__") and callable(getattr(RDBStorage, _name, None)) and _name != "get_heartbeat_interval":
        setattr(PatientStorage, _name, patient(getattr(StudyStorage, _name)))
# Optuna's cache (``_CachedStorage``) calls these private methods of its backend directly.
for _name in ("record_heartbeat", "_get_stale_trial_ids", "_create_new_trial", "_set_trial_param", "_get_best_trial_id", "_get_trials",
              "fail_running"):
    setattr(PatientStorage, _name, patient(getattr(StudyStorage, _name)))


def _rdb_storage(url: str, engine_kwargs: dict) -> RDBStorage:
    kind = StudyStorage if make_url(url).get_backend_name() == "sqlite" else PatientStorage
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable in practice since v2
        return kind(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
            heartbeat_stale_trial_callback=retry_stale_trial,
        )


def _reason(error: sqlalchemy.exc.DBAPIError) -> str:
    """The first line of what the database said, without SQLAlchemy's SQL dump and links."""
    return str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__


def worker_id() -> dict:
    """Who runs a trial: lets a restarted command recognise trials of its own dead processes."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a zombie, killed but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    return True


def fail_dead_trials(study: optuna.Study, pids: set[int] | None = None) -> list[int]:
    """Fail RUNNING trials whose process on this host is gone (or is one of ``pids``), and queue each again.

    Trials of other hosts are left to the heartbeat, which fails them after ``GRACE_SECONDS``.

    Returns:
        The numbers of the trials failed.
    """
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return fail_and_queue_again(study, [t for t in running if dead(t, pids)])


def dead(trial: FrozenTrial, pids: set[int] | None = None) -> bool:
    """Whether a RUNNING trial was left by a process that is gone: its process on this host has exited (or is one of
    ``pids``, being stopped), or it never named its process (``orphan``)."""
    worker = trial.user_attrs.get("worker") or {}
    pid = worker.get("pid")
    if worker.get("host") == socket.gethostname() and isinstance(pid, int) and pid > 0:
        return (pids is not None and pid in pids) or not _alive(pid)
    return orphan(trial)


def orphan(trial: FrozenTrial) -> bool:
    """A running trial that never named its worker: an earlier release's process died between asking for it and naming it.

    This release names the worker in the write that makes a trial RUNNING (``StudyStorage``); an
    earlier one did within milliseconds of ``study.ask()``.
    """
    started = trial.datetime_start
    return "worker" not in trial.user_attrs and started is not None and (datetime.datetime.now() - started).total_seconds() > ORPHAN_SECONDS


def unnamed(trial: FrozenTrial) -> bool:
    """A running trial that names no worker yet and is not an orphan yet: its process may still be choosing its point."""
    return "worker" not in trial.user_attrs and not orphan(trial)


def fail_and_queue_again(study: optuna.Study, trials: list) -> list[int]:
    """Fail unfinished ``trials`` (interrupted, or of a dead process) and queue each again; those another process finished are skipped.

    Returns:
        The numbers of the trials queued again.
    """
    queued = []
    backend = getattr(study._storage, "_backend", study._storage)  # under Optuna's cache
    for trial in trials:
        try:
            if isinstance(backend, StudyStorage):
                if not backend.fail_running(trial._trial_id):
                    continue  # another process failed it (and queued it again), or it finished, a moment ago
            elif not study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it finished (or another process failed it) in the meantime
        queue_again(study, study._storage.get_trial(trial._trial_id))
        queued.append(trial.number)
    return queued


def load_existing_study(storage: str, study_name: str) -> optuna.Study:
    """Open a study that must exist (for commands that read one); an unknown name gets the list of studies there."""
    store = open_storage(storage, must_exist=True)
    try:
        return optuna.load_study(study_name=study_name, storage=store)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
        listing = ", ".join(repr(n) for n in names) if names else "none"
        raise StudyError(f"no study {study_name!r} in {mask_password(storage)}; studies there: {listing}") from None
