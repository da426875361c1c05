"""Errors that the entry points report as one line on stderr (see ``common.cli.main_guard``)."""
from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user: an unknown name, a missing file, a run directory that would be overwritten."""


class TrainingStopped(Exception):
    """Training cannot go on (e.g. the loss became NaN/inf); the last good checkpoint is kept."""
