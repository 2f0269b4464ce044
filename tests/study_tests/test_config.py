"""Flags -> StudyConfig: one set of defaults, taken from the dataclasses (no data, no training)."""

import pytest
import torch

from cnn import TrainConfig
from study.config import AUTO_COMPILE, TRAIN_FLAGS, StudyConfig, auto_compile, build_parser, parse_config
from study.space import SearchSpace


def test_defaults_come_from_the_dataclasses():
    config, download = parse_config([])
    assert config.train == TrainConfig() and config.space == SearchSpace()
    assert (config.sampler, config.pruner, config.repeats, config.trials) == (StudyConfig.sampler, "auto", None, None)
    assert download and config.data_dir == StudyConfig.data_dir


def test_help_shows_the_defaults_the_code_uses():
    text = build_parser().format_help()
    train = TrainConfig()
    for flag in ("--epochs", "--batch-size", "--optimizer", "--device", "--precision", "--repeats", "--grid-lrs"):
        assert flag in text
    assert f"(default: {train.epochs}, as the notebook)" in text and f"(default: {train.batch_size}, as the notebook)" in text
    assert "(default: grid)" in text and "(default: relu,leaky_relu,tanh)" in text


def test_training_flags_land_in_the_train_config():
    flags = ["--epochs", "4", "--batch-size", "50", "--optimizer", "sgd", "--augment", "--seed", "3", "--precision", "fp32"]
    config, _ = parse_config([*flags, "--compile", "reduce-overhead"])
    assert config.train == TrainConfig(
        epochs=4, batch_size=50, optimizer="sgd", augment=True, seed=3, precision="fp32", compile_mode="reduce-overhead"
    )
    assert parse_config(["--compile", "off"])[0].train.compile_mode is None  # off: eager
    assert set(TRAIN_FLAGS) <= {f for f in TrainConfig.__dataclass_fields__}


def test_compile_auto_captures_the_step_as_a_cuda_graph_on_cuda_only():
    # auto, the default: the step replayed as one CUDA graph on a CUDA GPU, eager on the CPU (and on a device this
    # machine lacks, which run_study then refuses with its own message).
    assert parse_config(["--device", "cpu"])[0].train.compile_mode is None
    assert parse_config(["--compile", "auto", "--device", "cpu"])[0].train.compile_mode is None
    assert auto_compile("cpu") is None and AUTO_COMPILE == {"cuda": "cuda-graph"}
    expected = "cuda-graph" if torch.cuda.is_available() else None
    assert auto_compile("cuda") == expected and parse_config(["--device", "cuda"])[0].train.compile_mode == expected


def test_default_study_is_the_sequential_paired_grid_and_fits_the_design_card():
    config, _ = parse_config([])
    # 3 activations x 3 losses x 3 learning rates, up to 5 replicates; the notebook's configuration is on the grid.
    assert config.sequential and config.space.grid_size(1) == 27 and config.grid_repeats == 5
    assert config.grid_trials == 135 and config.target == 135 and not config.enqueue_baseline
    assert config.resolved_pruner == "none" and config.design_repeats == 5
    assert parse_config(["--trials", "50"])[0].target == 50
    fixed = parse_config(["--repeats", "2"])[0]
    assert not fixed.sequential and fixed.grid_trials == 54 and fixed.design_repeats == 2
    assert parse_config(["--max-repeats", "3"])[0].grid_repeats == 3


def test_baseline_off_the_grid_is_one_extra_trial():
    config, _ = parse_config(["--grid-lrs", "2", "--lr-min", "1e-4", "--lr-max", "1e-2", "--repeats", "2"])
    assert config.enqueue_baseline and config.baseline_params == {"activation": "relu", "loss": "cross_entropy", "lr": 1e-3, "replicate": 0}
    assert config.grid_trials == 3 * 3 * 2 * 2 + 1
    config, _ = parse_config(["--grid-lrs", "2", "--lr-min", "1e-4", "--lr-max", "1e-2", "--no-baseline"])
    assert not config.enqueue_baseline and config.baseline_params is None


def test_other_samplers_prune_with_the_median_and_enqueue_the_baseline():
    config, _ = parse_config(["--sampler", "tpe"])
    assert config.resolved_pruner == "median" and config.design_repeats is None and config.target == 50
    assert config.enqueue_baseline and config.baseline_params == {"activation": "relu", "loss": "cross_entropy", "lr": 1e-3}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--repeats", "3", "--sampler", "random"], "--repeats 3 needs --sampler grid"),
        (["--epochs", "0"], "--epochs must be at least 1 but got 0"),
        (["--batch-size", "-2"], "--batch-size must be at least 1 but got -2"),
        (["--pruner", "auto-ish"], "unknown pruner 'auto-ish'"),
        (["--trials", "136"], "--trials 136 is more than the grid's 135 trials; use --trials 135"),
        (["--repeats", "2", "--max-repeats", "3"], "--repeats 2 runs the fixed design and --max-repeats 3 bounds the sequential one"),
        (["--max-repeats", "3", "--sampler", "tpe"], "--max-repeats needs --sampler grid"),
        (["--max-repeats", "0"], "--max-repeats must be at least 1 but got 0"),
        (["--fuse", "x"], "argument --fuse: invalid value 'x': use auto or a number of trials"),
        (["--fuse", "0"], "--fuse must be at least 1 but got 0"),
        (["--keep-weights", "some"], "unknown --keep-weights 'some'; choose one of: all, complete, none"),
        (["--memory-format", "nchw"], "unknown --memory-format 'nchw'; choose one of: auto, channels_last, contiguous"),
        (
            ["--compile", "fast"],
            "argument --compile: unknown compile mode 'fast'; choose one of: off, auto, default, reduce-overhead, "
            "max-autotune-no-cudagraphs, cuda-graph",
        ),
    ],
)
def test_bad_flags_exit_with_one_line(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(flags)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_fuse_auto_fuses_on_cuda_only():
    auto, _ = parse_config([])
    assert auto.fuse is None and auto.fuse_for("cpu") == 1 and auto.fuse_for("cuda") == 16
    assert parse_config(["--fuse", "3"])[0].fuse_for("cpu") == 3
