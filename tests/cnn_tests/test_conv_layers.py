"""cnn.layers: each fused convolution, grouped against K separate ones, and the memory format auto picks from that."""

import math

import torch

from cnn.layers import CONV_LAYERS, LAYOUTS, conv_layer_times, pick_memory_format


def test_conv_layer_times_has_every_layer_in_both_layouts_forward_and_backward():
    rows = conv_layer_times(torch.device("cpu"), k=2, batch=2, repeats=1)
    assert [(row["layer"], row["memory_format"]) for row in rows] == [(i, name) for i in (1, 2, 3) for name in LAYOUTS]
    for row in rows:
        assert row["grouped_s"] > 0 and row["separate_s"] > 0
        assert math.isclose(row["speedup"], row["separate_s"] / row["grouped_s"])
    assert len(CONV_LAYERS) == 3


def test_pick_memory_format_takes_the_layout_whose_grouped_convolutions_are_faster():
    rows = [
        {"layer": 1, "memory_format": "channels_last", "grouped_s": 0.004},
        {"layer": 1, "memory_format": "contiguous", "grouped_s": 0.001},
        {"layer": 2, "memory_format": "channels_last", "grouped_s": 0.001},
        {"layer": 2, "memory_format": "contiguous", "grouped_s": 0.002},
    ]
    name, why = pick_memory_format(rows)
    assert name == "contiguous" and why == "its grouped convolutions took 3.0 ms against 5.0 ms in channels_last"


def test_a_fused_run_in_auto_memory_format_says_what_it_measured_and_picked():
    from cnn.fused import MEMORY_FORMATS, setup_many
    from tests.cnn_tests.test_fused_step import _configs, _random_data

    run = setup_many(_configs(2, batch_size=4), _random_data(), memory_format="auto")
    name = run.memory_format_choice.split(":")[0]
    assert MEMORY_FORMATS[name] == run.memory_format
    assert "measured on cpu: its grouped convolutions took" in run.memory_format_choice
