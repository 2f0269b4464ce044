"""Command-line helpers shared by the project's entry points."""

import argparse


class ArgumentParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line that points at ``--help``, not a usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def flag_hint(error: Exception) -> str:
    """What the command line adds to a library error: the flag that fixes it."""
    from cnn.data import DataError
    from cnn.train import DeviceError

    if isinstance(error, DataError):
        return "; fix --data-dir (or leave it out to download CIFAR-10 into ./data)"
    if isinstance(error, DeviceError):
        return "; choose another --device (auto, cpu, cuda, cuda:N or mps)"
    return ""
