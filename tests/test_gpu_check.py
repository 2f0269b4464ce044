"""scripts/gpu_check.py: the one command for a GPU machine, run whole on the CPU on a tiny subset."""

import importlib.util
import json
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO

SCRIPT = REPO / "scripts" / "gpu_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_cuda_allocation_failure_is_caught_and_nothing_else():
    gpu_check = _script()
    failures = [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: out of memory"),
        RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
        RuntimeError("CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    ]
    assert all(gpu_check.is_allocation_failure(error) for error in failures)
    assert not gpu_check.is_allocation_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not gpu_check.is_allocation_failure(ValueError("out of memory"))
    # Real failures that name CUDA, cuDNN or cuBLAS without being an allocation failure: never a quiet skip.
    real = [
        RuntimeError("CUDA error: an illegal memory access was encountered"),
        RuntimeError("Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!"),
        RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed in a non-contiguous input."),
        RuntimeError("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, opa, opb, m, n, k)`"),
        RuntimeError("CUDA error: device-side assert triggered"),
    ]
    assert not any(gpu_check.is_allocation_failure(error) for error in real)


def test_group_size_is_the_last_fuse_flag_or_autos():
    gpu_check = _script()
    assert gpu_check.group_size(torch.device("cuda"), []) == 16
    assert gpu_check.group_size(torch.device("cpu"), ["--epochs", "2"]) == 1
    assert gpu_check.group_size(torch.device("cpu"), ["--fuse", "4", "--fuse", "2"]) == 2
    # A group of 16 at 2 s per fused K=4 epoch: 8 s per epoch.
    assert gpu_check.group_seconds({"fused K=4": {"seconds": 2.0}, "fused K=16 contiguous": {"seconds": 1.0}}, 16, 10) == 80.0
    # A captured study is timed by the captured figures where there are any.
    found = {"fused K=16": {"seconds": 4.0}, "fused K=16 cuda-graph": {"seconds": 3.0}, "fused K=32 cuda-graph": {"seconds": 6.0}}
    assert gpu_check.group_seconds(found, 16, 10, "cuda-graph") == 30.0 and gpu_check.group_seconds(found, 16, 10, "off") == 40.0


def _tiny_archive(cifar_dir: Path, path: Path, per_class: dict[str, int]) -> Path:
    # The archive a GPU machine gets, with its folders one level down, as the full CIFAR-10 JPEG archive may have them.
    with tarfile.open(path, "w:gz") as archive:
        for split, n in per_class.items():
            for folder in sorted((cifar_dir / split).iterdir()):
                for image in sorted(folder.iterdir())[:n]:
                    archive.add(image, arcname=f"cifar10-jpg/{split}/{folder.name}/{image.name}")
    return path


@pytest.mark.slow
def test_gpu_check_on_the_cpu_brings_back_figures_database_and_report(cifar_dir, tmp_path):
    archive = _tiny_archive(cifar_dir, tmp_path / "tiny.tar.gz", {"train": 20, "test": 10})
    out = tmp_path / "out"
    # Two activations x two learning rates, one epoch each, fused two at a time: the smallest grid the report analyses
    # (the default sequential design, one round).
    study = ["--activations", "relu,tanh", "--losses", "cross_entropy", "--grid-lrs", "2", "--lr-min", "1e-3", "--lr-max", "1e-2"]
    command = [sys.executable, str(SCRIPT), "--data", str(archive), "--out", str(out), "--device", "cpu", "--epochs", "1"]
    command += ["--fuse-sizes", "2", "--time-limit", "240", "--", *study, "--fuse", "2", "--max-repeats", "1"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    # Every figure is printed with the device's name.
    figures = [line for line in lines if "s/epoch" in line]
    assert len(figures) == 4 and all(line.startswith("[CPU") for line in figures), figures
    assert any("fused K=2" in line and "x one at a time" in line for line in figures)
    with sqlite3.connect(out / "study.db") as db:
        states = [state for (state,) in db.execute("SELECT state FROM trials")]
        artifacts = db.execute("SELECT name FROM sqlite_master WHERE name = 'cnn_study_artifacts'").fetchall()
        stored = db.execute("SELECT COUNT(*) FROM cnn_study_artifacts").fetchone()[0] if artifacts else 0
    assert states == ["COMPLETE"] * 4
    assert stored == 0  # --keep-weights none
    assert (out / "report" / "report.md").is_file() and (out / "figures.json").is_file()
    with tarfile.open(out / "gpu-check-results.tar.gz") as results:
        names = set(results.getnames())
    assert {"gpu_check.log", "figures.json", "study.db", "report/report.md"} <= names


def test_figures_stop_growing_k_at_the_first_allocation_failure(tmp_path, monkeypatch, capsys):
    gpu_check = _script()
    calls = []

    def measure(device, make, estimate, clock, warm=True, warm_estimate=None):
        calls.append(len(calls))
        if len(calls) == 6:  # notebook, ours, one at a time, K=1, K=4, then K=16
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return {"seconds": 1.0, "trial_epochs_per_s": 1.0, "test_acc": 10.0, "peak_bytes": 0, "cold": False}

    monkeypatch.setattr(gpu_check, "measure", measure)
    monkeypatch.setattr(gpu_check, "roofline_figure", lambda *args: None)
    log = gpu_check.Log(tmp_path / "log")
    log.device_name = "Test GPU"
    args = gpu_check.build_parser().parse_args(["--data", "x"])
    found = gpu_check.figures(args, torch.device("cpu"), None, gpu_check.Clock(60), log)
    assert list(found) == ["notebook", "ours", "one at a time", "fused K=1", "fused K=4", "fused K=16"]
    assert "error" in found["fused K=16"] and len(calls) == 6  # neither K=16 contiguous nor K=64 was tried
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1].startswith("[Test GPU] fused K=16: out of GPU memory")
    assert all(line.startswith("[Test GPU] ") for line in printed)


def test_the_compiled_figures_sit_beside_the_eager_ones(tmp_path, monkeypatch, capsys):
    gpu_check = _script()
    made = []

    def measure(device, make, estimate, clock, warm=True, warm_estimate=None):
        made.append(make)
        return {"seconds": 1.0, "trial_epochs_per_s": 1.0, "test_acc": 10.0, "peak_bytes": 0, "cold": False}

    monkeypatch.setattr(gpu_check, "measure", measure)
    monkeypatch.setattr(gpu_check, "roofline_figure", lambda *args: None)
    log = gpu_check.Log(tmp_path / "log")
    args = gpu_check.build_parser().parse_args(["--data", "x", "--compile", "default"])
    found = gpu_check.figures(args, torch.device("cpu"), None, gpu_check.Clock(60), log)
    # The compiled figures come after every eager one: a slow or failing compile costs none of those.
    assert list(found) == ["notebook", "ours", "one at a time", "fused K=1", "fused K=4", "fused K=16", "fused K=16 contiguous"]
    gpu_check.compiled_figures(args, torch.device("cpu"), None, gpu_check.Clock(60), log, found)
    gpu_check.larger_fused_figures(args, torch.device("cpu"), None, gpu_check.Clock(60), log, found)
    # Fused K above 16 last: they decide how much --fuse auto should fuse, the figures before them are the targets'.
    assert list(found)[-4:] == ["ours default", "fused K=16 default", "fused K=32", "fused K=64"]
    assert "ours default" in capsys.readouterr().out
    # By default the compiled figures are CUDA's only: the step as one CUDA graph, then reduce-overhead; none on the CPU.
    default = gpu_check.build_parser().parse_args(["--data", "x"])
    assert gpu_check.compile_modes(default, torch.device("cuda")) == ["cuda-graph", "reduce-overhead"]
    assert gpu_check.compile_modes(default, torch.device("cpu")) == []
    several = gpu_check.build_parser().parse_args(["--data", "x", "--compile", "default, cuda-graph"])
    assert gpu_check.compile_modes(several, torch.device("cpu")) == ["default", "cuda-graph"]
    assert gpu_check.compile_modes(gpu_check.build_parser().parse_args(["--data", "x", "--compile", "off"]), torch.device("cuda")) == []


def test_an_unknown_compile_mode_is_one_line_that_names_the_known_ones(capsys):
    gpu_check = _script()
    with pytest.raises(SystemExit) as exit:
        gpu_check.build_parser().parse_args(["--data", "x", "--compile", "cuda-graph,fast"])
    assert exit.value.code == 2
    assert "unknown compile mode 'fast': use off or some of default, reduce-overhead" in capsys.readouterr().err


def test_the_study_captures_its_step_where_the_cuda_graph_figure_was_measured(tmp_path):
    gpu_check = _script()
    args = gpu_check.build_parser().parse_args(["--data", "x"])
    measured = {"ours cuda-graph": {"seconds": 0.4, "cold": False}}
    command = gpu_check.study_command(args, tmp_path, tmp_path, 100, [], measured)
    assert command[command.index("--compile") + 1] == "cuda-graph"
    # Not measured (failed, or not tried): eager, not the study's default (auto: cuda-graph on CUDA).
    command = gpu_check.study_command(args, tmp_path, tmp_path, 100, [], {"ours cuda-graph": {"error": "x"}})
    assert command[command.index("--compile") + 1] == "off"
    # The study's own --compile: the study runs as told.
    command = gpu_check.study_command(args, tmp_path, tmp_path, 100, ["--compile", "reduce-overhead"], measured)
    assert command.count("--compile") == 1 and command[-1] == "reduce-overhead"


def test_a_step_that_could_not_be_captured_fails_its_figure(tmp_path, monkeypatch):
    # In a study such a step warns and runs eagerly; in the check that would time eager under the captured name.
    import warnings

    gpu_check = _script()

    def measure(device, make, estimate, clock, warm=True, warm_estimate=None):
        warnings.warn("the training step could not be captured as a CUDA graph (no); it runs eagerly", RuntimeWarning, stacklevel=1)
        return {"seconds": 1.0, "trial_epochs_per_s": 1.0, "test_acc": 1, "peak_bytes": 0, "cold": False}

    monkeypatch.setattr(gpu_check, "measure", measure)
    args = gpu_check.build_parser().parse_args(["--data", "x", "--compile", "cuda-graph"])
    found = {"ours": {"seconds": 2.0}}
    with pytest.raises(gpu_check.FigureFailure, match="ours cuda-graph: RuntimeWarning: the training step could not be captured"):
        gpu_check.compiled_figures(args, torch.device("cpu"), None, gpu_check.Clock(60), gpu_check.Log(tmp_path / "log"), found)
    assert "seconds" not in found["ours cuda-graph"] and "traceback" in found["ours cuda-graph"]


def test_the_roofline_figure_sets_our_epoch_against_the_measured_matmul_rate(tmp_path, capsys):
    from tests.cnn_tests.test_fused_step import _random_data

    gpu_check = _script()
    log = gpu_check.Log(tmp_path / "log")
    log.device_name = "Test CPU"
    args = gpu_check.build_parser().parse_args(["--data", "x", "--precision", "fp32"])
    found = {}
    data = _random_data(200)
    row = gpu_check.roofline_figure(args, torch.device("cpu"), data, 2.0, log, found)
    assert found["roofline"] is row and row["matmul"] > 1e9  # any CPU multiplies faster than a GFLOP/s
    # Two training steps of 100 images and the test images' forward passes, in 2 s.
    assert row["achieved"] == row["epoch_flops"] / 2.0 and row["share"] == row["achieved"] / row["matmul"]
    assert capsys.readouterr().out.startswith("[Test CPU] roofline: our epoch")


def test_a_non_allocation_error_in_a_figure_stops_the_figures_with_its_traceback(tmp_path, monkeypatch, capsys):
    gpu_check = _script()
    calls = []

    def measure(device, make, estimate, clock, warm=True, warm_estimate=None):
        calls.append(len(calls))
        if len(calls) == 4:  # notebook, ours, one at a time, then fused K=1
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return {"seconds": 1.0, "trial_epochs_per_s": 1.0, "test_acc": 10.0, "peak_bytes": 0, "cold": False}

    monkeypatch.setattr(gpu_check, "measure", measure)
    monkeypatch.setattr(gpu_check, "roofline_figure", lambda *args: None)
    log = gpu_check.Log(tmp_path / "log")
    log.device_name = "Test GPU"
    args = gpu_check.build_parser().parse_args(["--data", "x"])
    found = {}
    with pytest.raises(gpu_check.FigureFailure, match="fused K=1: RuntimeError: CUDA error: an illegal memory access"):
        gpu_check.figures(args, torch.device("cpu"), None, gpu_check.Clock(60), log, found)
    assert len(calls) == 4  # no larger K was tried
    assert "illegal memory access" in found["fused K=1"]["error"] and "Traceback" in found["fused K=1"]["traceback"]
    logged = (tmp_path / "log").read_text()
    assert "fused K=1: FAILED, not an allocation failure" in logged and "Traceback (most recent call last)" in logged
    assert "out of GPU memory" not in capsys.readouterr().out


def test_a_failed_figure_fails_the_check_and_its_traceback_is_in_the_archive(tmp_path, monkeypatch):
    # The whole main() on the CPU, with the figure raising a device mismatch, the study and report stubbed out.
    from tests.cnn_tests.test_fused_step import _random_data

    gpu_check = _script()

    def measure(device, make, estimate, clock, warm=True, warm_estimate=None):
        raise RuntimeError("Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!")

    monkeypatch.setattr(gpu_check, "measure", measure)
    monkeypatch.setattr(gpu_check, "load_data", lambda *args, **kwargs: _random_data(20))
    out = tmp_path / "out"
    # The study and the report "succeed" (a database appears): the exit status is the figure's failure alone.
    monkeypatch.setattr(gpu_check, "run_logged", lambda command, log, seconds: (out / "study.db").touch() or 0)
    status = gpu_check.main(["--data", str(tmp_path), "--out", str(out), "--device", "cpu", "--time-limit", "200"])
    assert status == 1
    with tarfile.open(out / "gpu-check-results.tar.gz") as results:
        log = results.extractfile("gpu_check.log").read().decode()
        figures = json.loads(results.extractfile("figures.json").read())
    assert "FAILED: figure notebook: RuntimeError: Expected all tensors to be on the same device" in log
    assert "Traceback (most recent call last)" in log and "Traceback" in figures["figures"]["notebook"]["traceback"]
    assert figures["failed"].startswith("notebook: RuntimeError")


def test_layer_figures_print_each_convolution_and_the_layout_auto_would_pick(tmp_path, monkeypatch, capsys):
    gpu_check = _script()
    log = gpu_check.Log(tmp_path / "log")
    log.device_name = "Test GPU"
    found = {}
    monkeypatch.setattr(gpu_check, "conv_layer_times", lambda device, dtype, k, batch, repeats: _layer_rows())
    gpu_check.layer_figures(torch.device("cpu"), torch.float32, gpu_check.Clock(60), log, found, k=16)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 7 and all(line.startswith("[Test GPU] ") for line in printed)
    assert "conv layer 1 K=16 channels_last" in printed[0] and "grouped  2.00x" in printed[0]
    assert found["memory format"] == "channels_last" and printed[-1].startswith("[Test GPU] memory format auto would pick")
    # A non-allocation error fails loudly; an allocation failure is said and skipped.
    monkeypatch.setattr(gpu_check, "conv_layer_times", _raise(RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED")))
    with pytest.raises(gpu_check.FigureFailure, match="conv layers"):
        gpu_check.layer_figures(torch.device("cpu"), torch.float32, gpu_check.Clock(60), log, found)
    monkeypatch.setattr(gpu_check, "conv_layer_times", _raise(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED")))
    gpu_check.layer_figures(torch.device("cpu"), torch.float32, gpu_check.Clock(60), log, found)
    assert "out of GPU memory" in capsys.readouterr().out


def _layer_rows():
    return [
        {"layer": layer, "memory_format": name, "grouped_s": 0.001, "separate_s": 0.002, "speedup": 2.0}
        for layer in (1, 2, 3)
        for name in ("channels_last", "contiguous")
    ]


def _raise(error):
    def run(*args, **kwargs):
        raise error

    return run


def test_a_failing_compiled_figure_costs_the_other_none_and_still_fails_the_check(tmp_path, monkeypatch, capsys):
    gpu_check = _script()
    log = gpu_check.Log(tmp_path / "log")
    args = gpu_check.build_parser().parse_args(["--data", "x", "--compile", "default"])
    calls = []

    def measure(device, make, estimate, clock, warm=True, warm_estimate=None):
        calls.append(warm_estimate)
        if len(calls) == 1:  # our loop compiled: the H200's CUDA graph error
            raise RuntimeError("Error: accessing tensor output of CUDAGraphs that has been overwritten by a subsequent run.")
        return {"seconds": 2.0, "trial_epochs_per_s": 8.0, "test_acc": 10.0, "peak_bytes": 0, "cold": True}

    monkeypatch.setattr(gpu_check, "measure", measure)
    found = {"ours": {"seconds": 2.0}, "one at a time": {"trial_epochs_per_s": 1.0}, "fused K=16": {"seconds": 4.0}}
    with pytest.raises(gpu_check.FigureFailure, match="ours default: RuntimeError: Error: accessing tensor output of CUDAGraphs"):
        gpu_check.compiled_figures(args, torch.device("cpu"), None, gpu_check.Clock(60), log, found)
    assert calls == [3.0, 6.0]  # fused K=16 compiled was tried all the same; each warm epoch judged by the eager one's time
    assert "traceback" in found["ours default"] and found["fused K=16 default"]["cold"]
    # Our loop out of memory: nothing compiled is tried, and nothing breaks.
    calls.clear()
    gpu_check.compiled_figures(args, torch.device("cpu"), None, gpu_check.Clock(60), log, {"ours": {"error": "CUDA out of memory"}})
    assert calls == []


def test_a_cold_compiled_epoch_claims_no_multiple_of_eager(tmp_path, monkeypatch, capsys):
    gpu_check = _script()
    log = gpu_check.Log(tmp_path / "log")
    args = gpu_check.build_parser().parse_args(["--data", "x", "--compile", "default"])
    cold = {"seconds": 40.0, "trial_epochs_per_s": 0.4, "test_acc": 1, "peak_bytes": 0, "cold": True}
    monkeypatch.setattr(gpu_check, "measure", lambda *args, **kwargs: cold)
    gpu_check.compiled_figures(args, torch.device("cpu"), None, gpu_check.Clock(60), log, {"ours": {"seconds": 2.0}})
    line = capsys.readouterr().out.strip()
    assert "cold: compiling included" in line and "x eager" not in line


def test_a_failing_roofline_costs_no_other_figure_and_still_fails_the_check(tmp_path, monkeypatch):
    gpu_check = _script()
    warm = {"seconds": 1.0, "trial_epochs_per_s": 1.0, "test_acc": 1, "peak_bytes": 0, "cold": False}
    monkeypatch.setattr(gpu_check, "measure", lambda *args, **kwargs: dict(warm))
    monkeypatch.setattr(gpu_check, "roofline_figure", _raise(RuntimeError("CUDA error: an illegal instruction was encountered")))
    log = gpu_check.Log(tmp_path / "log")
    found = {}
    args = gpu_check.build_parser().parse_args(["--data", "x"])
    with pytest.raises(gpu_check.FigureFailure, match="roofline"):
        gpu_check.figures(args, torch.device("cpu"), None, gpu_check.Clock(60), log, found)
    assert "fused K=16 contiguous" in found and "traceback" in found["roofline"]
