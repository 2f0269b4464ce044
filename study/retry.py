"""Waiting out a database server that does not answer for a moment (a restart, a network blip)."""

import functools
import os
import time

import optuna
import sqlalchemy.exc

STORAGE_WAIT_SECONDS = 60  # how long to wait for a database server that does not answer (one that restarts, or starts late)


def storage_wait_seconds() -> float:
    """How long to wait for a database server that does not answer: ``$CNN_STUDY_STORAGE_WAIT`` or 60 s."""
    return float(os.environ.get("CNN_STUDY_STORAGE_WAIT", STORAGE_WAIT_SECONDS))


def refused_for_good(error: sqlalchemy.exc.DBAPIError) -> bool:
    """Errors that waiting cannot mend: a wrong password, user or database name."""
    text = str(error.orig).lower()
    return any(words in text for words in ("password authentication failed", "does not exist", "no pg_hba.conf entry", "role "))



def connection_error(error: BaseException) -> sqlalchemy.exc.DBAPIError | None:
    """The error of a lost or refused connection behind ``error`` (Optuna wraps a failed commit in its own), or None."""
    while error is not None:
        if isinstance(error, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            return error
        error = error.__cause__
    return None


def patient(method):
    """Wrap ``method`` so that a call that cannot reach the server is tried again, each second, for ``storage_wait_seconds()``.

    Errors that waiting cannot mend (a wrong password, user or database) go up at once.
    """
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        started = time.monotonic()
        while True:
            try:
                return method(self, *args, **kwargs)
            except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, optuna.exceptions.StorageInternalError) as error:
                lost = connection_error(error)
                if lost is None or refused_for_good(lost) or time.monotonic() - started > storage_wait_seconds():
                    raise
                time.sleep(1.0)

    return call
