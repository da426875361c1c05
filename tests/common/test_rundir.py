"""Run-directory lock (held by another process, released by the kernel on SIGKILL), write-once args.json and the
resume log."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from common import rundir
from common.errors import UsageError

HOLDER = r"""
import sys, time
from common import rundir
with rundir.lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def holder(tmp_path):
    """A subprocess that holds the lock of tmp_path/run until killed."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc, run_dir
    finally:
        proc.kill()
        proc.wait()


def test_second_holder_is_refused_naming_the_pid(holder):
    proc, run_dir = holder
    with pytest.raises(UsageError) as info:
        with rundir.lock(run_dir):
            pass
    assert str(info.value) == f"run directory {run_dir} is in use by pid {proc.pid}"


def test_sigkill_leaves_no_stale_lock(holder):
    proc, run_dir = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with rundir.lock(run_dir) as locked:  # the kernel dropped the dead holder's lock
        assert locked == run_dir
        assert (run_dir / ".lock").read_text().strip() == str(os.getpid())


def test_lock_is_released_after_the_block(tmp_path):
    with rundir.lock(tmp_path / "a" / "b"):
        pass
    proc = subprocess.run([sys.executable, "-c", "import sys; from common import rundir\n"
                           "with rundir.lock(sys.argv[1]): print('ok')", str(tmp_path / "a" / "b")],
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_write_args_once_never_overwrites(tmp_path):
    rundir.write_args_once(tmp_path, {"lr": 0.1, "task": "tiny"})
    with pytest.raises(UsageError, match="never rewritten"):
        rundir.write_args_once(tmp_path, {"lr": 0.5})
    assert json.loads((tmp_path / "args.json").read_text()) == {"lr": 0.1, "task": "tiny"}
    assert sorted(os.listdir(tmp_path)) == ["args.json"]  # no temporary file left
    assert rundir.read_args(tmp_path) == {"lr": 0.1, "task": "tiny"}


def test_read_args_of_a_folder_without_args_json(tmp_path):
    with pytest.raises(UsageError, match="has no args.json"):
        rundir.read_args(tmp_path)
    (tmp_path / "args.json").write_text("{not json")
    with pytest.raises(UsageError, match="unreadable"):
        rundir.read_args(tmp_path)


def test_resume_log_appends_one_json_line_per_resume(tmp_path):
    start = time.strftime("%Y-%m-%d")
    rundir.append_resume_log(tmp_path, ["cf10/train.py", "--resume", "runs/x"])
    rundir.append_resume_log(tmp_path, ["cf10/train.py", "--resume", "runs/x", "--device", "cpu"])
    lines = (tmp_path / "resume_log.jsonl").read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["command"] == "cf10/train.py --resume runs/x" and first["host"] == socket.gethostname()
    assert first["pid"] == os.getpid() and first["time"].startswith(start)
    assert rundir.read_resume_log(tmp_path)[1]["argv"][-1] == "cpu"
