"""Running a study: open or create it, then run trials in this process or in worker processes.

``run_study`` checks every input before it touches the database, then runs trials until the
study holds ``config.target`` finished (complete or pruned) ones. Trials are driven by
one ask/tell loop, :func:`_optimize`, whether they train alone or K at a time as one fused
network. SIGINT and SIGTERM fail the running trials and queue them again (:class:`Interrupted`).
"""

import contextlib
import faulthandler
import os
import signal
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import optuna
import torch
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import TrialState

from cnn import Data, load_data, resolve_device, train, train_many
from cnn.registry import lookup
from cnn.train import bind_device, check_compile
from study import notes, rounds
from study.artifacts import IN_DATABASE, artifact_store
from study.config import StudyConfig
from study.objective import TrialRun
from study.progress import Progress
from study.record import FINISHED, StudySettings, Writer, write_labels
from study.samplers import PRUNERS, SAMPLERS, drop_surplus
from study.storage import (
    DEFAULT_STORAGE,
    HEARTBEAT_SECONDS,
    StorageFault,
    StudyError,
    describe_fault,
    fail_and_queue_again,
    fail_dead_trials,
    mask_password,
    open_storage,
)

ROUND_POLL_SECONDS = 2.0  # how often a process with nothing to run looks whether the round's last trials have finished


def quiet_optuna(verbose: bool) -> None:
    """Optuna's log lines and experimental-feature warnings only with --verbose."""
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    # Trials come from ask() with heartbeats that this module keeps itself (Heartbeats): Optuna's warning that heartbeats
    # are meant for Study.optimize is raised at every round's first ask(), in the caller's name, and says nothing here.
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize", category=UserWarning)
    if not verbose:
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="optuna")


def load(config: StudyConfig, download: bool) -> Data:
    return load_data(
        config.data_dir,
        train_size=config.train_size,
        test_size=config.test_size,
        val_split=config.val_split,
        seed=config.seed,
        download=download,
    )


def study_settings(config: StudyConfig, data: Data) -> StudySettings:
    """The settings a new study stores, and a resumed one is compared with."""
    return StudySettings(
        search_space=config.space.as_dict(),
        epochs=config.train.epochs,
        batch_size=config.train.batch_size,
        optimizer=config.train.optimizer,
        augment=config.train.augment,
        data_source=data.source,
        data_path=data.path,
        classes=list(data.classes),
        train_size=len(data.train),
        test_size=len(data.test),
        val_size=len(data.val) if data.val is not None else 0,
        val_split=config.val_split,
        selection="validation" if data.val is not None else "test",
        sampler=config.sampler,
        pruner=config.resolved_pruner,
        min_epochs=config.min_epochs,
        seed=config.seed,
        repeats=config.grid_repeats,
        baseline=config.baseline_params,
        command=config.command,
        margin=config.margin,
        compare_epoch=config.compare_epoch,
        design="sequential" if config.sequential else "fixed",
        threads=config.threads or max(1, cores() // config.workers),
    )


def cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_threads(study: optuna.Study, workers: int) -> int:
    """Train with the CPU threads the study recorded when it was created, so that its accuracies do not depend on how
    many workers each run has (an earlier release's study, which recorded none: cores / ``workers``). Returns the count.
    """
    threads = StudySettings.from_attrs(study.user_attrs).threads or max(1, cores() // workers)
    torch.set_num_threads(threads)
    return threads


def _check_compatible(study: optuna.Study, settings: StudySettings, storage_url: str) -> None:
    where = f"study {study.study_name!r} in {mask_password(storage_url)}"
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise StudyError(f"{where} minimises; choose another --study-name")
    if "settings" not in study.user_attrs:
        raise StudyError(f"{where} was not made by study.run; choose another --study-name")
    stored = StudySettings.from_attrs(study.user_attrs)
    if stored.format < 2:
        raise StudyError(
            f"{where} was made by an earlier release that seeded trials by trial number; its report still builds "
            "(python -m reports.build), but resuming it would mix two seeding schemes: choose a new --study-name"
        )
    diffs = stored.differences(settings)
    if stored.design != settings.design and not diffs:
        _check_design(study, stored, settings, where)
    if diffs:
        raise StudyError(
            f"{where} was created with other settings: {'; '.join(diffs)}. "
            "Rerun with its settings to resume it, or choose a new --study-name"
        )


def _check_design(study: optuna.Study, stored: StudySettings, settings: StudySettings, where: str) -> None:
    """A fixed-design study that holds replicate 0 only may go on sequentially (it is round 0); nothing else switches."""
    if settings.design == "sequential" and stored.sampler == "grid":
        replicates = {t.params.get("replicate") for t in study.get_trials(deepcopy=False, states=FINISHED)}
        if replicates <= {0}:
            study.set_user_attr("settings", {**study.user_attrs["settings"], "design": "sequential"})
            print(f"{where} holds replicate 0 only: it goes on with the sequential design (its trials are round 0)")
            return
    if settings.design == "sequential":
        raise StudyError(
            f"{where} runs the fixed design with {stored.repeats} replicates: rerun with --repeats {stored.repeats} to resume it"
        )
    raise StudyError(
        f"{where} runs the sequential design: rerun without --repeats (--max-repeats {stored.repeats}) to resume it"
    )


def open_study(storage: optuna.storages.BaseStorage, config: StudyConfig, settings: StudySettings) -> optuna.Study:
    """Load the study, or create it with its settings and baseline; refuse one made with other settings."""
    for attempt in range(20):
        try:
            study = optuna.load_study(study_name=config.study_name, storage=storage)
        except KeyError:
            with _signals_held():  # a study cut off before its settings are written could never be resumed
                try:
                    study = optuna.create_study(study_name=config.study_name, storage=storage, direction="maximize")
                except optuna.exceptions.DuplicatedStudyError:
                    continue  # another machine created it this instant: load theirs
                artifacts = IN_DATABASE if config.weights_dir is None else str(Path(config.weights_dir).resolve())
                study.set_user_attr("artifacts", artifacts)
                if config.enqueue_baseline:
                    study.enqueue_trial(config.baseline_params, user_attrs={"baseline": True})
                study.set_user_attr("settings", settings.to_attrs())  # last: other machines wait for it before joining
            return study
        if "settings" not in study.user_attrs and not study.trials and attempt < 19:
            time.sleep(0.5)  # its creator on another machine is still writing its settings
            continue
        _check_compatible(study, settings, config.storage)
        stored = StudySettings.from_attrs(study.user_attrs).threads
        if config.threads is not None and stored and stored != config.threads:
            raise StudyError(
                f"study {config.study_name!r} in {mask_password(config.storage)} trains every trial with {stored} CPU threads "
                f"(accuracies depend on it): rerun with --threads {stored} or without --threads to resume it"
            )
        failed = fail_dead_trials(study)
        if failed:
            print(f"trial(s) {', '.join(map(str, failed))} were left running by a process that died: marked failed, queued again")
        return study
    raise StudyError(f"could not create or load study {config.study_name!r} in {mask_password(config.storage)}")


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: the running trials are failed and queued again, and the command exits 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.queued: list[int] = []  # trials failed and queued to run again


DEFER_SECONDS = 0.05  # how long a signal that arrived inside a database call waits before it is delivered again
_STORAGE_CODE = ("sqlalchemy", "optuna.storages", "sqlite3", "psycopg")  # modules a signal must not cut in half
_FINALIZER_CODE = ("weakref", "_weakrefset")  # garbage-collection callbacks: Python swallows what they raise


def _unsafe(frame) -> bool:
    """Whether ``frame`` (where the main thread was when a signal arrived) is where an exception must not be raised.

    Inside database code, an exception can abandon a transaction half done: a SQLite connection of this process then
    keeps its lock while the clean-up's own write waits for it (two minutes, then "database is locked"). Inside a
    garbage-collection callback (a ``__del__``, a weak reference's callback such as ``WeakKeyDictionary``'s ``remove``,
    SQLAlchemy's own), Python prints "Exception ignored" and drops the exception: the signal is lost, and with the
    handler's second signals ignored the process trains on. Both were found by the test of a ``--workers`` parent
    killed with ``kill -9``: a worker's SIGTERM landed in a commit and its clean-up hung; in a later CI run one landed in
    ``WeakKeyDictionary``'s callback and the worker ran on until its grace ended it.
    """
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith(_STORAGE_CODE) or module in _FINALIZER_CODE or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def interruptible(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)):
    """While inside, ``signals`` raise :class:`Interrupted` in the main thread; a second signal is ignored during the clean-up."""

    def handler(signum, frame):
        if _unsafe(frame):  # raised here, it could hold a database lock it then waits for, or be swallowed
            threading.Timer(DEFER_SECONDS, os.kill, (os.getpid(), signum)).start()  # the same signal again, a moment later
            return
        for s in signals:
            signal.signal(s, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _signals_held(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)):
    """Hold back ``signals`` while inside (they arrive on the way out): for steps that must not be cut in half."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)


def _optimize(study: optuna.Study, config: StudyConfig, data: Data, worker: int = 0, progress: Progress | None = None) -> None:
    """Run trials in this process until the study holds ``config.target`` finished ones, or ``--timeout`` passes.

    The one driver, through Optuna's ask-and-tell interface: ask up to ``--fuse`` K trials, train
    them (alone through ``train``, together as one fused network through ``train_many``), and
    tell each its result. Each trial reports every epoch and is pruned on its own, and ends with
    the same user attributes whether trained alone or fused. It never asks for more trials than
    the study still needs, counting those other processes are running. Trials it leaves
    unfinished (an error, SIGINT, SIGTERM) are failed and queued again with their grid point.
    """
    fuse = config.fuse_for(resolve_device(config.train.device).type)
    stream = len(study.get_trials(deepcopy=False)) + 10_007 * worker  # another stream of draws per resume and worker
    study.sampler = lookup(SAMPLERS, config.sampler, "sampler")(config.space, config.grid_repeats, config.seed, stream)
    if config.sequential:
        sampler = study.sampler
        sampler.allowed = lambda s: _allowed(s, sampler, config.target)
    study.pruner = lookup(PRUNERS, config.resolved_pruner, "pruner")(config.train.epochs, config.min_epochs)
    store = None if config.keep_weights == "none" else artifact_store(study, create=True)
    metric = "val_acc" if data.val is not None else "test_acc"
    on_epoch = progress.epoch if progress else None
    started = time.monotonic()
    # Trial records are written by the writer's thread while training goes on (study.objective.TrialRun).
    with Heartbeats(study) as heartbeats, Writer() as writer:
        while config.timeout is None or time.monotonic() - started < config.timeout:
            optuna.storages.fail_stale_trials(study)  # trials of machines gone silent: failed, queued again
            fail_dead_trials(study)  # trials of dead processes of this machine (a kill -9 at any moment): failed, queued again
            states = [t.state for t in study.get_trials(deepcopy=False)]
            finished = sum(s in FINISHED for s in states)
            if finished >= config.target:
                return
            wanted = config.target - finished - states.count(TrialState.RUNNING)
            if wanted <= 0:  # the last trials run elsewhere: wait for them, as one may die and be queued again
                time.sleep(ROUND_POLL_SECONDS)
                continue
            if config.sequential:
                step = rounds.next_step(study, study.sampler, config.grid_repeats, config.target)
                if step.action == "done":
                    return
                if step.action == "wait":  # the round's last trials run elsewhere; then its plan names the next points
                    time.sleep(ROUND_POLL_SECONDS)
                    continue
                wanted = min(wanted, step.free)
            runs: list[TrialRun] = []
            try:
                for _ in range(min(fuse, wanted)):
                    with _signals_held():  # a trial exists from ask() on (naming its process: StudyStorage): track it at once
                        trial = study.ask()
                        heartbeats.track([*(run.trial for run in runs), trial])
                    if drop_surplus(study, trial):  # another process took the grid's last free point at this moment
                        notes.write_trial_note(trial, notes.SURPLUS_TEXT)
                        break
                    runs.append(TrialRun(trial, config.space, config.train, config.design_repeats, metric, writer, on_epoch))
                if not runs:
                    if config.sequential:  # the round's last point went to another process: wait for it, then the next round
                        time.sleep(ROUND_POLL_SECONDS)
                        continue
                    return
                _train_and_tell(study, runs, data, store, config.keep_weights, progress, config.memory_format)
            except BaseException as error:
                writer.settle()  # the records already submitted go in (a few seconds at most), the trials are failed after them
                with contextlib.suppress(Exception):  # the storage itself may be what failed; a resume recovers them
                    mine = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t._trial_id in heartbeats.ids]
                    queued = fail_and_queue_again(study, mine)
                    if isinstance(error, Interrupted):
                        error.queued.extend(queued)
                raise
            finally:
                heartbeats.track([])


def _allowed(study: optuna.Study, sampler, target: int) -> set[int]:
    stored = rounds.stored_rounds(study.user_attrs)
    return rounds.allowed(sampler, stored, rounds.round_budget(study, target, stored))


def _train_and_tell(
    study: optuna.Study, runs: list[TrialRun], data: Data, store, keep_weights: str, progress: Progress | None, memory_format: str
) -> None:
    """Train the asked trials (alone, or as one fused network) and tell each its result."""
    if len(runs) == 1:
        results = [train(runs[0].config, data, on_epoch=runs[0].epoch)]
    else:
        results = train_many([run.config for run in runs], data, on_epoch=lambda k, row: runs[k].epoch(row), memory_format=memory_format)
    for run, result in zip(runs, results, strict=True):
        try:
            value = run.finish(result, store, keep_weights)
        except optuna.TrialPruned:
            frozen = study.tell(run.trial, state=TrialState.PRUNED)
        else:
            frozen = study.tell(run.trial, value)
        if progress:
            progress.trial_done(study, frozen)


class Heartbeats:
    """Record a heartbeat for the trials this process runs every ``HEARTBEAT_SECONDS``, as ``study.optimize`` does."""

    def __init__(self, study: optuna.Study):
        self._storage = study._storage
        self._trial_ids: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def track(self, trials: list[optuna.Trial]) -> None:
        self._trial_ids = [t._trial_id for t in trials]
        self._record()

    @property
    def ids(self) -> set[int]:
        """The storage ids of the trials tracked now: those this process is running."""
        return set(self._trial_ids)

    def _record(self) -> None:
        if not is_heartbeat_enabled(self._storage):
            return
        for trial_id in list(self._trial_ids):
            self._storage.record_heartbeat(trial_id)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self._record()

    def __enter__(self) -> "Heartbeats":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _worker_device(device: str, worker: int) -> str:
    """Spread workers over the GPUs: worker k gets GPU k mod n."""
    if device in ("auto", "cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return f"cuda:{worker % torch.cuda.device_count()}"
    return device


def _worker_main(config: StudyConfig, worker: int, parent: int) -> None:
    """One of ``--workers`` processes: the study's CPU threads per trial (``set_threads``), its GPU, the shared study.

    Ctrl-C reaches every process of the terminal's group: workers ignore it, and the parent stops
    them and queues their trials again. A SIGTERM sent to a worker alone queues its own trials, and
    so does the death of the parent ``parent`` (a ``kill -9``, the OOM killer): the worker notices
    within ``PARENT_POLL_SECONDS``, queues its trials again and exits, instead of running on unseen.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch_parent(parent)
    quiet_optuna(config.verbose)
    config = replace(config, train=replace(config.train, device=_worker_device(config.train.device, worker)))
    bind_device(config.train.device)  # this worker's GPU is its current device: contexts and handles go there, not to GPU 0
    data = load(config, download=False)  # the parent made sure the data is there, and cached
    study = optuna.load_study(study_name=config.study_name, storage=open_storage(config.storage))
    set_threads(study, config.workers)
    try:
        with interruptible((signal.SIGTERM,)):
            if os.getppid() != parent:
                raise Interrupted(signal.SIGTERM)  # the parent died while this worker loaded its data
            _optimize(study, config, data, worker)
    except Interrupted:
        if os.getppid() != parent:
            os._exit(128 + signal.SIGTERM)  # nobody waits for this worker's result: end now, not in joblib's loop
        # its trials are queued again; the parent reports the interruption
    except Exception as error:  # the parent prints one line; a storage error's own object may not cross processes
        fault = describe_fault(error, config.storage)
        if fault is not None:
            raise StorageFault(fault) from None
        raise


PARENT_POLL_SECONDS = 1.0  # how often a worker looks whether the command that started it is still alive
PARENT_GRACE_SECONDS = 10.0  # how long an orphaned worker's clean-up may take before the worker ends without it


def _watch_parent(parent: int) -> None:
    """Send this process SIGTERM when process ``parent`` is gone (its children then have another parent).

    A thread that polls ``os.getppid()``, rather than Linux's ``prctl(PR_SET_PDEATHSIG)``: the
    latter fires when the parent's *thread* that started the worker ends (joblib starts workers
    from its own threads), and exists on Linux only. The SIGTERM queues the worker's trials again
    and ends it within a second; should anything hold it longer than ``PARENT_GRACE_SECONDS`` (a
    clean-up stuck on the database), the worker prints where each of its threads was and ends at
    once. Its trials then stay RUNNING under its pid, which the next run of the study sees is gone,
    and queues them again (``fail_dead_trials``): a worker never outlives its command for long.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        # Should even this thread never run again (a call that holds the interpreter's lock), faulthandler's own
        # C thread prints the threads' places and ends the process a little later.
        faulthandler.dump_traceback_later(PARENT_GRACE_SECONDS + 5, exit=True, file=sys.stderr)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(PARENT_GRACE_SECONDS)  # a daemon thread: a worker that ends in time ends it too
        print(
            f"worker {os.getpid()}: its command ended and it did not stop within {PARENT_GRACE_SECONDS:.0f} s; it ends now,"
            " and the next run of the study queues its trials again. Where its threads were:",
            file=sys.stderr,
            flush=True,
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _run_workers(study: optuna.Study, config: StudyConfig) -> None:
    """Run ``config.workers`` processes on the study; this process shows the whole study's progress."""
    from joblib import Parallel, delayed

    progress = Progress(study, config.target, config.train.epochs, config.sequential, config.workers)
    pool = ThreadPoolExecutor(1)
    workers = (delayed(_worker_main)(config, k, os.getpid()) for k in range(config.workers))
    jobs = pool.submit(Parallel(n_jobs=config.workers, backend="loky"), workers)
    try:
        while not jobs.done():
            progress.poll(study)
            time.sleep(1.0)
        progress.poll(study)
        jobs.result()
    except Interrupted as interrupted:
        progress.close()
        pids = _children()  # the workers: stopped at once, their trials failed and queued
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(pids)
        interrupted.queued.extend(fail_dead_trials(study, pids))
        raise
    finally:
        progress.close()
        pool.shutdown(wait=False, cancel_futures=True)


def _children() -> set[int]:
    """The worker processes this one started (Linux's /proc; elsewhere none); joblib's resource trackers clean up after them."""
    me, children = os.getpid(), set()
    for folder in Path("/proc").glob("[0-9]*"):
        stat = _proc_stat(folder)
        with contextlib.suppress(OSError):
            if stat and int(stat[1]) == me and b"popen_loky" in (folder / "cmdline").read_bytes():
                children.add(int(folder.name))
    return children


def _wait_gone(pids: set[int], seconds: float = 10.0) -> None:
    """Wait until the processes ``pids`` have exited (or are zombies), at most ``seconds``."""
    deadline = time.monotonic() + seconds
    for pid in pids:
        while time.monotonic() < deadline and (_proc_stat(Path(f"/proc/{pid}")) or ["Z"])[0] not in ("Z", "X"):
            time.sleep(0.05)


def _proc_stat(folder: Path) -> list[str]:
    """A process's state, parent pid, ... (the fields of /proc/PID/stat after its name); empty when it is gone."""
    try:
        return (folder / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def run_study(config: StudyConfig, download: bool = False) -> optuna.Study:
    """Check inputs, open or create the study and run it to ``config.target`` finished trials.

    Raises:
        StudyError, DataError, DeviceError: a bad input; the storage is left as it was.
        Interrupted: SIGINT or SIGTERM, after failing the running trials and queueing them again.
    """
    device = resolve_device(config.train.device)
    check_compile(config.train.compile_mode, device)
    print(f"loading data from {config.data_dir} ...", file=sys.stderr)
    data = load(config, download)
    storage = open_storage(config.storage, create_folder=config.storage == DEFAULT_STORAGE)
    study = open_study(storage, config, study_settings(config, data))
    notes.describe_study(study)  # optuna-dashboard: the objective's name, and a note until the report writes its answers
    write_labels(study, {"test": data.test.labels, **({"val": data.val.labels} if data.val is not None else {})})
    finished = sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))
    remaining = config.target - finished
    if remaining <= 0:
        print(f"study {config.study_name!r} already has {finished} finished trials (target {config.target}); nothing to run")
        return study
    where = f"{config.workers} workers" if config.workers > 1 else str(device)
    more = f"up to {remaining} more in rounds of the sequential design" if config.sequential else f"{remaining} more"
    print(f"study {config.study_name!r} in {mask_password(config.storage)}: {finished} finished, running {more} on {where}")
    if config.workers == 1:
        set_threads(study, config.workers)
        progress = Progress(study, config.target, config.train.epochs, config.sequential, config.workers)
        try:
            _optimize(study, config, data, progress=progress)
        finally:
            progress.close()
    else:
        _run_workers(study, config)
    if config.sequential:
        print(rounds.summary(study, config.grid_repeats))
    return study
