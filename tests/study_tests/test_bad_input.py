"""Every bad input: a short message that names the fix, a non-zero exit, and the study untouched."""

import hashlib
import shutil
import subprocess
import sys

import pytest
import torch
import torchvision
from helpers import REPO

from study.run import main

pytestmark = pytest.mark.slow  # the study they must leave untouched is trained on real images


@pytest.fixture(scope="module")
def existing(tmp_path_factory, cifar_dir):
    """A study database with one finished trial, and the flags that made it."""
    folder = tmp_path_factory.mktemp("existing")
    storage = f"sqlite:///{folder / 'study.db'}"
    args = ["--data-dir", str(cifar_dir), "--train-size", "500", "--test-size", "200", "--epochs", "1", "--no-report", "--storage", storage]
    assert main([*args, "--trials", "1"]) == 0
    return storage, args


def _digest(storage: str) -> str:
    return hashlib.sha256(open(storage.removeprefix("sqlite:///"), "rb").read()).hexdigest()


def _run(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--trials", "0"], "--trials must be at least 1 but got 0"),
        (["--epochs", "-1"], "--epochs must be at least 1 but got -1"),
        (["--batch-size", "0"], "--batch-size must be at least 1 but got 0"),
        (["--workers", "0"], "--workers must be at least 1 but got 0"),
        (["--train-size", "0"], "--train-size must be at least 1 but got 0"),
        (["--val-split", "1.5"], "--val-split must be in [0, 1) but got 1.5"),
        (["--timeout", "-5"], "--timeout must be a positive number of seconds"),
        (["--lr-min", "0.1", "--lr-max", "0.01"], "must satisfy 0 < lr-min < lr-max but got lr-min 0.1, lr-max 0.01"),
        (["--lr-min", "-1"], "0 < lr-min < lr-max"),
        (["--activations", "relu,swish"], "unknown activation 'swish'; choose one of: relu, leaky_relu, tanh, elu, gelu, silu, sigmoid"),
        (["--losses", "hinge"], "unknown loss 'hinge'; choose one of: cross_entropy, label_smoothing, mse"),
        (["--sampler", "cmaes"], "unknown sampler 'cmaes'; choose one of: grid, tpe, random, qmc"),
        (["--pruner", "patient"], "unknown pruner 'patient'; choose one of: median, hyperband, successive-halving, none"),
        (["--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'; choose one of: adam, sgd"),
        (["--precision", "fp8"], "unknown precision 'fp8'; choose one of: auto, bf16, fp32"),
        (["--compile", "fast"], "unknown compile mode 'fast'; choose one of: off, auto, default, reduce-overhead, max-autotune"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--compile", "cuda-graph", "--device", "cpu"], "--compile cuda-graph captures CUDA graphs, but the device is cpu: use a CUDA"),
        (["--trials", "x"], "argument --trials: invalid int value: 'x'"),
        (["--sampler", "grid", "--trials", "200"], "--trials 200 is more than the grid's 135 trials; use --trials 135"),
        (["--epochs", "2", "--trials", "2"], "created with other settings: epochs 1 (now 2)"),
        (["--grid-lrs", "4", "--trials", "2"], "created with other settings: search_space {"),
        (["--repeats", "2", "--trials", "2"], "created with other settings: repeats 5 (now 2)"),
        (["--repeats", "5", "--trials", "2"], "runs the sequential design: rerun without --repeats (--max-repeats 5) to resume it"),
        (["--repeats", "0"], "--repeats must be at least 1 but got 0"),
        (["--repeats", "2", "--sampler", "tpe"], "--repeats 2 needs --sampler grid"),
    ],
)
def test_bad_flag_is_refused_and_the_study_is_untouched(existing, flags, message, capsys):
    storage, args = existing
    before = _digest(storage)
    code, err = _run([*args, *flags], capsys)
    assert code != 0
    assert message in err
    assert len(err.strip().splitlines()) <= 2 and "Traceback" not in err
    assert _digest(storage) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_unavailable_device_is_refused(existing, capsys):
    storage, args = existing
    before = _digest(storage)
    code, err = _run([*args, "--device", "cuda"], capsys)
    assert code == 2 and "device 'cuda' is not available" in err and "use cpu or auto; choose another --device" in err
    assert _digest(storage) == before


def _folder_with(tmp_path, cifar_dir, kind):
    folder = tmp_path / kind
    if kind == "missing":
        return folder
    folder.mkdir()
    if kind == "train-only":
        (folder / "train" / "cat").mkdir(parents=True)
    if kind == "not-an-image":
        shutil.copytree(cifar_dir, folder, dirs_exist_ok=True)
        (folder / "test" / "dog" / "README.md").write_text("hello")
    return folder


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "does not exist; pass --data-dir a folder of CIFAR-10 images (train/<class>/ and test/<class>/ folders"),
        ("empty", "holds neither train/ and test/ class folders nor cifar-10-batches-py"),
        ("train-only", "has no test/; an image folder needs train/<class>/ and test/<class>/"),
        ("not-an-image", "README.md is not an image torchvision can decode; remove it from the data folder"),
    ],
)
def test_bad_data_folder_is_refused(existing, tmp_path, cifar_dir, kind, message, capsys):
    storage, args = existing
    before = _digest(storage)
    folder = _folder_with(tmp_path, cifar_dir, kind)
    code, err = _run([*args, "--data-dir", str(folder)], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert _digest(storage) == before


def test_cifar10_that_cannot_be_downloaded_says_to_use_data_dir(tmp_path, monkeypatch, capsys):
    # Nothing listens on port 9 of this machine: the download fails as it does offline.
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    monkeypatch.chdir(tmp_path)
    code, err = _run(["--trials", "1", "--no-report", "--storage", f"sqlite:///{tmp_path / 's.db'}"], capsys)
    assert code == 2
    assert "could not download CIFAR-10 into" in err and "without internet, pass --data-dir a folder of CIFAR-10 images" in err
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("not a url", "malformed storage URL 'not a url'; expected for example sqlite:///runs/study.db"),
        ("sqlite:///{tmp}/no/such/folder/s.db", "/no/such/folder of storage"),
        ("redis://localhost/0", "unsupported storage 'redis'"),
        ("postgresql://someone:hunter2@127.0.0.1:9/db", "cannot open storage postgresql://someone:***@127.0.0.1:9/db"),
    ],
)
def test_bad_storage_is_refused_and_hides_the_password(existing, tmp_path, storage, message, capsys):
    _, args = existing
    storage = storage.replace("{tmp}", str(tmp_path))
    code, err = _run([*args[:-2], "--storage", storage], capsys)
    assert code == 2 and message in err
    assert "hunter2" not in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "no").exists()


def test_command_line_error_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "study.run", "--data-dir", str(tmp_path / "nothing"), "--storage", f"sqlite:///{tmp_path}/s.db"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: data folder")
    assert "Traceback" not in result.stderr and not (tmp_path / "s.db").exists()
