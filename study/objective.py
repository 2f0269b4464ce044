"""One trial: suggest -> train -> report and prune -> record.

:class:`TrialRun` holds what a trial does around its training, so that a trial trained
alone (``cnn.train``) and a trial trained with others in one fused network
(``cnn.train_many``), both driven by ``study.runner``'s ask/tell loop, end with exactly the
same user attributes.
"""

import tempfile
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from pathlib import Path

import optuna
import torch

from cnn import EpochRow, TrainConfig, TrainResult
from study import notes, record
from study.space import SearchSpace, suggest_config


class TrialRun:
    """A trial's configuration, its per-epoch reporting and its final record.

    Args:
        trial: the Optuna trial (from ``optimize`` or ``ask``).
        space: what to sample.
        fixed: the settings shared by all trials (epochs, batch size, optimiser, base seed, device).
        repeats: the paired design's replicates (None: no design, every trial trains from ``fixed.seed``).
        metric: ``"test_acc"``, or ``"val_acc"`` with a validation split: what is reported and returned.
        writer: the thread that writes the per-epoch records (one per process, shared by the trials it runs).
        on_epoch: also told of every epoch (for progress display), on the training thread.
    """

    def __init__(
        self,
        trial: optuna.Trial,
        space: SearchSpace,
        fixed: TrainConfig,
        repeats: int | None,
        metric: str,
        writer: record.Writer,
        on_epoch: Callable[[optuna.Trial, EpochRow], None] | None = None,
    ):
        self.trial, self.metric, self._on_epoch, self.paired = trial, metric, on_epoch, repeats is not None
        self.config, replicate = suggest_config(trial, space, fixed, repeats)
        record.write_start(trial, self.config, replicate)
        self.history: list[dict] = []
        self._writer = writer
        self._written: Future | None = None  # the last epoch's writes
        # A pruner that never prunes needs no decision: the training thread then never waits for this epoch's writes.
        self._prunes = not isinstance(trial.study.pruner, optuna.pruners.NopPruner)

    def epoch(self, row: EpochRow) -> bool:
        """Record and report one epoch; True when the pruner wants the trial stopped.

        The history and the reported value are written by the writer's thread while the next epoch
        trains. The previous epoch's writes are waited for first (a crash loses at most the epoch in
        flight), and a pruner decides once this epoch's value is in the database.
        """
        self.wait()
        self.history.append(record.json_row(row))
        self._written = self._writer.submit(partial(self._write, list(self.history), row[self.metric], row["epoch"]))
        if self._on_epoch is not None:
            self._on_epoch(self.trial, row)
        if not self._prunes:
            return False
        self.wait()
        return self.trial.should_prune()

    def _write(self, history: list[dict], value: float, epoch: int) -> None:
        record.write_history(self.trial, history)  # first: a history is never shorter than the values reported
        self.trial.report(value, epoch)

    def wait(self) -> None:
        """Wait until this trial's records so far are in the database; raise the error of a write that failed.

        A trial waits for its own writes, not the writer's whole queue: a fused member does not
        wait for the members after it.
        """
        if self._written is not None:
            self._written.result()

    def finish(self, result: TrainResult, store=None, keep_weights: str = "all") -> float:
        """Record the result and the weights; return the trial's value, or raise ``TrialPruned``.

        A trial whose loss became NaN or infinite is complete, with the accuracy it had and
        ``diverged`` set. Weights are uploaded before the trial finishes: a crash leaves an
        unfinished trial (run again), never a finished one without weights.
        """
        self.wait()  # every epoch's record is in before the trial's result (and before it ends)
        record.write_result(self.trial, result)
        pruned = result.stopped and not result.diverged
        notes.note_finished(self.trial, result, self.metric, self.paired, self.config.seed)  # optuna-dashboard's trial note
        if store is not None and not (pruned and keep_weights == "complete"):
            record.write_weights(self.trial, _upload_weights(self.trial, result.model, store))
        if pruned:
            raise optuna.TrialPruned(f"pruned after epoch {len(result.history)}")
        return result.history[-1][self.metric]


def _upload_weights(trial: optuna.Trial, model: torch.nn.Module, store) -> str:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"trial-{trial.number}.pt"
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, path)
        return optuna.artifacts.upload_artifact(
            artifact_store=store, file_path=str(path), study_or_trial=trial, mimetype="application/octet-stream"
        )
