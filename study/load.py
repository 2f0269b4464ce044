"""Loading the trained weights of a study's trials."""

import tempfile
from pathlib import Path

import optuna
import torch

from cnn import CNN, build_model
from study.storage import StudyError, open_storage


def load_model(storage: str, study_name: str, trial: int | None = None) -> CNN:
    """Rebuild a trial's trained CNN from the study database and its artifact folder.

    Args:
        storage: the study's storage URL.
        study_name: the study's name.
        trial: a trial number; None means the best complete trial.

    Returns:
        The model, in eval mode, on the CPU.

    Example:
        >>> model = load_model("sqlite:///runs/cnn-study.db", "cnn-study")  # doctest: +SKIP
    """
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage, must_exist=True))
    frozen = study.best_trial if trial is None else study.trials[trial]
    artifact_id = frozen.user_attrs.get("weights_artifact")
    if artifact_id is None:
        raise StudyError(f"trial {frozen.number} of study {study_name!r} has no saved weights (state {frozen.state.name})")
    store = optuna.artifacts.FileSystemArtifactStore(study.user_attrs["artifacts"])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "weights.pt"
        optuna.artifacts.download_artifact(artifact_store=store, file_path=str(path), artifact_id=artifact_id)
        state = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(frozen.params["activation"], num_classes=state["fc.bias"].numel())
    model.load_state_dict(state)
    return model.eval()
