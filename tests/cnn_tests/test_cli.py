"""Every command's flags: never abbreviated, an unknown one answered in one line; printed commands run as printed."""

import importlib.util
import os
import sys

import pytest
from helpers import REPO

from cnn.cli import python, runnable


def _gpu_check_parser():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


def _parser(name: str):
    if name == "scripts/gpu_check.py":
        return _gpu_check_parser()
    return importlib.import_module(name).build_parser()



PARSERS = {  # command -> a flag it has, an abbreviation of it that argparse would otherwise take, the flags it requires
    "study.config": ("--epochs", "--epoch", []),
    "study.dashboard": ("--storage", "--stor", []),
    "reports.build": ("--study-name", "--study", []),
    "cnn.bench": ("--rounds", "--round", []),
    "scripts/gpu_check.py": ("--time-limit", "--time", ["--data", "data.tar.gz"]),
}


@pytest.mark.parametrize("name", PARSERS)
def test_parser_refuses_an_abbreviated_flag(name, capsys):
    flag, abbreviation, required = PARSERS[name]
    parser = _parser(name)
    assert not parser.allow_abbrev
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args([*required, abbreviation, "3"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    # One line that names the flag meant and points at --help.
    assert len(err.strip().splitlines()) == 1 and f"unrecognized arguments: {abbreviation} 3; did you mean {flag}?" in err


def test_study_run_refuses_epoch_for_epochs(capsys):
    from study.config import parse_config

    with pytest.raises(SystemExit) as exit_:
        parse_config(["--epoch", "3"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        f"error: unrecognized arguments: --epoch 3; did you mean --epochs? (see {runnable('python -m study.run')} --help)\n"
    )


def test_printed_python_is_the_running_interpreter_relative_to_the_folder(tmp_path, monkeypatch):
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(sys.executable)
    monkeypatch.setattr(sys, "executable", str(venv / "python"))
    monkeypatch.setenv("PATH", "/nonexistent")  # no venv active: `python` on the PATH is not this interpreter
    monkeypatch.chdir(tmp_path)
    assert python() == os.path.join(".venv", "bin", "python")
    assert runnable("python -m study.dashboard --storage sqlite:///runs/cnn-study.db") == (
        ".venv/bin/python -m study.dashboard --storage sqlite:///runs/cnn-study.db"
    )
    # With the venv active, its bin folder comes first on the PATH: plain `python` runs as printed.
    monkeypatch.setenv("PATH", str(venv))
    assert runnable("python -m study.run") == "python -m study.run"
    # From elsewhere, the absolute path.
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.chdir(REPO)
    assert python() == str(venv / "python")
