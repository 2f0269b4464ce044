import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from reports_tests.conftest import CLASSES, trials_frame

from reports import figures


@pytest.fixture
def frames():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        lr = float(10 ** rng.uniform(-5, 0))
        rows.append(
            (
                ["relu", "tanh"][i % 2],
                ["mse", "cross_entropy", "bce_with_logits"][i % 3],
                lr,
                float(rng.uniform(10, 70)),
                ["complete", "pruned"][i % 4 == 0],
                i % 7 == 0,
            )
        )
    trials = trials_frame(rows)
    epochs = pd.DataFrame(
        [
            {
                "number": t.number,
                "epoch": e,
                "state": t.state,
                "loss": t.loss,
                "train_acc": t.final_test_acc * e / 3 + 5,
                "test_acc": t.final_test_acc * e / 3,
            }
            for t in trials.itertuples()
            for e in (1, 2, 3)
        ]
    )
    yield trials, epochs
    plt.close("all")


def _check(fig):
    assert isinstance(fig, plt.Figure) and fig.axes
    plt.close(fig)


def test_accuracy_by_marks_shared_decades(frames):
    trials, _ = frames
    fig = figures.accuracy_by(trials, "activation", [-3, -2], chance=10.0)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert "1e-3–1e-2 *" in labels and "1e-5–1e-4" in labels
    _check(fig)


def test_accuracy_vs_lr_is_on_a_log_axis(frames):
    trials, _ = frames
    fig = figures.accuracy_vs_lr(trials, chance=10.0)
    assert fig.axes[0].get_xscale() == "log"
    _check(fig)


def test_curve_figures(frames):
    trials, epochs = frames
    _check(figures.learning_curves(epochs, "loss"))
    _check(figures.train_vs_test(epochs, trials["number"].tolist()[:5]))
    _check(figures.peak_epochs(pd.Series([3, 3, 2]), 3))
    _check(figures.optimization_history(trials))
    _check(figures.pruning_epochs(trials, 3))
    _check(figures.importances(pd.DataFrame({"term": ["lr", "loss", "lr × loss"], "percent": [50.0, 34.0, 6.0]})))


def test_confusion_heatmap_annotates_counts():
    confusion = np.diag(np.full(10, 9)).tolist()
    fig = figures.confusion_heatmap(confusion, CLASSES, "t")
    assert "9" in [t.get_text() for t in fig.axes[0].texts]
    _check(fig)


def test_sample_grid_has_one_column_per_class():
    images = torch.randint(0, 255, (40, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(40) % 10
    fig = figures.sample_grid(images, labels, CLASSES, per_class=2)
    assert len(fig.axes) == 20 and fig.axes[0].get_title() == "airplane"
    _check(fig)
