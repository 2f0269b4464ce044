"""The Optuna objective: suggest -> train -> report and prune, with the whole history kept."""

import math
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path

import optuna
import torch
import torchvision

from cnn import Data, EpochRow, TrainConfig, train
from study.space import SearchSpace, suggest_config
from study.storage import worker_id


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "optuna": optuna.__version__,
    }


def _json_row(row: EpochRow) -> dict:
    # JSON has no NaN or infinity (the dashboard could not parse them): a diverged loss is null.
    return {k: (v if isinstance(v, int) or math.isfinite(v) else None) for k, v in row.items()}


def make_objective(
    space: SearchSpace,
    fixed: TrainConfig,
    data: Data,
    settings: dict,
    artifact_store: optuna.artifacts.FileSystemArtifactStore | None = None,
    on_epoch: Callable[[optuna.Trial, EpochRow], None] | None = None,
) -> Callable[[optuna.Trial], float]:
    """Build the objective of a study.

    Args:
        space: what to sample.
        fixed: the settings shared by all trials (epochs, batch size, optimiser, seed, device).
        data: the images, already loaded.
        settings: the study's protocol, stored with every trial.
        artifact_store: where the weights of every finished trial go (None: not kept).
        on_epoch: also told of every epoch (for progress display).

    Returns:
        ``objective(trial) -> accuracy``: the last epoch's test accuracy, or its validation
        accuracy when ``data`` has a validation split. A trial whose loss became NaN or
        infinite is complete, with the accuracy it had and ``diverged`` set.
    """
    metric = "val_acc" if data.val is not None else "test_acc"

    def objective(trial: optuna.Trial) -> float:
        config = suggest_config(trial, space, fixed)
        trial.set_user_attr("worker", worker_id())
        trial.set_user_attr("settings", settings)
        trial.set_user_attr("seed", config.seed)
        trial.set_user_attr("versions", versions())
        history: list[dict] = []

        def report(row: EpochRow) -> bool:
            history.append(_json_row(row))
            trial.set_user_attr("history", history)  # written every epoch: a crash loses at most one epoch
            trial.report(row[metric], row["epoch"])
            if on_epoch is not None:
                on_epoch(trial, row)
            return trial.should_prune()

        result = train(config, data, on_epoch=report)
        trial.set_user_attr("device", result.device)
        trial.set_user_attr("precision", result.precision)
        trial.set_user_attr("n_params", result.n_params)
        trial.set_user_attr("diverged", result.diverged)
        trial.set_user_attr("epochs_run", len(result.history))
        trial.set_user_attr("test_acc", result.test_acc)
        trial.set_user_attr("confusion", result.confusion)
        if artifact_store is not None:
            _save_weights(trial, result.model, artifact_store)
        if result.stopped and not result.diverged:
            raise optuna.TrialPruned(f"pruned after epoch {len(result.history)}")
        return result.history[-1][metric]

    return objective


def _save_weights(trial: optuna.Trial, model: torch.nn.Module, store: optuna.artifacts.FileSystemArtifactStore) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"trial-{trial.number}.pt"
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, path)
        artifact_id = optuna.artifacts.upload_artifact(
            artifact_store=store, file_path=str(path), study_or_trial=trial, mimetype="application/octet-stream"
        )
    trial.set_user_attr("weights_artifact", artifact_id)
