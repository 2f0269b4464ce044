"""``python -m study.run``: an Optuna study of the notebook's CNN over activation, loss and lr.

Flags become a :class:`~study.config.StudyConfig` (``study.config``), ``study.runner`` runs
the study, ``study.progress`` prints it, and at the end this command builds the report: the
one place where ``study`` calls up into ``reports``.
"""

import contextlib
import shlex
import sys
import time

import optuna

from cnn import DataError, DeviceError, UnknownNameError
from cnn.cli import flag_hint, runnable
from study.artifacts import weights_size
from study.config import StudyConfig, parse_config
from study.progress import fmt_seconds, summarize
from study.runner import Interrupted, interruptible, quiet_optuna, run_study
from study.storage import StorageFault, StudyError, describe_fault, mask_password, open_storage, output_dir, resumable


def main(argv: list[str] | None = None) -> int:
    config, download = parse_config(argv)
    quiet_optuna(config.verbose)
    started = time.perf_counter()
    try:
        with interruptible():
            study = run_study(config, download)
    except (StudyError, DataError, DeviceError, UnknownNameError) as error:
        print(f"error: {error}{flag_hint(error)}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        queued = f"trial(s) {', '.join(map(str, sorted(stop.queued)))} failed and queued to run again; " if stop.queued else ""
        print(f"\ninterrupted by {stop}: {queued}resume with: {runnable(config.command)}", file=sys.stderr)
        return 128 + stop.signum
    except Exception as error:
        fault = str(error) if isinstance(error, StorageFault) else describe_fault(error, config.storage)
        if fault is None:
            raise
        if not resumable(fault):  # the line says what to do instead
            print(f"\nerror: {fault}; finished trials are intact", file=sys.stderr)
            return 1
        resume = runnable(config.command)
        print(f"\nerror: {fault}{_advice(fault, config)}; finished trials are intact: resume with: {resume}", file=sys.stderr)
        return 1
    print(summarize(study, config.storage))
    status = _report(study, config) if config.report else 0
    print(f"ran for {fmt_seconds(time.perf_counter() - started)}")
    return status


def _advice(fault: str, config: StudyConfig) -> str:
    """What to do about a storage fault, beyond resuming."""
    if not fault.endswith("is full"):
        return ""
    weights = ""
    with contextlib.suppress(Exception):  # reading still works on a full disk; if not, say less
        kept, size = weights_size(optuna.load_study(study_name=config.study_name, storage=open_storage(config.storage)))
        weights = f"; its trained weights take {size / 2**20:.1f} MiB ({kept} trials)"
    return f"{weights}: free some space, or keep fewer weights with --keep-weights complete or none"


def _report(study: optuna.Study, config: StudyConfig) -> int:
    from reports.build import build_report
    from reports.frames import frames_from_study

    out = output_dir(config.storage, config.study_name, "report")
    rebuild = runnable(
        f"python -m reports.build --storage {shlex.quote(mask_password(config.storage))} --study-name {shlex.quote(config.study_name)}"
    )
    try:
        path = build_report(frames_from_study(study), out)
    except Exception as error:  # the study is safe in the database whatever happens here
        print(
            f"error: the report could not be built ({type(error).__name__}: {error}); the study is intact, retry with: {rebuild}",
            file=sys.stderr,
        )
        return 1
    _note(study, path)
    print(f"report: {path} (rebuild with: {rebuild})")
    return 0


def _note(study: optuna.Study, report) -> None:
    """The report's answers as the study's note in optuna-dashboard; a storage that refuses writes costs the note only."""
    from study.notes import note_report

    try:
        note_report(study, report)
    except Exception as error:
        print(f"warning: the dashboard's study note was not updated ({type(error).__name__}: {error})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
