import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture
def small_args(cifar_dir) -> list[str]:
    """Flags for a quick study on 500 training and 200 test images of real CIFAR-10."""
    return ["--data-dir", str(cifar_dir), "--train-size", "500", "--test-size", "200", "--no-report"]


def load(storage: str, name: str = "cnn-study") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


def spawn(*args: str, **kwargs) -> subprocess.Popen:
    """Start ``python -m study.run ARGS`` as its own process, as a user would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "study.run", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so a test can kill it with its workers
        **kwargs,
    )
