"""Loading the trained weights of a study's trials, on any machine that can open the storage."""

import tempfile
from pathlib import Path

import optuna
import torch

from cnn import CNN, build_model
from study.artifacts import artifact_store
from study.storage import StudyError, load_existing_study


def load_model(storage: str, study_name: str, trial: int | None = None) -> CNN:
    """Rebuild a trial's trained CNN from the study's storage.

    The weights live in the study's own database (a folder for studies run with
    ``--weights-dir`` or by the first release), so nothing but the storage is needed.

    Args:
        storage: the study's storage URL.
        study_name: the study's name.
        trial: a trial number; None means the best complete trial.

    Returns:
        The model, in eval mode, on the CPU.

    Raises:
        StudyError: no such study or trial, or the trial kept no weights.

    Example:
        >>> model = load_model("sqlite:///runs/cnn-study.db", "cnn-study")  # doctest: +SKIP
    """
    study = load_existing_study(storage, study_name)
    try:
        frozen = study.best_trial if trial is None else study.trials[trial]
    except (ValueError, IndexError):
        raise StudyError(f"study {study_name!r} has no {'complete trial' if trial is None else f'trial {trial}'}") from None
    artifact_id = frozen.user_attrs.get("weights_artifact")
    store = artifact_store(study)
    if artifact_id is None or store is None:
        raise StudyError(f"trial {frozen.number} of study {study_name!r} has no saved weights (state {frozen.state.name})")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "weights.pt"
        try:
            optuna.artifacts.download_artifact(artifact_store=store, file_path=str(path), artifact_id=artifact_id)
        except (optuna.artifacts.exceptions.ArtifactNotFound, FileNotFoundError):
            raise StudyError(
                f"the weights of trial {frozen.number} are not in {study.user_attrs['artifacts']}; "
                "a study whose weights are in a folder needs that folder on this machine"
            ) from None
        state = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(frozen.params["activation"], num_classes=state["fc.bias"].numel())
    model.load_state_dict(state)
    return model.eval()
