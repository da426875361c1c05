"""scripts/sweep_sg.sh and scripts/sweep_methods.sh in a scratch copy of the repository layout whose TASK/train.py
is a stand-in that records its command line and writes a run directory (args.json, summary.json), so the sweeps'
command lines, skip/resume logic, GPU pool and failure handling are checked without training anything."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common import survey

ROOT = Path(__file__).resolve().parents[2]
SURROGATES = ["atan", "rect", "sigmoid"]

FAKE_TRAIN = r'''
import argparse, json, os, sys, time
from pathlib import Path
p = argparse.ArgumentParser()
p.add_argument("--out-dir"); p.add_argument("--run-name"); p.add_argument("--resume")
p.add_argument("--check-config", action="store_true")
a, rest = p.parse_known_args()
run = Path(a.resume) if a.resume else Path(a.out_dir) / a.run_name
if a.check_config:  # stand-in for cli.parse: the flags other than the run-dir ones must equal the recorded ones
    if not (run / "args.json").exists():
        sys.exit(f"train.py: error: {run} has no args.json")
    recorded, skip = [], False
    for word in json.loads((run / "args.json").read_text())["argv"]:
        if not skip and word not in ("--out-dir", "--run-name", "--resume"):
            recorded.append(word)
        skip = not skip and word in ("--out-dir", "--run-name", "--resume")
    if recorded != rest:
        sys.exit(f"train.py: error: flags differ: {' '.join(rest)} (recorded {' '.join(recorded)})")
    sys.exit(0)
run.mkdir(parents=True, exist_ok=True)
start = time.time()
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
(run / "args.json").write_text(json.dumps({"argv": sys.argv[1:], "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                           "start": start, "end": time.time()}))
if "--fail" in rest:
    sys.exit(3)
(run / "summary.json").write_text('{"finished": true}')
'''


@pytest.fixture
def repo(tmp_path):
    """A scratch repository: the sweep scripts, a 3-entry surrogate registry and fake trainers of every task."""
    (tmp_path / "scripts").mkdir()
    for name in ("sweep_lib.sh", "sweep_sg.sh", "sweep_methods.sh", "reproduce.py"):
        shutil.copy(ROOT / "scripts" / name, tmp_path / "scripts" / name)
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "__init__.py").write_text("")
    (tmp_path / "common" / "surrogate.py").write_text(f"def names():\n    return {SURROGATES!r}\n")
    for script in ("cf10/train.py", "scf10/train.py", "shd/train.py", "SFOD/train.py", "SFOD/pretrain.py",
                   "coco/train.py"):
        (tmp_path / script).parent.mkdir(exist_ok=True)
        (tmp_path / script).write_text(FAKE_TRAIN)
    return tmp_path


def sweep(repo: Path, script: str, *args: str, gpus: str | None = None, sleep: float = 0.0, python=sys.executable):
    env = {**os.environ, "PYTHON": python, "FAKE_SLEEP": str(sleep)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    return subprocess.run(["bash", f"scripts/{script}", *args], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=60)


def commands(stdout: str) -> dict[str, str]:
    """run name -> printed command line (after the 'start/resume/sop NAME:' prefix)."""
    found = {}
    for line in stdout.splitlines():
        m = re.match(r"(start|resume|sop)\s+(\S+)( \[gpu \S+\])?: (.*)$", line)
        if m:
            found[m.group(2)] = m.group(4)
    return found


def test_sg_dry_run_lists_every_registered_surrogate(repo):
    res = sweep(repo, "sweep_sg.sh", "cf10", "--dry-run", "--", "--epochs", "2", "--limit-batches", "3",
                python="python3")
    assert res.returncode == 0, res.stderr
    cmds = commands(res.stdout)
    assert list(cmds) == SURROGATES
    assert cmds["rect"] == ("python3 cf10/train.py --sg rect --sg-alpha default --epochs 2 --limit-batches 3 "
                            "--out-dir runs/cf10/sg --run-name rect")
    assert not (repo / "runs").exists()  # a dry run starts nothing


def test_sg_list_alpha_seeds_and_parallel_gpus_dry_run(repo):
    res = sweep(repo, "sweep_sg.sh", "shd", "--sg", "sigmoid,atan", "--alpha", "1,4", "--seeds", "0",
                "--out-dir", "out", "--dry-run", gpus="2,5")
    assert res.returncode == 0, res.stderr
    cmds = commands(res.stdout)
    assert list(cmds) == ["sigmoid_a1_s0", "sigmoid_a4_s0", "atan_a1_s0", "atan_a4_s0"]
    assert cmds["atan_a4_s0"].endswith(
        "shd/train.py --sg atan --sg-alpha 4 --seed 0 --out-dir out --run-name atan_a4_s0")
    gpus = re.findall(r"\[gpu (\S+)\]: CUDA_VISIBLE_DEVICES=(\S+) ", res.stdout)
    assert gpus == [("2", "2"), ("5", "5"), ("2", "2"), ("5", "5")]


def recorded_run(out: Path, name: str, *flags: str, finished: bool) -> Path:
    """A run directory as the fake trainer leaves it: args.json with its argv, summary.json or a checkpoint."""
    run = out / name
    run.mkdir(parents=True)
    (run / "args.json").write_text(json.dumps({"argv": [*flags, "--out-dir", str(out), "--run-name", name]}))
    (run / ("summary.json" if finished else "checkpoint_latest.pt")).write_text("{}")
    return run


def test_skip_finished_and_resume_unfinished(repo):
    out = repo / "runs" / "cf10" / "sg"
    recorded_run(out, "atan", "--sg", "atan", "--sg-alpha", "default", finished=True)
    recorded_run(out, "rect", "--sg", "rect", "--sg-alpha", "default", finished=False)
    res = sweep(repo, "sweep_sg.sh", "cf10", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "skip    atan (finished with the same configuration: runs/cf10/sg/atan/summary.json)" in res.stdout
    cmds = commands(res.stdout)
    assert set(cmds) == {"rect", "sigmoid"}
    assert cmds["rect"].endswith("cf10/train.py --sg rect --sg-alpha default --resume runs/cf10/sg/rect")
    assert "resume  rect:" in res.stdout and "start   sigmoid:" in res.stdout
    # a real (non-dry) run: rect resumes in its folder, sigmoid starts, atan stays untouched
    res = sweep(repo, "sweep_sg.sh", "cf10")
    assert res.returncode == 0, res.stderr
    argv = json.loads((out / "rect" / "args.json").read_text())["argv"]
    assert argv == ["--sg", "rect", "--sg-alpha", "default", "--resume", "runs/cf10/sg/rect"]
    assert (out / "sigmoid" / "summary.json").exists() and (out / "logs" / "sigmoid.log").exists()
    assert "--resume" not in (out / "atan" / "args.json").read_text()  # untouched
    assert "sweep: 2 done, 1 skipped, 0 failed" in res.stdout
    res = sweep(repo, "sweep_sg.sh", "cf10")  # everything finished now
    assert "sweep: 0 done, 3 skipped, 0 failed" in res.stdout


def test_finished_or_unfinished_run_with_other_flags_is_refused(repo):
    """Rerunning with --epochs 3 instead of 1 neither skips the finished run nor resumes the unfinished one."""
    out = repo / "runs" / "cf10" / "sg"
    recorded_run(out, "atan", "--sg", "atan", "--sg-alpha", "default", "--epochs", "1", finished=True)
    recorded_run(out, "rect", "--sg", "rect", "--sg-alpha", "default", "--epochs", "1", finished=False)
    before = {p: p.read_text() for p in out.rglob("*") if p.is_file()}
    res = sweep(repo, "sweep_sg.sh", "cf10", "--sg", "atan,rect", "--", "--epochs", "3")
    assert res.returncode == 1
    for name in ("atan", "rect"):
        assert (f"FAILED  {name} (recorded configuration differs from the requested one: train.py: error: flags "
                f"differ: --sg {name} --sg-alpha default --epochs 3 (recorded --sg {name} --sg-alpha default --epochs "
                "1))") in res.stderr
    assert "sweep: 0 done, 0 skipped, 2 failed" in res.stdout
    assert {p: p.read_text() for p in out.rglob("*") if p.is_file() and "logs" not in p.parts} == before


@pytest.mark.parametrize("epochs, verdict", [("1", "skip    atan (finished with the same configuration"),
                                             ("3", "--epochs 3 (recorded 1)")])
def test_real_task_script_checks_the_recorded_configuration(tmp_path, epochs, verdict):
    """The check is cf10/train.py's own: cli.parse of --resume RUN --check-config against an engine-style args.json."""
    from cf10 import train
    from common import cli

    flags = ["--sg", "atan", "--sg-alpha", "default", "--epochs", "1"]
    args = cli.parse(train.build_parser(), [*flags, "--out-dir", str(tmp_path), "--run-name", "atan"])
    run = tmp_path / "atan"
    run.mkdir()
    (run / "args.json").write_text(json.dumps({**vars(args), "task": "cf10", "argv": flags}, default=str))
    (run / "summary.json").write_text("{}")
    env = {**os.environ, "PYTHON": sys.executable}
    res = subprocess.run(["bash", "scripts/sweep_sg.sh", "cf10", "--sg", "atan", "--out-dir", str(tmp_path),
                          "--dry-run", "--", "--epochs", epochs], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert verdict in res.stdout + res.stderr, res.stdout + res.stderr


def test_parallel_gpus_run_one_job_per_gpu_at_a_time(repo):
    res = sweep(repo, "sweep_sg.sh", "cf10", "--seeds", "0,1", gpus="0,1", sleep=0.6)
    assert res.returncode == 0, res.stderr
    runs = [json.loads(p.read_text()) for p in sorted((repo / "runs/cf10/sg").glob("*/args.json"))]
    assert len(runs) == 6 and {r["gpu"] for r in runs} == {"0", "1"}
    for gpu in ("0", "1"):  # jobs on one GPU never overlap
        spans = sorted((r["start"], r["end"]) for r in runs if r["gpu"] == gpu)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    spans = sorted((r["start"], r["end"]) for r in runs)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # but two GPUs do run at the same time


def test_failures_are_reported_and_set_the_exit_status(repo):
    res = sweep(repo, "sweep_sg.sh", "cf10", "--sg", "atan,rect", "--", "--fail", gpus="0,1")
    assert res.returncode == 1
    assert "FAILED  atan (exit 3; log: runs/cf10/sg/logs/atan.log)" in res.stderr
    assert "sweep: 0 done, 0 skipped, 2 failed" in res.stdout


@pytest.mark.parametrize("args, message", [
    (["cf11"], "unknown task 'cf11' (no cf11/train.py); available: SFOD cf10 coco scf10 shd"),
    (["cf10", "--sg", "atan,nope"], "unknown surrogate 'nope'; registered: atan rect sigmoid"),
    (["cf10", "--", "--out-dir", "x"], "do not pass --out-dir after --"),
    (["cf10", "--bogus"], "unknown option '--bogus'"),
])
def test_sg_bad_input_is_one_line(repo, args, message):
    res = sweep(repo, "sweep_sg.sh", *args)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1
    assert lines[0].startswith(f"sweep_sg.sh: {message}")


def test_sg_dry_run_against_the_real_registry():
    env = {**os.environ, "PYTHON": sys.executable}
    res = subprocess.run(["bash", "scripts/sweep_sg.sh", "cf10", "--dry-run"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    from common.surrogate import names

    assert list(commands(res.stdout)) == names()


SURVEY_COLUMNS = {
    "cf10": ["ann", "if", "lif", "clif", "psn", "tebn", "osr", "blockalif", "tandem", "distill_response",
             "distill_feature"],
    "scf10": ["if", "lif", "clif", "psn", "tebn", "osr", "blockalif"],
    "shd": ["if", "lif", "clif", "psn_k2", "psn_k3", "psn_k4", "tebn_if", "osr", "blockalif"],
    # Gen1: every N-CARS backbone first (the runs they need), then the detectors
    "sfod": [f"pretrain_{r}" for r in ("if", "lif", "clif", "psn", "tebn", "osr", "blockalif")]
            + ["if", "lif", "clif", "psn", "tebn", "osr", "blockalif"],
    "coco": ["clif", "tebn", "lif", "if", "psn", "tebn_if", "osr"],
}
SCRIPTS = {"sfod": "SFOD/train.py", "coco": "coco/train.py"}


def _cell(task: str, run: str) -> survey.Cell:
    return survey.find("ncars", run) if run.startswith("pretrain_") else survey.find(task, run)


@pytest.mark.parametrize("task", list(SURVEY_COLUMNS))
def test_methods_dry_run_covers_the_survey_columns(repo, task):
    res = sweep(repo, "sweep_methods.sh", task, "--dry-run", python="python")
    assert res.returncode == 0, res.stderr
    cmds = commands(res.stdout)
    assert list(cmds) == SURVEY_COLUMNS[task]  # distillation after its teacher (ann), Gen1 after its backbone
    for name, cmd in cmds.items():
        assert cmd.startswith(f"python {_cell(task, name).script} ")
        assert cmd.endswith(f" --out-dir runs/{task}/survey --run-name {name}")


def test_methods_commands_are_the_table_of_record(repo):
    """The sweep runs exactly the commands of scripts/reproduce.py --print (the table of record), run directory
    flags included; with --sop its SOP command (the run's flags, then --sop --sop-mode MODE --resume RUN_DIR)."""
    for task, runs in SURVEY_COLUMNS.items():
        cmds = commands(sweep(repo, "sweep_methods.sh", task, "--dry-run", python="python").stdout)
        sops = commands(sweep(repo, "sweep_methods.sh", task, "--sop", "--dry-run", python="python").stdout)
        for run in runs:
            cell = _cell(task, run)
            printed = shlex.join(survey.command(cell, "accuracy"))  # = scripts/reproduce.py --print TASK RUN
            # the sweep keeps the runs a cell needs in its own folder (a Gen1 backbone beside its detector)
            printed = printed.replace("runs/ncars/survey", f"runs/{task}/survey")
            assert cmds[run] == printed
            if run == "ann" or cell.task == "ncars":
                assert run not in sops
            else:
                table = next(t for t in cell.published if survey.kind(t) == "sop")
                sop = shlex.join(survey.command(cell, table))
                assert sops[run] == printed.split(" --out-dir ")[0] + sop.split("train.py", 1)[1]


def test_methods_only_adds_the_teacher_and_checks_it(repo):
    res = sweep(repo, "sweep_methods.sh", "cf10", "--only", "distill_feature,lif", "--seeds", "3", "--dry-run")
    cmds = commands(res.stdout)
    assert list(cmds) == ["ann_s3", "lif_s3", "distill_feature_s3"]
    assert "--teacher runs/cf10/survey/ann_s3" in cmds["distill_feature_s3"]
    assert cmds["lif_s3"].split("train.py ")[1].startswith(
        "--T 4 --epochs 256 -b 128 --amp --opt sgd --lr 0.1 --neuron lif --norm bn --method bptt --seed 3")
    # real run where the teacher fails: the student is not started
    res = sweep(repo, "sweep_methods.sh", "cf10", "--only", "distill_response", "--", "--fail")
    assert res.returncode == 1
    assert "FAILED  distill_response (the run it needs, runs/cf10/survey/ann, has not finished)" in res.stderr
    assert not (repo / "runs/cf10/survey/distill_response").exists()
    res = sweep(repo, "sweep_methods.sh", "cf10", "--only", "ann,distill_response")
    assert res.returncode == 0, res.stderr
    argv = " ".join(json.loads((repo / "runs/cf10/survey/distill_response/args.json").read_text())["argv"])
    assert "--method distill_response --teacher runs/cf10/survey/ann " in argv


@pytest.mark.parametrize("args, message", [
    (["nope"], "unknown task 'nope'; the survey's method tables cover"),
    (["scf10", "--only", "tandem"], "unknown column 'tandem' for scf10; columns and runs: if lif clif psn tebn osr "
                                    "blockalif"),
])
def test_methods_bad_input(repo, args, message):
    res = sweep(repo, "sweep_methods.sh", *args)
    assert res.returncode == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_methods_sop_counts_finished_runs_only(repo):
    out = repo / "runs" / "scf10" / "survey"
    for name in ("if", "lif", "clif"):
        (out / name).mkdir(parents=True)
        (out / name / "summary.json").write_text("{}")
    (out / "lif" / "sop.json").write_text('{"paper": {"sop_m_per_sample": 1.0}}')
    (out / "clif" / "sop.json").write_text('{"corrected": {"sop_m_per_sample": 1.0}}')
    res = sweep(repo, "sweep_methods.sh", "scf10", "--only", "if,lif,clif,psn", "--sop")
    assert res.returncode == 1  # psn has not finished
    assert "skip    lif (SOPs counted: runs/scf10/survey/lif/sop.json)" in res.stdout
    assert "FAILED  psn (not finished: no runs/scf10/survey/psn/summary.json)" in res.stderr
    cmds = commands(res.stdout)
    assert list(cmds) == ["if", "clif"]
    assert cmds["if"].endswith("--neuron if --norm bn --method bptt --sop --sop-mode paper "
                               "--resume runs/scf10/survey/if")
    argv = json.loads((out / "if" / "args.json").read_text())["argv"]
    assert argv[-5:] == ["--sop", "--sop-mode", "paper", "--resume", "runs/scf10/survey/if"]
    assert (out / "logs" / "if.sop.log").exists()


def _task_parser(script: str):
    spec = importlib.util.spec_from_file_location(f"_train_{script.replace('/', '_')[:-3]}", ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


@pytest.mark.parametrize("task", list(SURVEY_COLUMNS))
def test_methods_commands_parse_with_the_real_task_script(repo, task):
    """Every flag and registry name the method sweep passes (training and --sop) is accepted by the real script
    (TASK/train.py; SFOD/pretrain.py for a Gen1 backbone)."""
    from common import cli

    parsers = {}
    for sop in ([], ["--sop"]):
        res = sweep(repo, "sweep_methods.sh", task, *sop, "--dry-run", python="python")
        for name, cmd in commands(res.stdout).items():
            script = shlex.split(cmd)[1]
            parser = parsers[script] = parsers.get(script) or _task_parser(script)
            argv = shlex.split(cmd)[2:]
            if "--resume" in argv:  # the dry run's run directory does not exist: parse the flags without it
                del argv[argv.index("--resume"):argv.index("--resume") + 2]
            args = cli.parse(parser, argv)
            assert (args.neuron, args.norm, args.method) == tuple(
                argv[argv.index(flag) + 1] if flag in argv else default
                for flag, default in (("--neuron", "lif"), ("--norm", "bn"), ("--method", "bptt")))
            assert bool(getattr(args, "sop", False)) == bool(sop), (name, cmd)
