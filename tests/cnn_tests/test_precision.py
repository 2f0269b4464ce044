"""--precision auto: bf16 only where it is faster, and the reason said."""

import importlib
import json

import pytest
import torch

from cnn.train import precision_choice, resolve_precision

train = importlib.import_module("cnn.train")  # the module: cnn.train as an attribute is the function train()

CPU = torch.device("cpu")


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    # Each test resolves auto from scratch, with its own cache folder.
    monkeypatch.setattr(train, "_cpu_choice", None)
    monkeypatch.setenv("CNN_STUDY_CACHE", str(tmp_path))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(train, "cpu_has_amx", lambda: False)
    return tmp_path


@pytest.mark.parametrize(("speedup", "want"), [(0.87, torch.float32), (1.02, torch.float32), (1.6, torch.bfloat16)])
def test_auto_on_an_avx512_bf16_cpu_without_amx_picks_what_measured_faster(fresh, monkeypatch, speedup, want):
    monkeypatch.setattr(train, "measure_cpu_bf16", lambda: speedup)
    assert resolve_precision("auto", CPU) == want
    assert f"ran {speedup:.2f}x the speed of fp32" in precision_choice(CPU)[1]


def test_auto_measures_once_per_machine_and_every_process_reads_the_same_answer(fresh, monkeypatch):
    calls = []
    monkeypatch.setattr(train, "measure_cpu_bf16", lambda: calls.append(1) or 0.87)
    assert resolve_precision("auto", CPU) == torch.float32
    monkeypatch.setattr(train, "_cpu_choice", None)  # another process: only the cache folder is shared
    dtype, why = precision_choice(CPU)
    assert dtype == torch.float32 and "measured earlier" in why and len(calls) == 1
    [cached] = fresh.glob("cpu-bf16-*.json")
    assert json.loads(cached.read_text())["bf16_speedup"] == 0.87


def test_auto_picks_bf16_with_amx_without_measuring(fresh, monkeypatch):
    monkeypatch.setattr(train, "cpu_has_amx", lambda: True)
    monkeypatch.setattr(train, "measure_cpu_bf16", lambda: pytest.fail("measured"))
    assert precision_choice(CPU) == (torch.bfloat16, "the CPU has AMX (amx_bf16): bfloat16 matrix tiles")


def test_auto_is_fp32_on_a_cpu_without_native_bf16(fresh, monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert precision_choice(CPU) == (torch.float32, "the CPU has no native bfloat16")


def test_measure_cpu_bf16_times_a_real_step_both_ways():
    ratio = train.measure_cpu_bf16(steps=1, rounds=1, batch_size=8)
    assert 0.05 < ratio < 20
