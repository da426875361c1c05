"""Run-directory bookkeeping: the exclusive lock, the write-once ``args.json`` and the resume log.

    with rundir.lock(run_dir):                       # held for the run's lifetime; a second holder is refused
        rundir.write_args_once(run_dir, args_dict)   # new runs only; never rewritten
        rundir.append_resume_log(run_dir, sys.argv)  # resumed runs: one JSON line per resume

The lock is ``fcntl.flock`` on ``run_dir/.lock``: the kernel drops it when the process dies (SIGKILL included),
so no stale lock survives a crash; the file keeps the last holder's pid for the message.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from common.errors import UsageError

LOCK_FILE = ".lock"
ARGS_FILE = "args.json"
RESUME_LOG = "resume_log.jsonl"


class RunDirInUse(UsageError):
    """Another live process holds the run directory's lock."""


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "another process"


@contextlib.contextmanager
def lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``run_dir`` (created if needed) until the block ends; yields the run directory.

    Raises :class:`RunDirInUse` (a :class:`UsageError`) "run directory X is in use by pid N" when another process
    holds it. Forked children (DataLoader workers) share the lock while they live; they die with the run."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunDirInUse(f"run directory {run_dir} is in use by {_holder(path)}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield run_dir
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def refuse_if_in_use(run_dir: str | Path) -> None:
    """Raise :class:`RunDirInUse` when a live process holds ``run_dir``'s lock (a probe: takes and drops it)."""
    with lock(run_dir) if Path(run_dir).is_dir() else contextlib.nullcontext():
        pass


def write_args_once(run_dir: str | Path, args: dict) -> Path:
    """Write ``run_dir/args.json`` (indented JSON) unless it exists: an existing one is never replaced.

    The file appears atomically and complete (written aside, then hard-linked into place, which fails if the name
    exists). Raises :class:`UsageError` when ``args.json`` is already there."""
    run_dir = Path(run_dir)
    path = run_dir / ARGS_FILE
    fd, tmp = tempfile.mkstemp(prefix=f".{ARGS_FILE}.", suffix=".tmp", dir=run_dir)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(args, indent=2, default=str) + "\n")
        os.link(tmp, path)
    except FileExistsError:
        raise UsageError(f"run directory {run_dir} already has {ARGS_FILE}; it is never rewritten (continue the run "
                         f"with --resume {run_dir}, or choose another --out-dir / --run-name)") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def read_args(run_dir: str | Path) -> dict:
    """The recorded ``args.json`` of a run directory; a missing or unreadable one is a one-line :class:`UsageError`."""
    path = Path(run_dir) / ARGS_FILE
    try:
        args = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{run_dir} has no {ARGS_FILE}, so its configuration is unknown (not a run directory "
                         "of this code?)") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"{path} is unreadable ({' '.join(str(e).split())})") from None
    if not isinstance(args, dict):
        raise UsageError(f"{path} does not hold a JSON object of flags")
    return args


def append_resume_log(run_dir: str | Path, argv: list[str]) -> dict:
    """Append ``{"time", "host", "pid", "cwd", "argv", "command"}`` as one JSON line to ``run_dir/resume_log.jsonl``;
    returns the record."""
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(), "pid": os.getpid(),
              "cwd": os.getcwd(), "argv": list(argv), "command": shlex.join(argv)}
    with open(Path(run_dir) / RESUME_LOG, "a") as f:
        f.write(json.dumps(record) + "\n")
    return record


def read_resume_log(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / RESUME_LOG
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
