"""The progress display keeps its percentage and time left in an 80-column terminal, in every round."""

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from tqdm import tqdm

from study.progress import BAR_FORMAT, MIN_BAR, Progress, epoch_text, fmt_seconds, open_text

OPEN = [  # the open comparisons of a round, as the sequential plan names them
    "activation: leaky_relu vs relu, pooled over learning rates",
    "activation: relu vs tanh at lr 0.0001",
    "loss: bce_with_logits vs cross_entropy, pooled over learning rates",
    "loss: cross_entropy vs mse at lr 0.01",
] * 6
DISTRIBUTIONS = {
    "activation": CategoricalDistribution(["relu", "leaky_relu", "tanh"]),
    "loss": CategoricalDistribution(["cross_entropy", "mse", "bce_with_logits"]),
    "lr": FloatDistribution(1e-4, 1e-2, log=True),
    "replicate": IntDistribution(0, 4),
}


def _finish_a_trial(study: optuna.Study, replicate: int) -> None:
    params = {"activation": "relu", "loss": "mse", "lr": 1e-3, "replicate": replicate}
    history = [{"epoch": 1, "seconds": 3.0, "test_acc": 40.0}]
    study.add_trial(optuna.trial.create_trial(params=params, distributions=DISTRIBUTIONS, value=40.0, user_attrs={"history": history}))


def _line(progress: Progress, n: int, total: int) -> tuple[str, int]:
    """The bar as an 80-column terminal shows it (cut at 80), and the width of the whole line with its bar at MIN_BAR columns."""
    # Worst times a long study shows: hours in both the elapsed time and the time left.
    meter = dict(n=n, total=total, elapsed=9 * 3600 + 3599, prefix=progress.bar.desc, bar_format=BAR_FORMAT)
    postfix = ", " + epoch_text(999, 99, 99)
    shown = tqdm.format_meter(ncols=80, postfix=postfix[2:], **meter)
    natural = tqdm.format_meter(ncols=None, postfix=postfix[2:], **meter)  # tqdm's bar is 10 columns without ncols
    return shown, len(natural) - 10 + MIN_BAR


def test_bar_keeps_percentage_and_time_left_in_80_columns_in_every_round(db, capsys):
    study = optuna.create_study(study_name="s", storage=db, direction="maximize")
    _finish_a_trial(study, 0)
    progress = Progress(study, target=999, epochs=99, sequential=True)
    for number in range(1, 10):
        study.set_user_attr(f"round {number}", {"open": OPEN[: 4 * number], "decided": 3, "points": list(range(20)), "stop": ""})
        _finish_a_trial(study, min(number, 4))
        progress.poll(study)  # a finished trial: the bar's description follows the rounds
        shown, width = _line(progress, 500, 999)
        assert "[" not in progress.bar.desc and f"round {number}, {min(4 * number, len(OPEN))} open" in progress.bar.desc
        # Nothing is cut: the whole line, its bar at MIN_BAR columns, fits 80 columns, percentage and time left first.
        assert width <= 80, shown
        assert shown.startswith(" 50%|") and "[9:59:59<9:58:47]" in shown and shown.rstrip().endswith("trial 999 epoch 99/99")
    progress.close()
    out = capsys.readouterr().out
    # When a round starts its open comparisons are named, on lines of their own (wrapped to the terminal).
    assert "\n  open: activation: leaky_relu vs relu, pooled" in out
    assert "open: activation: leaky_relu vs relu, pooled over learning rates; activation: relu vs tanh" in " ".join(out.split())


def test_open_comparisons_wrap_to_the_terminal():
    lines = open_text(OPEN, width=80).splitlines()
    assert len(lines) > 1 and all(len(line) <= 80 for line in lines) and lines[0].startswith("  open: activation:")


def test_times_under_ten_seconds_keep_a_decimal():
    # A member of 16 fused trials on an H200 had 0.31 s of a 5 s epoch: the study printed "first epoch took 0 s".
    assert [fmt_seconds(s) for s in (0.31, 3.04, 9.96, 89.4, 150.0, 7200.0)] == ["0.3 s", "3.0 s", "10 s", "89 s", "2.5 min", "2.0 h"]
