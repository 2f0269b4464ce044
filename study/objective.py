"""The Optuna objective: suggest -> train -> report and prune, with the whole record kept."""

import tempfile
from collections.abc import Callable
from pathlib import Path

import optuna
import torch

from cnn import Data, EpochRow, TrainConfig, train
from study import record
from study.space import SearchSpace, suggest_config


def make_objective(
    space: SearchSpace,
    fixed: TrainConfig,
    data: Data,
    repeats: int | None = None,
    artifact_store: optuna.artifacts.FileSystemArtifactStore | None = None,
    keep_weights: str = "all",
    on_epoch: Callable[[optuna.Trial, EpochRow], None] | None = None,
) -> Callable[[optuna.Trial], float]:
    """Build the objective of a study.

    Args:
        space: what to sample.
        fixed: the settings shared by all trials (epochs, batch size, optimiser, base seed, device).
        data: the images, already loaded.
        repeats: the paired design's replicates (None: no design, every trial trains from ``fixed.seed``).
        artifact_store: where the weights of finished trials go (None: not kept).
        keep_weights: "all" finished trials, or "complete" ones only (not the pruned).
        on_epoch: also told of every epoch (for progress display).

    Returns:
        ``objective(trial) -> accuracy``: the last epoch's test accuracy, or its validation
        accuracy when ``data`` has a validation split. A trial whose loss became NaN or
        infinite is complete, with the accuracy it had and ``diverged`` set.
    """
    metric = "val_acc" if data.val is not None else "test_acc"

    def objective(trial: optuna.Trial) -> float:
        config, replicate = suggest_config(trial, space, fixed, repeats)
        record.write_start(trial, config, replicate)
        history: list[dict] = []

        def report(row: EpochRow) -> bool:
            history.append(record.json_row(row))
            record.write_history(trial, history)
            trial.report(row[metric], row["epoch"])
            if on_epoch is not None:
                on_epoch(trial, row)
            return trial.should_prune()

        result = train(config, data, on_epoch=report)
        record.write_result(trial, result)
        pruned = result.stopped and not result.diverged
        # Uploaded before the trial finishes: a crash leaves an unfinished trial (run again), never a finished one without weights.
        if artifact_store is not None and not (pruned and keep_weights == "complete"):
            record.write_weights(trial, _upload_weights(trial, result.model, artifact_store))
        if pruned:
            raise optuna.TrialPruned(f"pruned after epoch {len(result.history)}")
        return result.history[-1][metric]

    return objective


def _upload_weights(trial: optuna.Trial, model: torch.nn.Module, store) -> str:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"trial-{trial.number}.pt"
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, path)
        return optuna.artifacts.upload_artifact(
            artifact_store=store, file_path=str(path), study_or_trial=trial, mimetype="application/octet-stream"
        )
