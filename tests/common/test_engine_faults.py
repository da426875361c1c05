"""Fault injection on real processes: SIGKILL at a random batch then resume, SIGTERM then resume, two runs into one
directory. Each resumed run must equal an uninterrupted one bit for bit."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common import checkpoint
from common.runlog import read_metrics

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "common" / "tiny_engine_task.py"
FLAGS = ["--device", "cpu", "--workers", "0", "-b", "8", "--epochs", "3", "--lr", "0.05", "--run-name", "r"]
KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr")


def start(out_dir: Path, *extra: str, sleep: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "TINY_SLEEP": str(sleep), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(SCRIPT), "train", *FLAGS, "--out-dir", str(out_dir), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def run(out_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = start(out_dir, *extra)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def rows(run_dir: Path) -> list[list[float]]:
    return [[r[k] for k in KEYS] for r in read_metrics(run_dir / "metrics.csv")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted 3-epoch run."""
    out = tmp_path_factory.mktemp("reference")
    done = run(out)
    assert done.returncode == 0, done.stderr
    return out / "r"


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def test_sigkill_at_a_random_batch_then_resume_is_bit_exact(tmp_path, reference):
    proc = start(tmp_path, sleep=0.02)
    wait_for(tmp_path / "r" / "checkpoint_latest.pt", proc)
    time.sleep(random.uniform(0.0, 0.15))  # somewhere inside epoch 2 (8 batches of >= 20 ms)
    proc.kill()
    proc.communicate()
    resumed = run(tmp_path, "--resume", str(tmp_path / "r"))
    assert resumed.returncode == 0, resumed.stderr
    assert rows(tmp_path / "r") == rows(reference)
    log = [json.loads(line) for line in (tmp_path / "r" / "resume_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and "--resume" in log[0]["argv"]


def test_sigterm_exits_143_with_the_resume_command_then_resume_is_bit_exact(tmp_path, reference):
    proc = start(tmp_path, sleep=0.02)
    wait_for(tmp_path / "r" / "checkpoint_latest.pt", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"--resume {tmp_path / 'r'}" in lines[0] and "RUN_DIR" not in lines[0]
    checkpoint.verify(tmp_path / "r" / "checkpoint_latest.pt")
    resumed = run(tmp_path, "--resume", str(tmp_path / "r"))
    assert resumed.returncode == 0, resumed.stderr
    assert rows(tmp_path / "r") == rows(reference)


def test_a_second_run_into_a_locked_directory_is_refused(tmp_path):
    first = start(tmp_path, sleep=0.4)  # ~10 s: outlives the two refused starts (~3 s each)
    wait_for(tmp_path / "r" / "args.json", first)
    second = run(tmp_path)
    assert second.returncode == 2
    assert f"in use by pid {first.pid}" in second.stderr and len(second.stderr.strip().splitlines()) == 1
    resume = run(tmp_path, "--resume", str(tmp_path / "r"))  # a resume while it runs is refused too
    assert resume.returncode == 2 and "in use by pid" in resume.stderr
    first.communicate(timeout=120)
    assert first.returncode == 0
    assert len(read_metrics(tmp_path / "r" / "metrics.csv")) == 3  # the first run was not disturbed


def test_run_prints_its_directory_and_a_closing_summary(tmp_path):
    done = run(tmp_path, "--epochs", "2")
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0] == f"run directory: {tmp_path / 'r'}"
    assert [line.split()[1] for line in out if line.startswith("epoch ")] == ["1/2", "2/2"]
    assert out[-1].startswith("done: best test_acc") and str(tmp_path / "r") in out[-1]
    again = subprocess.run([sys.executable, str(SCRIPT), "train", "--resume", str(tmp_path / "r")],
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
    # a finished run: said so, nothing loaded or written
    assert again.returncode == 0 and again.stdout.strip() == f"run {tmp_path / 'r'} has already finished " \
        "(summary.json); nothing to do"
