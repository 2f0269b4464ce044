"""The lecture notebook's CIFAR-10 CNN as a library: model, losses, data and training.

Nothing here depends on Optuna; ``study`` builds on it.
"""

from cnn.data import Data, DataError, ImageSet, load_data, normalize
from cnn.fused import train_many
from cnn.losses import LOSSES, build_loss
from cnn.model import ACTIVATIONS, CNN, build_model
from cnn.registry import UnknownNameError
from cnn.train import (
    OPTIMIZERS,
    DeviceError,
    EpochRow,
    Scores,
    TrainConfig,
    TrainResult,
    evaluate,
    resolve_device,
    train,
    train_one_epoch,
)

__all__ = [
    "ACTIVATIONS",
    "CNN",
    "LOSSES",
    "OPTIMIZERS",
    "Data",
    "DataError",
    "DeviceError",
    "EpochRow",
    "ImageSet",
    "Scores",
    "TrainConfig",
    "TrainResult",
    "UnknownNameError",
    "build_loss",
    "build_model",
    "evaluate",
    "load_data",
    "normalize",
    "resolve_device",
    "train",
    "train_many",
    "train_one_epoch",
]
