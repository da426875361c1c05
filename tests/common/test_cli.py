"""Command line: recorded-configuration resume, value and location checks before any work, the short argparse
error, and main_guard's one-line messages and exit codes (SIGTERM included)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from common import checkpoint, cli
from common.data import add_augment_args
from common.errors import (
    EXIT_CODES,
    CheckpointError,
    DataError,
    RunInterrupted,
    StorageError,
    Terminated,
    TrainingStopped,
    UsageError,
)


def parser(task: str = "tiny"):
    p = cli.base_parser("test", task=task, epochs=3)
    p.add_argument("--channels", type=int, default=8)
    add_augment_args(p)
    return p


def make_run(tmp_path: Path, *flags: str, task: str = "tiny") -> Path:
    """A run directory whose args.json is written as the engine writes it (vars(args) + task + argv)."""
    args = cli.parse(parser(task), ["--out-dir", str(tmp_path), *flags])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "args.json").write_text(json.dumps({**vars(args), "task": task, "argv": ["train.py", *flags],
                                                   "world_size": 1}, default=str))
    checkpoint.save_atomic({"epoch": 0}, run_dir / checkpoint.LATEST)
    return run_dir


RECORDED = ("-T", "6", "--sg", "sigmoid", "--lr", "0.5", "--epochs", "6", "--neuron", "sliding_psn",
            "--neuron-opt", "k=4", "--channels", "16", "--data-dir", "/data/here", "--workers", "3")


def test_resume_alone_rebuilds_the_recorded_configuration(tmp_path):
    run_dir = make_run(tmp_path, *RECORDED)
    args = cli.parse(parser(), ["--resume", str(run_dir)])
    assert (args.T, args.sg, args.lr, args.epochs, args.channels) == (6, "sigmoid", 0.5, 6, 16)
    assert args.neuron_extra == {"k": 4}
    assert (args.data_dir, args.workers) == ("/data/here", 3)  # inherited runtime flags
    assert args.resume == str(run_dir)


def test_resume_from_a_checkpoint_file_uses_its_folder(tmp_path):
    run_dir = make_run(tmp_path, *RECORDED)
    args = cli.parse(parser(), ["--resume", str(run_dir / checkpoint.LATEST)])
    assert args.lr == 0.5


def test_runtime_flags_may_differ(tmp_path):
    run_dir = make_run(tmp_path, *RECORDED, "--stop-after", "2")
    args = cli.parse(parser(), ["--resume", str(run_dir), "--device", "cpu", "-j", "0", "--data-dir", "/else",
                                "--print-freq", "5"])
    assert (args.device, args.workers, args.data_dir, args.print_freq) == ("cpu", 0, "/else", 5)
    assert args.stop_after is None  # not inherited: resume trains to the end unless asked again


def test_equal_explicit_flags_are_accepted(tmp_path):
    run_dir = make_run(tmp_path, *RECORDED)
    args = cli.parse(parser(), ["--resume", str(run_dir), "--T=6", "--lr", "5e-1", "--sg", "sigmoid",
                                "--neuron-opt", "k=4"])
    assert args.lr == 0.5


def test_conflicting_flags_are_refused_listing_the_recorded_values(tmp_path):
    run_dir = make_run(tmp_path, *RECORDED)
    before = (run_dir / "args.json").read_text()
    with pytest.raises(UsageError) as info:
        cli.parse(parser(), ["--resume", str(run_dir), "-T", "4", "--sg", "atan", "--lr", "0.5", "--epo", "7"])
    message = str(info.value)
    assert "\n" not in message
    assert "--T 4 (recorded 6)" in message and "--sg atan (recorded sigmoid)" in message
    assert "--epochs 7 (recorded 6)" in message  # an abbreviated flag is still recognised as given
    assert "--lr" not in message.split(":", 2)[2].split(".")[0]  # equal values are not conflicts
    assert (run_dir / "args.json").read_text() == before


def test_neuron_opt_and_flag_given_via_alias_conflict(tmp_path):
    run_dir = make_run(tmp_path, *RECORDED)
    with pytest.raises(UsageError, match=r"--neuron-opt k=2 \(recorded k=4\)"):
        cli.parse(parser(), ["--resume", str(run_dir), "--neuron-opt", "k=2"])


def test_resume_of_another_task_names_the_recorded_task(tmp_path):
    run_dir = make_run(tmp_path, task="shd")
    with pytest.raises(UsageError, match="that is a run of task 'shd', not 'tiny'"):
        cli.parse(parser("tiny"), ["--resume", str(run_dir)])


def test_resume_of_a_folder_without_args_json(tmp_path):
    with pytest.raises(UsageError, match="has no args.json"):
        cli.parse(parser(), ["--resume", str(tmp_path)])
    with pytest.raises(UsageError, match="no run directory or checkpoint at"):
        cli.parse(parser(), ["--resume", str(tmp_path / "missing")])


def test_check_config_is_strict_about_defaults(tmp_path, capsys):
    run_dir = make_run(tmp_path, "--lr", "0.5", "--limit-batches", "3")
    with pytest.raises(UsageError) as info:  # the request (defaults included) has lr 0.1 and no batch limit
        cli.parse(parser(), ["--resume", str(run_dir), "--check-config"])
    assert "--lr 0.1 (recorded 0.5)" in str(info.value) and "--limit-batches none (recorded 3)" in str(info.value)
    with pytest.raises(SystemExit) as done:
        cli.parse(parser(), ["--resume", str(run_dir), "--check-config", "--lr", "0.5", "--limit-batches", "3",
                             "--device", "cpu"])
    assert done.value.code == 0 and "requests its recorded configuration" in capsys.readouterr().out
    with pytest.raises(UsageError, match="give --resume"):
        cli.parse(parser(), ["--check-config"])


def test_init_from_resolves_a_run_directory_and_refuses_resume(tmp_path):
    run_dir = make_run(tmp_path)
    args = cli.parse(parser(), ["--init-from", str(run_dir), "--out-dir", str(tmp_path), "--lr", "0.01"])
    assert args.init_from == str(run_dir / checkpoint.LATEST) and args.resume is None
    with pytest.raises(UsageError, match="cannot be combined with --resume"):
        cli.parse(parser(), ["--resume", str(run_dir), "--init-from", str(run_dir)])
    with pytest.raises(UsageError, match="--init-from: no checkpoint"):
        cli.parse(parser(), ["--init-from", str(tmp_path / "none.pt")])


@pytest.mark.parametrize("flags, message", [
    (["--lr", "nan"], "--lr must be a finite number >= 0, got nan"),
    (["--lr", "inf"], "--lr must be a finite number >= 0, got inf"),
    (["--lr", "-0.1"], "--lr must be a finite number >= 0, got -0.1"),
    (["--wd=-1e-4"], "--wd must be a finite number >= 0"),
    (["--momentum", "nan"], "--momentum must be a finite number >= 0"),
    (["--label-smoothing", "1"], "--label-smoothing must be in [0, 1), got 1.0"),
    (["--label-smoothing", "-0.1"], "--label-smoothing must be in [0, 1)"),
    (["--channels", "0"], "--channels must be > 0, got 0"),
    (["--channels", "-8"], "--channels must be > 0"),
    (["--mixup-alpha", "-1"], "--mixup-alpha must be a finite number >= 0"),
    (["--cutmix-alpha", "-0.5"], "--cutmix-alpha must be a finite number >= 0"),
    (["--clip-grad-norm", "0"], "--clip-grad-norm must be a finite number > 0"),
    (["--run-name", "a/b"], "must be a plain folder name"),
    (["--run-name", ".."], "must be a plain folder name"),
])
def test_bad_values_are_one_line(tmp_path, flags, message):
    with pytest.raises(UsageError) as info:
        cli.parse(parser(), ["--out-dir", str(tmp_path), *flags])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_out_dir_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("user data")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        cli.parse(parser(), ["--out-dir", str(tmp_path / "f")])
    with pytest.raises(UsageError, match="is a file, not a folder"):
        cli.parse(parser(), ["--out-dir", str(tmp_path / "f" / "sub")])
    assert (tmp_path / "f").read_text() == "user data"


def test_out_dir_not_writable(tmp_path):
    if os.geteuid() == 0:  # root may write anywhere but into read-only kernel folders
        target = Path("/proc/self/snn_runs")
    else:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        target = tmp_path / "ro" / "runs"
    with pytest.raises(UsageError, match="is not writable"):
        cli.parse(parser(), ["--out-dir", str(target)])


def test_argparse_errors_print_a_short_usage(capsys):
    with pytest.raises(SystemExit) as info:
        parser().parse_args(["--lr", "fast"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 2
    assert err[0].startswith("usage: ") and "--help" in err[0]
    assert err[1].endswith("error: argument --lr: invalid float value: 'fast'")


def guarded(exc: BaseException, capsys) -> tuple[int, list[str]]:
    def main():
        raise exc

    with pytest.raises(SystemExit) as info:
        cli.main_guard(main)
    return info.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("exc, code", [
    (UsageError("bad flag"), 2), (DataError("bad file"), 3), (CheckpointError("bad ckpt"), 3),
    (TrainingStopped("nan"), 4), (StorageError("no space left on device while writing x"), 5),
    (KeyboardInterrupt(), 130), (Terminated(), 143), (ValueError("legacy input error"), 2),
])
def test_main_guard_exit_codes(exc, code, capsys):
    got, lines = guarded(exc, capsys)
    assert got == code and len(lines) == 1 and code in EXIT_CODES


def test_main_guard_lets_bugs_raise():
    def main():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        cli.main_guard(main)


def test_run_interrupted_names_the_real_run_dir_and_the_resume_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["cf10/train.py", "--lr", "0.1"])
    checkpoint.save_atomic({"epoch": 0}, tmp_path / checkpoint.LATEST)
    code, lines = guarded(RunInterrupted(tmp_path, 143), capsys)
    assert code == 143 and lines == [
        f"train.py: terminated (SIGTERM); run directory {tmp_path}; continue with: python cf10/train.py --resume "
        f"{tmp_path}"]
    empty = tmp_path / "new"
    empty.mkdir()
    code, lines = guarded(RunInterrupted(empty), capsys)
    assert code == 130 and "nothing to resume" in lines[0]


SIGTERM_SCRIPT = textwrap.dedent("""
    import sys, time
    from common import cli
    from common.errors import RunInterrupted, Terminated

    def main():
        try:
            print("ready", flush=True)
            time.sleep(30)
        except Terminated:
            raise RunInterrupted(sys.argv[1], 143) from None

    cli.main_guard(main)
""")


def test_sigterm_becomes_a_one_line_exit_143(tmp_path):
    checkpoint.save_atomic({"epoch": 0}, tmp_path / checkpoint.LATEST)
    script = tmp_path / "job.py"
    script.write_text(SIGTERM_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert err.strip().splitlines() == [
        f"job.py: terminated (SIGTERM); run directory {tmp_path}; continue with: python {script} --resume {tmp_path}"]


def test_evaluation_of_a_run_may_change_the_data_flow_only(tmp_path):
    run_dir = make_run(tmp_path, "--limit-batches", "1")
    args = cli.parse(parser(), ["--resume", str(run_dir), "--test-only", "--limit-batches", "2", "-b", "4"])
    assert (args.limit_batches, args.batch_size) == (2, 4)
    with pytest.raises(UsageError, match=r"--limit-batches 2 \(recorded 1\)"):  # training on: refused
        cli.parse(parser(), ["--resume", str(run_dir), "--limit-batches", "2"])


def test_resume_of_a_run_started_from_init_from(tmp_path):
    """args.json records init_from as provenance (file and hash); a resume does not load those weights again."""
    run_dir = make_run(tmp_path, "--lr", "0.01")
    recorded = json.loads((run_dir / "args.json").read_text())
    provenance = {"checkpoint": "/elsewhere/checkpoint_latest.pt", "sha256": "0" * 64}
    (run_dir / "args.json").write_text(json.dumps({**recorded, "init_from": provenance}))
    args = cli.parse(parser(), ["--resume", str(run_dir)])
    assert args.init_from is None and args.lr == 0.01
    with pytest.raises(SystemExit) as done:
        cli.parse(parser(), ["--resume", str(run_dir), "--check-config", "--lr", "0.01"])
    assert done.value.code == 0
