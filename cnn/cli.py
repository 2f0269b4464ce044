"""Command-line helpers shared by the project's entry points."""

import argparse


class ArgumentParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line that points at ``--help``, not a usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")
