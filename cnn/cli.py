"""Command-line helpers shared by the project's entry points."""

import argparse
import difflib
import os
import shlex
import shutil
import sys


class ArgumentParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line that points at ``--help``, not a usage block.

    Flags are never abbreviated (``allow_abbrev=False``): ``--epoch 3`` is refused with the flag
    it resembles, not silently read as ``--epochs 3``. A ``prog`` of ``python -m ...`` names the
    running interpreter (:func:`runnable`), so that the usage line runs as printed.
    """

    def __init__(self, *args, allow_abbrev: bool = False, **kwargs):
        super().__init__(*args, allow_abbrev=allow_abbrev, **kwargs)
        self.prog = runnable(self.prog)  # usage lines and errors name the interpreter that runs the command

    def error(self, message: str):
        self.exit(2, f"error: {message}{self._did_you_mean(message)} (see {self.prog} --help)\n")

    def _did_you_mean(self, message: str) -> str:
        """For an unknown flag, the flags it resembles (``--epoch``: ``--epochs``)."""
        if not message.startswith("unrecognized arguments: "):
            return ""
        known = [flag for action in self._actions for flag in action.option_strings]
        given = [word.split("=", 1)[0] for word in message.removeprefix("unrecognized arguments: ").split() if word.startswith("--")]
        # An abbreviation first (what argparse would have taken), else a near miss (a typo).
        close = [m for word in given for m in ([k for k in known if k.startswith(word)] or difflib.get_close_matches(word, known, 1, 0.75))]
        return f"; did you mean {' or '.join(dict.fromkeys(close))}?" if close else ""


def python() -> str:
    """How to call this interpreter from the current folder, for commands printed to the user.

    ``python`` when that name runs this very interpreter (an active virtual environment),
    else its path: relative when it lies under the current folder (``.venv/bin/python``),
    absolute otherwise. ``sys.executable`` is kept unresolved: a venv's python is a symlink
    to the system's, which lacks the venv's packages.
    """
    executable = os.path.abspath(sys.executable) if sys.executable else "python"
    found = shutil.which("python")
    if found and os.path.abspath(found) == executable:
        return "python"
    relative = os.path.relpath(executable)
    return relative if not relative.startswith("..") else executable


def runnable(command: str) -> str:
    """A printed command that runs as printed: its leading ``python`` replaced by :func:`python`.

    >>> runnable("ls -l")
    'ls -l'
    """
    words = command.split(" ", 1)
    if words[0] != "python":
        return command
    return " ".join([shlex.quote(python()), *words[1:]])


def script(name: str) -> str:
    """How to call the console script ``name`` (``optuna-dashboard``) from the current folder: the one installed beside
    this interpreter (a venv's bin folder), unless plain ``python`` already is this interpreter (the venv is active)."""
    beside = os.path.join(os.path.dirname(python()), name)
    return beside if python() != "python" and os.path.exists(beside) else name


def flag_hint(error: Exception) -> str:
    """What the command line adds to a library error: the flag that fixes it."""
    from cnn.data import DataError
    from cnn.train import DeviceError

    if isinstance(error, DataError):
        return DATA_HINTS.get(error.fix, "")
    if isinstance(error, DeviceError):
        return "; choose another --device (auto, cpu, cuda, cuda:N or mps)"
    return ""


LAYOUT = "train/<class>/ and test/<class>/ folders of images, or torchvision's cifar-10-batches-py"
# DataError.fix -> what the command line says to do; errors whose message already says it ("remove it ...") add nothing.
DATA_HINTS = {
    "folder": f"; pass --data-dir a folder of CIFAR-10 images ({LAYOUT}), or leave it out to download CIFAR-10 into ./data",
    "download": f"; without internet, pass --data-dir a folder of CIFAR-10 images ({LAYOUT})",
}
