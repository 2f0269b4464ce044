"""Running a study: open or create it, then run trials in this process or in worker processes.

``run_study`` checks every input before it touches the database, then runs trials until the
study holds ``config.target`` finished (complete or pruned) ones. Trials are driven by
Optuna's ``study.optimize`` here; a driver that asks for several trials at once (ask/tell)
belongs beside ``_optimize``.
"""

import contextlib
import os
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

from cnn import Data, load_data, resolve_device, train_many
from cnn.registry import lookup
from study.artifacts import IN_DATABASE, artifact_store
from study.config import StudyConfig
from study.objective import TrialRun, make_objective
from study.progress import Progress
from study.record import FINISHED, StudySettings
from study.samplers import ASK_TELL_SAMPLERS, PRUNERS, SAMPLERS
from study.storage import (
    DEFAULT_STORAGE,
    HEARTBEAT_SECONDS,
    StudyError,
    fail_dead_trials,
    mask_password,
    open_storage,
    requeue_interrupted,
)


def quiet_optuna(verbose: bool) -> None:
    """Optuna's log lines and experimental-feature warnings only with --verbose."""
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
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
        repeats=config.repeats,
        baseline=config.baseline_params,
        command=config.command,
    )


def _check_compatible(study: optuna.Study, settings: StudySettings, storage_url: str) -> None:
    where = f"study {study.study_name!r} in {mask_password(storage_url)}"
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise StudyError(f"{where} minimises; choose another --study-name")
    if "settings" not in study.user_attrs:
        raise StudyError(f"{where} was not made by study.run; choose another --study-name")
    stored = StudySettings.from_attrs(study.user_attrs)
    if stored.format < settings.format:
        raise StudyError(
            f"{where} was made by an earlier release that seeded trials by trial number; its report still builds "
            "(python -m reports.build), but resuming it would mix two seeding schemes: choose a new --study-name"
        )
    diffs = stored.differences(settings)
    if diffs:
        raise StudyError(
            f"{where} was created with other settings: {'; '.join(diffs)}. "
            "Rerun with its settings to resume it, or choose a new --study-name"
        )


def open_study(storage: optuna.storages.BaseStorage, config: StudyConfig, settings: StudySettings) -> optuna.Study:
    """Load the study, or create it with its settings and baseline; refuse one made with other settings."""
    for attempt in range(20):
        try:
            study = optuna.load_study(study_name=config.study_name, storage=storage)
        except KeyError:
            try:
                study = optuna.create_study(study_name=config.study_name, storage=storage, direction="maximize")
            except optuna.exceptions.DuplicatedStudyError:
                continue  # another machine created it this instant: load theirs
            study.set_user_attr("artifacts", IN_DATABASE if config.weights_dir is None else str(Path(config.weights_dir).resolve()))
            if config.enqueue_baseline:
                study.enqueue_trial(config.baseline_params, user_attrs={"baseline": True})
            study.set_user_attr("settings", settings.to_attrs())  # last: other machines wait for it before joining
            return study
        if "settings" not in study.user_attrs and not study.trials and attempt < 19:
            time.sleep(0.5)  # its creator on another machine is still writing its settings
            continue
        _check_compatible(study, settings, config.storage)
        failed = fail_dead_trials(study)
        if failed:
            print(f"trial(s) {', '.join(map(str, failed))} were left running by a process that died: marked failed, queued again")
        return study
    raise StudyError(f"could not create or load study {config.study_name!r} in {mask_password(config.storage)}")


def _optimize(study: optuna.Study, config: StudyConfig, data: Data, worker: int = 0, progress: Progress | None = None) -> None:
    """Run trials in this process until the study holds ``config.target`` finished ones.

    One trial at a time through ``study.optimize``, or ``--fuse`` K at a time through :func:`_optimize_fused`.
    """
    fuse = config.fuse_for(resolve_device(config.train.device).type)
    stream = len(study.get_trials(deepcopy=False)) + 10_007 * worker  # another stream of draws per resume and worker
    samplers = ASK_TELL_SAMPLERS if fuse > 1 else SAMPLERS
    study.sampler = (samplers.get(config.sampler) or lookup(SAMPLERS, config.sampler, "sampler"))(
        config.space, config.repeats, config.seed, stream
    )
    study.pruner = lookup(PRUNERS, config.resolved_pruner, "pruner")(config.train.epochs, config.min_epochs)
    store = None if config.keep_weights == "none" else artifact_store(study, create=True)
    on_epoch = progress.epoch if progress else None
    try:
        if fuse > 1:
            _optimize_fused(study, config, data, fuse, store, progress)
        else:
            objective = make_objective(config.space, config.train, data, config.design_repeats, store, config.keep_weights, on_epoch)
            callbacks = [progress.trial_done] if progress else []
            callbacks.append(optuna.study.MaxTrialsCallback(config.target, states=FINISHED))
            study.optimize(objective, n_trials=config.target, timeout=config.timeout, callbacks=callbacks)
    except KeyboardInterrupt:
        if progress:
            progress.close()
        for number in requeue_interrupted(study):
            print(f"\ninterrupted: trial {number} is recorded as failed and queued to run again", file=sys.stderr)
        raise


def _optimize_fused(study: optuna.Study, config: StudyConfig, data: Data, fuse: int, store, progress: Progress | None) -> None:
    """The ask/tell driver: ask up to ``fuse`` trials, train them as one fused network, tell each its result.

    Each trial reports every epoch and is pruned on its own (it then leaves the fused network),
    and ends with the same user attributes as a trial trained alone. It never asks for more
    trials than the study still needs, counting those other processes are running.
    """
    metric = "val_acc" if data.val is not None else "test_acc"
    started = time.monotonic()
    with Heartbeats(study) as heartbeats:
        while config.timeout is None or time.monotonic() - started < config.timeout:
            optuna.storages.fail_stale_trials(study)  # what study.optimize does before each trial
            states = [t.state for t in study.get_trials(deepcopy=False)]
            wanted = config.target - sum(s in FINISHED for s in states) - states.count(TrialState.RUNNING)
            if wanted <= 0:
                return
            on_epoch = progress.epoch if progress else None
            runs = [
                TrialRun(study.ask(), config.space, config.train, config.design_repeats, metric, on_epoch) for _ in range(min(fuse, wanted))
            ]
            heartbeats.track([run.trial for run in runs])
            try:
                _train_and_tell(study, runs, data, store, config.keep_weights, progress)
            finally:
                heartbeats.track([])


def _train_and_tell(study: optuna.Study, runs: list[TrialRun], data: Data, store, keep_weights: str, progress: Progress | None) -> None:
    """Train the asked trials as one fused network and tell each its result; on any error, fail those not told."""
    told = set()
    try:
        results = train_many([run.config for run in runs], data, on_epoch=lambda k, row: runs[k].epoch(row))
        for run, result in zip(runs, results, strict=True):
            try:
                value = run.finish(result, store, keep_weights)
            except optuna.TrialPruned:
                frozen = study.tell(run.trial, state=TrialState.PRUNED)
            else:
                frozen = study.tell(run.trial, value)
            told.add(run.trial.number)
            if progress:
                progress.trial_done(study, frozen)
    except BaseException:
        for run in runs:
            if run.trial.number not in told:  # as study.optimize does with the trial it was running
                study.tell(run.trial, state=TrialState.FAIL)
        raise


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


def _worker_main(config: StudyConfig, worker: int) -> None:
    """One of ``--workers`` processes: its share of the cores, its GPU, the shared study."""
    quiet_optuna(config.verbose)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.workers))
    config = replace(config, train=replace(config.train, device=_worker_device(config.train.device, worker)))
    data = load(config, download=False)  # the parent made sure the data is there, and cached
    study = optuna.load_study(study_name=config.study_name, storage=open_storage(config.storage))
    with contextlib.suppress(KeyboardInterrupt):  # the parent reports the interruption
        _optimize(study, config, data, worker)


def _run_workers(study: optuna.Study, config: StudyConfig) -> None:
    """Run ``config.workers`` processes on the study; this process shows the whole study's progress."""
    from joblib import Parallel, delayed
    from joblib.externals.loky import get_reusable_executor

    progress = Progress(study, config.target, config.train.epochs)
    with ThreadPoolExecutor(1) as pool:
        jobs = pool.submit(
            Parallel(n_jobs=config.workers, backend="loky"), (delayed(_worker_main)(config, k) for k in range(config.workers))
        )
        try:
            while not jobs.done():
                progress.poll(study)
                time.sleep(1.0)
            progress.poll(study)
            jobs.result()
        except KeyboardInterrupt:
            progress.close()
            get_reusable_executor().shutdown(wait=False, kill_workers=True)
            failed = fail_dead_trials(study)  # their trials: failed now, and queued to run again
            if failed:
                print(f"\ninterrupted: trial(s) {', '.join(map(str, failed))} recorded as failed and queued to run again", file=sys.stderr)
            raise
    progress.close()


def run_study(config: StudyConfig, download: bool = False) -> optuna.Study:
    """Check inputs, open or create the study and run it to ``config.target`` finished trials.

    Raises:
        StudyError, DataError, DeviceError: a bad input; the storage is left as it was.
        KeyboardInterrupt: after recording the running trial as failed and queueing it again.
    """
    device = resolve_device(config.train.device)
    print(f"loading data from {config.data_dir} ...", file=sys.stderr)
    data = load(config, download)
    storage = open_storage(config.storage, create_folder=config.storage == DEFAULT_STORAGE)
    study = open_study(storage, config, study_settings(config, data))
    finished = sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))
    remaining = config.target - finished
    if remaining <= 0:
        print(f"study {config.study_name!r} already has {finished} finished trials (target {config.target}); nothing to run")
        return study
    where = f"{config.workers} workers" if config.workers > 1 else str(device)
    print(f"study {config.study_name!r} in {mask_password(config.storage)}: {finished} finished, running {remaining} more on {where}")
    if config.workers == 1:
        progress = Progress(study, config.target, config.train.epochs)
        _optimize(study, config, data, progress=progress)
        progress.close()
    else:
        _run_workers(study, config)
    return study
