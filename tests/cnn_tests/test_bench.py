"""cnn.bench: the precision auto picked against the other one, and the roofline line, in the same run."""

import pytest
import torch

from cnn import compiling
from cnn.bench import main, matmul_rate, other_precision, step_flops
from cnn.train import resolve_precision
from tests.cnn_tests.test_fused_step import _random_data

# Multiply-adds of one image through the notebook's CNN, counted by hand: 3x3 convs keep H, W; each MaxPool halves them.
CONVS = (32 * 32 * 32 * 3 * 9, 16 * 16 * 64 * 32 * 9, 8 * 8 * 128 * 64 * 9)
FORWARD = 2 * (sum(CONVS) + 2048 * 10)  # 20,684,800 FLOPs


def test_step_flops_are_the_cnns_convolutions_and_matmuls():
    per_step, per_image = step_flops(_random_data(20), torch.device("cpu"), torch.float32, batch_size=4)
    assert per_image == FORWARD
    # Backward is twice the forward (input and weight gradients), less the input gradient of the first conv (images).
    assert per_step == 4 * (3 * FORWARD - 2 * CONVS[0])


def test_matmul_rate_is_a_plausible_flop_rate():
    assert 1e8 < matmul_rate(torch.device("cpu"), torch.float32, n=128, seconds=0.05) < 1e14


def test_other_precision_is_the_one_auto_did_not_pick():
    cpu = torch.device("cpu")
    assert other_precision("fp32", cpu) is None and other_precision("auto", torch.device("mps")) is None
    picked = "bf16" if resolve_precision("auto", cpu) == torch.bfloat16 else "fp32"
    assert other_precision("auto", cpu) == {"bf16": "fp32", "fp32": "bf16"}[picked]


def test_bench_prints_auto_against_the_other_precision_and_a_roofline(cifar_dir, capsys):
    main(["--data-dir", str(cifar_dir), "--train-size", "200", "--test-size", "100", "--rounds", "1", "--device", "cpu"])
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("precision auto on cpu: ") and ", because " in line for line in lines)
    assert any(line.startswith("round 1 ours ") and ("bf16" in line or "fp32" in line) for line in lines)
    assert any(line.startswith("precision: auto (") and "the speed of" in line for line in lines)
    assert any(line.startswith("roofline: our epoch ") and "GFLOP/s" in line and "% of it" in line for line in lines)
    assert lines[-1].startswith("train+eval speedup vs notebook: ")


def test_bench_compile_times_our_compiled_loop_beside_the_eager_one(cifar_dir, capsys, monkeypatch):
    # Traced by dynamo without code generation (backend "eager"): the wiring, not the speed.
    monkeypatch.setattr(compiling, "compile_step", lambda function, mode: torch.compile(function, backend="eager"))
    torch._dynamo.reset()
    sizes = ["--train-size", "200", "--test-size", "100"]
    main(["--data-dir", str(cifar_dir), *sizes, "--rounds", "1", "--device", "cpu", "--compile", "default"])
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("round 1 ours default ") for line in lines)
    assert any(line.startswith("ours compiled (default) vs eager: ") for line in lines)


def test_bench_refuses_cuda_graph_off_cuda_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--device", "cpu", "--compile", "cuda-graph", "--data-dir", "/nonexistent"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) <= 2  # usage, then the one error line
    assert "--compile cuda-graph captures CUDA graphs, but the device is cpu: use a CUDA GPU, or leave --compile out" in err
