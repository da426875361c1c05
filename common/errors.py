"""Errors that the entry points report as one line on stderr, and their exit codes (see ``common.cli.main_guard``).

Exit codes (:data:`EXIT_CODES`; documented in ``docs/run-directories.md``)::

    0    done
    1    a genuine bug (the only case that prints a traceback)
    2    usage or configuration error (bad flag, conflicting --resume, run directory in use, missing file)
    3    data error: a dataset or checkpoint file is damaged or malformed
    4    training stopped: the loss became NaN/inf (the last good checkpoint is kept)
    5    storage error: no space left on device while writing (the previous checkpoint is intact)
    130  interrupted by SIGINT (Ctrl-C); the message gives the resume command
    143  terminated by SIGTERM (e.g. a cluster scheduler); the message gives the resume command
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

EXIT_CODES = {
    0: "done",
    1: "a genuine bug (traceback)",
    2: "usage or configuration error",
    3: "data error (a dataset or checkpoint file is damaged or malformed)",
    4: "training stopped: the loss became NaN/inf",
    5: "no space left on device while writing",
    130: "interrupted (SIGINT)",
    143: "terminated (SIGTERM)",
}


class UsageError(Exception):
    """Bad input from the user: an unknown name, a missing file, a run directory that would be overwritten."""

    exit_code = 2


class DataError(UsageError):
    """A dataset file is damaged or malformed (the message names the file)."""

    exit_code = 3


class CheckpointError(DataError):
    """A checkpoint file is empty, truncated, altered or not a checkpoint (the message names it and offers the
    intact checkpoints of the same folder)."""


class StorageError(Exception):
    """Writing failed for lack of space (ENOSPC); whatever was there before the write is intact."""

    exit_code = 5


class TrainingStopped(Exception):
    """Training cannot go on (e.g. the loss became NaN/inf); the last good checkpoint is kept."""

    exit_code = 4


class Terminated(KeyboardInterrupt):
    """Raised in the main process by the SIGTERM handler of ``common.cli.main_guard`` (handled like Ctrl-C)."""


def interrupt_exit_code(exc: BaseException) -> int:
    """143 for :class:`Terminated` (SIGTERM), 130 for any other ``KeyboardInterrupt`` (SIGINT)."""
    return 143 if isinstance(exc, Terminated) else 130


def resume_command(run_dir: str | Path, script: str | None = None) -> str:
    """``python <script> --resume <run_dir>`` (``script`` default: ``sys.argv[0]`` as it was typed)."""
    return shlex.join(["python", script or sys.argv[0], "--resume", str(run_dir)])


class RunInterrupted(Exception):
    """A run stopped by SIGINT/SIGTERM after its last checkpoint was left consistent.

    ``str()`` is the one-line message with the real run directory and the exact resume command (or, when no
    checkpoint was written yet, says that nothing can be resumed)."""

    def __init__(self, run_dir: str | Path, exit_code: int = 130, script: str | None = None):
        self.run_dir, self.exit_code = Path(run_dir), exit_code
        signal_name = "terminated (SIGTERM)" if exit_code == 143 else "interrupted"
        if any(self.run_dir.glob("checkpoint_*.pt")):
            message = (f"{signal_name}; run directory {self.run_dir}; continue with: "
                       f"{resume_command(self.run_dir, script)}")
        else:
            message = f"{signal_name} before the first checkpoint of {self.run_dir}; nothing to resume, start it again"
        super().__init__(message)
