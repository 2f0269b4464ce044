"""Synthetic studies: real SQLite databases filled with trials whose numbers are known."""

import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution, FloatDistribution

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
DISTRIBUTIONS = {
    "activation": CategoricalDistribution(("relu", "leaky_relu", "tanh")),
    "loss": CategoricalDistribution(("cross_entropy", "mse", "bce_with_logits")),
    "lr": FloatDistribution(1e-5, 1.0, log=True),
}


def settings(epochs: int = 3) -> dict:
    return {
        "search_space": {
            "activations": ["relu", "leaky_relu", "tanh"],
            "losses": ["cross_entropy", "mse", "bce_with_logits"],
            "lr_min": 1e-5,
            "lr_max": 1.0,
        },
        "epochs": epochs,
        "batch_size": 100,
        "optimizer": "adam",
        "augment": False,
        "data_source": "folder",
        "data_path": "/nonexistent",
        "classes": CLASSES,
        "train_size": 500,
        "test_size": 200,
        "val_size": 0,
        "val_split": 0.0,
        "selection": "test",
    }


def make_trial(activation, loss, lr, test_accs, *, state="complete", diverged=False, train_accs=None, baseline=False):
    """A finished trial with a per-epoch history; train accuracy defaults to test + 5."""
    train_accs = train_accs or [a + 5 for a in test_accs]
    history = [
        {"epoch": e, "train_loss": 1.0 / e, "train_acc": tr, "test_loss": 1.5 / e, "test_acc": te, "seconds": 1.0}
        for e, (tr, te) in enumerate(zip(train_accs, test_accs, strict=True), 1)
    ]
    confusion = [[20 if i == j else 0 for j in range(10)] for i in range(10)]
    confusion[3][5] = 7  # cat taken for dog
    user_attrs = {"history": history, "diverged": diverged, "confusion": confusion, "device": "cpu", "precision": "float32"}
    if baseline:
        user_attrs["baseline"] = True
    return optuna.create_trial(
        state=optuna.trial.TrialState.PRUNED if state == "pruned" else optuna.trial.TrialState.COMPLETE,
        value=None if state == "pruned" else test_accs[-1],
        params={"activation": activation, "loss": loss, "lr": lr},
        distributions=DISTRIBUTIONS,
        user_attrs=user_attrs,
        intermediate_values={e: a for e, a in enumerate(test_accs, 1)},
    )


def make_study(storage: str, trials, name: str = "synthetic", epochs: int = 3) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for key, value in {"settings": settings(epochs), "sampler": "grid", "pruner": "median", "command": "python -m study.run"}.items():
        study.set_user_attr(key, value)
    for trial in trials:
        study.add_trial(trial)
    return study


def trials_frame(rows) -> pd.DataFrame:
    """A trials frame from (activation, loss, lr, final_test_acc[, state, diverged, gap]) tuples."""
    records = []
    for i, row in enumerate(rows):
        activation, loss, lr, acc, *rest = row
        state = rest[0] if rest else "complete"
        diverged = rest[1] if len(rest) > 1 else False
        gap = rest[2] if len(rest) > 2 else 5.0
        records.append(
            {
                "number": i,
                "state": state,
                "activation": activation,
                "loss": loss,
                "lr": lr,
                "value": acc if state == "complete" else None,
                "final_test_acc": acc,
                "final_train_acc": acc + gap,
                "gap": gap,
                "peak_test_acc": acc,
                "epochs_run": 3,
                "diverged": diverged,
                "baseline": False,
                "seconds": 1.0,
                "device": "cpu",
                "precision": "float32",
            }
        )
    return pd.DataFrame(records)


def paired_settings(epochs: int = 3, repeats: int = 2, test_size: int = 10_000, **changes):
    """StudySettings of a paired grid study written by this release."""
    from study.record import StudySettings

    fields = dict(
        search_space={"activations": ["relu", "tanh"], "losses": ["cross_entropy", "mse"], "lr_min": 1e-3, "lr_max": 0.1, "grid_lrs": 3},
        epochs=epochs, batch_size=100, optimizer="adam", augment=False, data_source="folder", data_path="/nonexistent",
        classes=CLASSES, train_size=500, test_size=test_size, val_size=0, val_split=0.0, selection="test", sampler="grid",
        pruner="none", min_epochs=3, seed=0, repeats=repeats,
        baseline={"activation": "relu", "loss": "cross_entropy", "lr": 1e-3, "replicate": 0},
    )  # fmt: skip
    return StudySettings(**(fields | changes))


def record(number, activation, loss, lr, replicate, test_accs, *, state="complete", diverged=False, test_losses=None, train_losses=None):
    """A TrialRecord with one history row per test accuracy (train accuracy = test + 5)."""
    from study.record import TrialRecord

    test_losses = test_losses or [1.0] * len(test_accs)
    train_losses = train_losses or [1.0] * len(test_accs)
    history = [
        {"epoch": e, "train_loss": trl, "train_acc": acc + 5, "test_loss": tel, "test_acc": acc, "seconds": 1.0}
        for e, (acc, tel, trl) in enumerate(zip(test_accs, test_losses, train_losses, strict=True), 1)
    ]
    return TrialRecord(
        number=number, state=state, activation=activation, loss=loss, lr=lr, replicate=replicate, seed=replicate,
        value=test_accs[-1] if state == "complete" else None, history=history, diverged=diverged,
    )  # fmt: skip
