"""scripts/reproduce.py and the table of record (common/survey): every cell of the survey's cf10 / scf10 / SHD /
Gen1 (with its N-CARS pre-training) / COCO / speed tables is listed with the published number of the spec, every
printed command parses with its task's own parser into the survey run's configuration (expectations transcribed
here from the specs, independently of the table), the Slurm job array is valid bash that starts, resumes or skips
each run (and waits for the run a cell needs), and no survey configuration is spelled out anywhere else."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from common import cli, quirks, survey
from scripts import reproduce

ROOT = Path(__file__).resolve().parents[2]

# Published numbers (spec survey-cf10-scf10-speed.md §6.1-6.3 and survey-shd-gen1-coco.md §1.7): column -> values
ACCURACY = {
    "cf10": {"IF": 93.04, "LIF": 92.98, "CLIF": 93.21, "PSN": 93.22, "TEBN": 93.32, "OSR": 92.61, "BlockALIF": 90.27,
             "Tandem": 89.68, "KD-response": 93.11, "KD-feature": 93.18},
    "scf10": {"IF": 78.31, "LIF": 80.5, "CLIF": 81.55, "PSN": 86.31, "TEBN": 82.6, "OSR": 63.63, "BlockALIF": 34.62},
    "shd": {"IF": 78.33, "LIF": 66.98, "CLIF": 66.1, "PSN": 69.23, "TEBN": 74.54, "OSR": 40.93, "BlockALIF": 82.36},
}
SOP = {
    "cf10": {"IF": 12.063, "LIF": 10.095, "CLIF": 13.774, "PSN": 31.31, "TEBN": 15.672, "OSR": 22.337,
             "BlockALIF": 15.516, "Tandem": 15.184, "KD-response": 10.16, "KD-feature": 13.735},
    "scf10": {"IF": 2.548, "LIF": 1.819, "CLIF": 2.047, "PSN": 2.084, "TEBN": 2.027, "OSR": 3.407, "BlockALIF": 1},
    "shd": {"IF": 0.0251374007873535, "LIF": 0.0262265560913085, "CLIF": 0.0263190026855468, "PSN": 0.026405228515625,
            "TEBN": 0.0261909122314453, "OSR": 0.0227536888427734, "BlockALIF": 0.0238542784118652},
}
TRAIN_SPEED = {"cf10": {"IF": 1673.0782, "CLIF": 907.4299, "BlockALIF": 355.736, "KD-feature": 1284.1706},
               "scf10": {"LIF": 5819.6672, "OSR": 163.9427, "BlockALIF": 445.4115}}
MEMORY = {"cf10": {"CLIF": 9021, "Tandem": 3281}, "scf10": {"TEBN": 2601, "BlockALIF": 3755}}
SPEED_COLUMNS = ["LIF", "PSN", "cp", *[f"{k}-L{lat}" for k in ("BlockALIF", "ALIF") for lat in (0, 1, 3, 7)]]

# The survey run behind each cell (specs §1, §2, §8 with errata): run -> expected parsed values
_CF10 = dict(T=4, epochs=256, batch_size=128, amp=True, opt="sgd", lr=0.1, sg="atan", sg_alpha=None, channels=128)
_SCF10 = dict(T=32, epochs=256, batch_size=128, amp=True, opt="sgd", lr=0.1, sg="atan", sg_alpha=None, channels=128)
_SHD = dict(T=126, epochs=150, batch_size=256, amp=False, opt="adam", sg="atan", sg_alpha=5.0, hidden=256)
_SHD_Q = {"untrained_variant_params", "unmasked_padding", "shd_folder_test_order"}
_OSR_Q = {"ots_batch_eval", "osr_stats_over_T", "osr_fold_next_batch"}
EXPECTED = {
    ("cf10", "ann"): dict(_CF10, method="ann"),
    ("cf10", "if"): dict(_CF10, neuron="if", norm="bn", method="bptt"),
    ("cf10", "lif"): dict(_CF10, neuron="lif", norm="bn", method="bptt"),
    ("cf10", "clif"): dict(_CF10, neuron="clif", norm="bn", method="bptt", quirks={"clif_sigmoid_carry"}),
    ("cf10", "psn"): dict(_CF10, neuron="psn", norm="bn", method="bptt"),
    ("cf10", "tebn"): dict(_CF10, neuron="lif", norm="tebn", method="bptt"),
    ("cf10", "osr"): dict(_CF10, neuron="online_lif", norm="osr", method="online", quirks=_OSR_Q),
    ("cf10", "blockalif"): dict(_CF10, neuron="blockalif", norm="bn", method="bptt", extra={"latency": 1},
                                quirks={"blockalif_frozen_b"}),
    ("cf10", "tandem"): dict(_CF10, method="tandem", lr=0.001, quirks={"tandem_count_readout",
                                                                       "tandem_authors_layers"}),
    ("cf10", "distill_response"): dict(_CF10, neuron="lif", norm="bn", method="distill_response", kd_alpha=0.001,
                                       kd_temp=4.0, quirks={"kd_raw_teacher_logits"}),
    ("cf10", "distill_feature"): dict(_CF10, neuron="lif", norm="bn", method="distill_feature", kd_beta=0.1),
    ("scf10", "if"): dict(_SCF10, neuron="if", norm="bn", method="bptt"),
    ("scf10", "lif"): dict(_SCF10, neuron="lif", norm="bn", method="bptt"),
    ("scf10", "clif"): dict(_SCF10, neuron="clif", norm="bn", method="bptt", quirks={"clif_sigmoid_carry"}),
    ("scf10", "psn"): dict(_SCF10, neuron="sliding_psn", norm="bn", method="bptt", extra={"k": 4}),
    ("scf10", "tebn"): dict(_SCF10, neuron="lif", norm="tebn", method="bptt"),
    ("scf10", "osr"): dict(_SCF10, neuron="online_lif", norm="osr", method="online", quirks=_OSR_Q),
    ("scf10", "blockalif"): dict(_SCF10, neuron="blockalif", norm="bn", method="bptt", extra={"latency": 3},
                                 quirks={"blockalif_frozen_b"}),
    ("shd", "if"): dict(_SHD, neuron="if", norm="bn", method="bptt", quirks=_SHD_Q),
    ("shd", "lif"): dict(_SHD, neuron="lif", norm="bn", method="bptt", quirks=_SHD_Q),
    ("shd", "clif"): dict(_SHD, neuron="clif", norm="bn", method="bptt", quirks=_SHD_Q | {"clif_sigmoid_carry"}),
    **{("shd", f"psn_k{k}"): dict(_SHD, neuron="sliding_psn", norm="bn", method="bptt", extra={"k": k},
                                  quirks=_SHD_Q) for k in (2, 3, 4)},
    ("shd", "tebn_if"): dict(_SHD, neuron="if", norm="tebn", method="bptt", quirks=_SHD_Q),
    ("shd", "osr"): dict(_SHD, neuron="online_lif", norm="osr", method="bptt", sg_alpha=2.0, quirks=_SHD_Q | _OSR_Q),
    ("shd", "blockalif"): dict(_SHD, neuron="blockalif", norm="bn", method="bptt", extra={"latency": 1},
                               quirks=_SHD_Q | {"blockalif_frozen_b"}),
}
# Gen1 (spec §2.6, §2.8): column -> neuron, norm, lr, quirks, Sliding PSN's k = 3; N-CARS: batch 64, lr 5e-3, 30 epochs
_DET_VARIANTS = {"IF": ("if", "bn", set()), "LIF": ("lif", "bn", set()), "CLIF": ("clif", "bn", {"clif_sigmoid_carry"}),
                 "PSN": ("sliding_psn", "bn", set()), "TEBN": ("lif", "tebn", set()),
                 "OSR": ("online_lif", "osr", {"ots_batch_eval", "osr_fold_next_batch"}),
                 "BlockALIF": ("blockalif", "bn", {"blockalif_frozen_b"})}
for _col, (_neuron, _norm, _quirks) in _DET_VARIANTS.items():
    _run = _col.lower()
    _extra = {"k": 3} if _neuron == "sliding_psn" else {}
    EXPECTED["ncars", f"pretrain_{_run}"] = dict(T=5, epochs=30, batch_size=64, lr=0.005, amp=True, opt="adamw",
                                                 neuron=_neuron, norm=_norm, quirks=_quirks, extra=_extra)
    EXPECTED["sfod", _run] = dict(T=5, epochs=50, batch_size=16, lr=1e-4 if _col in ("CLIF", "OSR") else 1e-3,
                                  amp=True, opt="adamw", wd=1e-4, neuron=_neuron, norm=_norm, quirks=_quirks,
                                  extra=_extra, backbone=f"pretrain_{_run}")
# COCO (spec §3.6, §3.8): every run with the survey's training-code quirks
_COCO_Q = {"lr_schedule_lag", "frozen_tebn_p", "fp16_best"}
for _col, (_neuron, _norm, _quirks) in {**{c: v for c, v in _DET_VARIANTS.items() if c != "BlockALIF"},
                                        "TEBN-IF": ("if", "tebn", set())}.items():
    EXPECTED["coco", _col.lower().replace("-", "_")] = dict(
        T=5, epochs=100, batch_size=16, img_size=640, lr=0.01, neuron=_neuron, norm=_norm, quirks=_COCO_Q | _quirks,
        extra={"k": 3} if _neuron == "sliding_psn" else {})
SCRIPTS = {"ncars": "SFOD/pretrain.py", "sfod": "SFOD/train.py"}  # else TASK/train.py


def run_script(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/reproduce.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, **kwargs)


def _script(task: str) -> str:
    return SCRIPTS.get(task, f"{task}/train.py")


def _parser(task: str):
    import importlib

    return importlib.import_module(_script(task).removesuffix(".py").replace("/", ".")).build_parser()


# ------------------------------------------------------------------------------------------------ --list
def test_list_covers_every_cell_of_the_tables():
    res = run_script("--list")
    assert res.returncode == 0, res.stderr
    rows = [line.split()[:5] for line in res.stdout.splitlines()[1:]]
    listed = {(t, table, col): float(v) for t, table, col, run, v in rows if v not in ("–",) and table != "speed"}
    for table, expected in (("accuracy", ACCURACY), ("sop", SOP), ("train_speed", TRAIN_SPEED),
                            ("memory", MEMORY)):
        for task, values in expected.items():
            for column, value in values.items():
                assert listed[task, table, column] == pytest.approx(value, rel=1e-12), (task, table, column)
    assert {(t, table) for t, table, *_ in rows if t in ("cf10", "scf10")} >= {
        ("cf10", "test_speed"), ("scf10", "test_speed"), ("cf10", "first_layer_flop")}
    assert [col for t, table, col, *_ in rows if t == "speed"] == SPEED_COLUMNS
    shd = run_script("--list", "--task", "shd", "--table", "accuracy").stdout.splitlines()[1:]
    assert [line.split()[3] for line in shd] == ["if", "lif", "clif", "psn_k2", "psn_k3", "psn_k4", "tebn_if", "osr",
                                                 "blockalif"]


def test_list_into_a_closed_pipe_ends_quietly():
    """``--list | head``: the reader is gone before the list is written; no BrokenPipeError traceback."""
    proc = subprocess.Popen([sys.executable, "scripts/reproduce.py", "--list"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""  # 128 + SIGPIPE, as a shell tool killed by the pipe


def test_list_lines_up_the_published_column():
    lines = run_script("--list", "--task", "shd", "--table", "sop").stdout.splitlines()
    ends = {line.index(line.split()[4]) + len(line.split()[4]) for line in lines}  # right-aligned values
    assert len(ends) == 1 and "0.0251374007873535" in lines[1]


def test_every_training_cell_is_expected():
    cells = {(c.task, c.run) for c in survey.cells() if c.task in survey.training_tasks()}
    assert cells == set(EXPECTED)


# ------------------------------------------------------------------------------------------------ --print
@pytest.mark.parametrize("task, run", list(EXPECTED))
def test_print_builds_the_survey_run_configuration(task, run, tmp_path):
    line = run_script("--print", task, run, "--out-dir", str(tmp_path)).stdout.strip()
    assert line.startswith(f"python {_script(task)} ") and "\n" not in line
    argv = shlex.split(line)[2:]
    args = cli.parse(_parser(task), argv)
    expected = dict(EXPECTED[task, run])
    assert set(args.survey_quirks) == expected.pop("quirks", set())
    assert dict(args.neuron_extra) == expected.pop("extra", {}), run
    backbone = expected.pop("backbone", None)
    for key, value in expected.items():
        assert getattr(args, key) == value, (task, run, key)
    assert args.out_dir == f"{tmp_path}/{task}/survey" and args.run_name == run
    if backbone:  # Gen1: the N-CARS pre-training run of its column
        assert args.backbone_ckpt == f"{tmp_path}/ncars/survey/{backbone}"
    if args.method.startswith("distill"):
        assert args.teacher == f"{tmp_path}/cf10/survey/ann"


@pytest.mark.parametrize("task, column, attr, value", [
    ("cf10", "CLIF", "sigmoid_carry", True), ("scf10", "CLIF", "sigmoid_carry", True),
    ("scf10", "BlockALIF", "latency", 3), ("cf10", "BlockALIF", "latency", 1),
    ("cf10", "OSR", "ots_batch_eval", True),
])
def test_printed_commands_reach_the_model(task, column, attr, value, tmp_path):
    """§2.1, §2.2: the survey's CLIF state and scf10's latency-3 BlockALIF are in the built model."""
    import importlib

    argv = shlex.split(run_script("--print", task, column, "--out-dir", str(tmp_path)).stdout)[2:]
    args = cli.parse(_parser(task), [*argv, "--channels", "2", "--device", "cpu"])
    model = importlib.import_module(f"{task}.train").build_task(args).build_model("snn")
    values = {getattr(m, attr) for m in model.modules() if hasattr(m, attr) and not isinstance(getattr(m, attr),
                                                                                                 type(model))}
    assert values == {value}


def test_print_sop_throughput_and_speed_commands():
    assert run_script("--print", "shd", "tebn_if", "--table", "sop").stdout.strip() == (
        "python shd/train.py --sop --sop-mode corrected --resume runs/shd/survey/tebn_if")
    assert run_script("--print", "scf10", "CLIF", "--table", "sop").stdout.strip() == (
        "python scf10/train.py --sop --sop-mode paper --resume runs/scf10/survey/clif")
    line = run_script("--print", "cf10", "BlockALIF", "--table", "train_speed").stdout.strip()
    assert line.startswith("python speed/throughput.py ") and "--survey-timing" in line
    assert line.endswith("--tasks cf10 --methods blockalif")
    line = run_script("--print", "speed", "cp").stdout.strip()
    assert line.startswith("python speed/bench.py ") and "--impl loop,spikingjelly-cupy" in line
    assert "--statistic survey" in line


@pytest.mark.parametrize("args, message", [
    (["--print", "shd", "PSN"], "3 runs stand behind this column; name one: psn_k2, psn_k3, psn_k4"),
    (["--print", "cf10", "Nope"], "cf10: no column or run 'Nope'; columns: ANN, IF, LIF"),
    (["--print", "nope", "LIF"], "no survey cells for task 'nope'"),
    (["--print", "coco", "BlockALIF"], "coco: no column or run 'BlockALIF'; columns: CLIF, TEBN, LIF"),
    (["--print", "scf10", "IF", "--table", "memory2"], "--table memory2: valid: accuracy"),
    (["--print", "cf10", "ANN", "--table", "sop"], "has no number in table 'sop'"),
])
def test_bad_cells_are_one_line_errors(args, message):
    res = run_script(*args)
    assert res.returncode == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_run_starts_resumes_or_skips(tmp_path, capsys):
    out = str(tmp_path)
    assert reproduce.main(["cf10", "LIF", "--out-dir", out, "--dry-run"]) == 0
    assert capsys.readouterr().out.split(" ", 2)[2].startswith("cf10/train.py --T 4 --epochs 256")
    run_dir = tmp_path / "cf10" / "survey" / "lif"
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint_latest.pt").write_text("")
    reproduce.main(["cf10", "LIF", "--out-dir", out, "--dry-run"])
    assert capsys.readouterr().out.strip().endswith(f"cf10/train.py --resume {run_dir}")
    (run_dir / "summary.json").write_text("{}")
    reproduce.main(["cf10", "LIF", "--out-dir", out, "--dry-run"])
    assert "is finished (summary.json); nothing to do" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ Slurm
FAKE_PYTHON = """#!/bin/sh
echo "$@" > "$FAKE_LOG"
"""


def slurm(tmp_path: Path, *args: str) -> tuple[Path, str]:
    script = tmp_path / "jobs.sbatch"
    res = run_script("--slurm", str(script), "--out-dir", str(tmp_path / "runs"), *args)
    assert res.returncode == 0, res.stderr
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    return script, script.read_text()


def run_index(tmp_path: Path, script: Path, index: int) -> tuple[int, str, str]:
    fake = tmp_path / "fakepython"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    log = tmp_path / "argv.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(index), "PYTHON": str(fake), "FAKE_LOG": str(log)}
    res = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    return res.returncode, log.read_text().strip() if log.exists() else "", res.stdout + res.stderr


def test_slurm_array_lists_one_task_per_cell_and_seed(tmp_path):
    _, text = slurm(tmp_path, "--task", "cf10", "--columns", "KD-response,LIF", "--seeds", "0,1")
    cells = re.findall(r"^# cell (\d+) (\S+) (\S+) (\S+)$", text, re.M)
    runs = tmp_path / "runs" / "cf10" / "survey"
    assert cells == [(str(i), "cf10", col, str(runs / f"{run}_s{s}")) for i, (col, run, s) in enumerate(
        [("ANN", "ann", 0), ("ANN", "ann", 1), ("LIF", "lif", 0), ("LIF", "lif", 1),
         ("KD-response", "distill_response", 0), ("KD-response", "distill_response", 1)])]
    assert "#SBATCH --array=0-5" in text and "#SBATCH --requeue" in text
    # Slurm opens the log file before the job starts and does not create folders: absolute, and made here
    assert f"#SBATCH --output={tmp_path / 'runs' / 'slurm'}/%x_%A_%a.out" in text
    assert (tmp_path / "runs" / "slurm").is_dir()
    _, everything = slurm(tmp_path)
    assert f"#SBATCH --array=0-{len(EXPECTED) - 1}" in everything


def test_slurm_task_starts_resumes_skips_and_waits_for_its_teacher(tmp_path):
    script, _ = slurm(tmp_path, "--task", "cf10", "--columns", "KD-feature")  # 0: ann, 1: distill_feature
    runs = tmp_path / "runs" / "cf10" / "survey"
    rc, argv, _ = run_index(tmp_path, script, 0)
    assert rc == 0 and argv == " ".join(["cf10/train.py", *survey.train_args(survey.find("cf10", "ANN"),
                                                                             str(tmp_path / "runs"))])
    rc, argv, out = run_index(tmp_path, script, 1)
    assert rc == 1 and argv == "" and "the run it needs" in out and "has not finished" in out
    (runs / "ann").mkdir(parents=True)
    (runs / "ann" / "summary.json").write_text("{}")
    rc, argv, _ = run_index(tmp_path, script, 0)
    assert rc == 0 and argv == "" and "finished" in _
    (runs / "distill_feature").mkdir(parents=True)
    (runs / "distill_feature" / "checkpoint_latest.pt").write_text("")
    rc, argv, _ = run_index(tmp_path, script, 1)
    assert rc == 0 and argv == f"cf10/train.py --resume {runs / 'distill_feature'}"  # the resume flag alone
    rc, argv, out = run_index(tmp_path, script, 7)
    assert rc == 2 and "no survey cell for array index 7" in out


def test_slurm_multi_gpu_cells_run_under_torchrun(tmp_path, monkeypatch, capsys):
    from dataclasses import replace

    wide = replace(survey.find("cf10", "LIF"), gpus=4)
    monkeypatch.setattr(survey, "select", lambda task=None, table=None: [wide] if task == "cf10" else [])
    monkeypatch.setattr(survey, "find", lambda task, column: wide)
    script = tmp_path / "x.sbatch"
    reproduce.main(["--slurm", str(script), "--task", "cf10"])
    text = script.read_text()
    assert "#SBATCH --gpus-per-node=4" in text and "GPUS=4" in text
    assert 'LAUNCH=(torchrun --standalone --nproc_per_node="$GPUS")' in text
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


# ------------------------------------------------------------------------------------------------ one source
def test_every_quirk_in_the_table_is_registered_for_its_task():
    for task in survey.training_tasks():
        _parser(task)
    for cell in survey.cells():
        for name in cell.quirks():
            assert cell.task in quirks.QUIRKS[name].tasks, (cell.task, name)
    used = {q for c in survey.cells() for q in c.quirks()}
    ours = {q.name for q in quirks.QUIRKS.values() if set(q.tasks) & set(survey.training_tasks())}
    assert ours == used  # no survey switch of these tasks is left out of the table


# old switches and survey recipes that must not reappear outside the table of record
STRAY = re.compile(r"--kd-survey-quirk|--no-mask-padding|--mask-padding|--survey-param-groups|clif_sigmoid_carry="
                   r"|ots_batch_eval=|b_init=1\.8|--epochs 256 -b 128|--epochs 150 -b 256|--survey-quirk \w+ --")
GENERATED = {"docs/reproducing-table.md"}
# the detection tasks' published numbers as printed (full precision, or the COCO SOPs), anywhere outside the table
DETECTION_NUMBERS = re.compile(r"0\.\d{12,}|\d{6,}\.\d{4,}|385\.86|296\.33|537,372|1,004,679|0\.5213")
FOLDERS = ("scripts", "speed", "docs", "cf10", "scf10", "shd", "SFOD", "coco", "common")


def _text_files():
    yield ROOT / "README.md"
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            rel = path.relative_to(ROOT).as_posix()
            if path.suffix in (".py", ".sh", ".md", ".json") and rel not in GENERATED and "/flags/" not in rel \
                    and not rel.startswith("common/survey/"):
                yield path


def test_no_survey_configuration_outside_the_table_of_record():
    found = []
    for path in _text_files():
        rel = path.relative_to(ROOT).as_posix()
        for k, line in enumerate(path.read_text().splitlines(), 1):
            if (STRAY.search(line) and not rel.startswith("common/")) or DETECTION_NUMBERS.search(line):
                found.append(f"{rel}:{k}: {line.strip()[:100]}")
    assert found == []
    assert not (ROOT / "SFOD" / "survey.py").exists() and not (ROOT / "coco" / "survey.py").exists()


def test_generated_table_page_is_fresh():
    assert (ROOT / reproduce.DOC).read_text() == reproduce.markdown(), "run: python scripts/gen_docs.py"


def test_collect_results_reads_the_table():
    spec = survey.collect_spec()
    assert spec["tables"]["accuracy"]["rows"]["shd"]["TEBN"] == 74.54
    assert spec["tables"]["sop"]["rows"]["scf10"]["BlockALIF"] == 1
    assert spec["tables"]["coco_map"]["rows"]["coco"]["TEBN-IF"] == 0.223
    assert json.dumps(spec)  # plain data


# ------------------------------------------------------------------------------------------------ Gen1 and COCO
# spec §2.8 (results_corr.txt / acc_gen1.xlsx) and §3.8 (coco/results.txt): column -> (mAP@0.5, mAP@[.5:.95], SOP)
GEN1 = {"IF": (0.0013131505, 0.00023276558, 385.86057541), "LIF": (0.43992195829, 0.2105742599, 296.33485311),
        "CLIF": (0.23881171008, 0.09020373604, 353.02718819), "PSN": (0.47811830105, 0.23906285358, 293.53200905),
        "TEBN": (0.5213307914, 0.26555922723, 214.71965005), "OSR": (0.00069699211, 0.00031848838, 305.93007182),
        "BlockALIF": (0.13473591193, 0.04574062476, 232.68820286)}
NCARS_ACC = {"IF": 81, "LIF": 91.69, "CLIF": 85.34, "PSN": 91.41, "TEBN": 90.96, "OSR": 56.23, "BlockALIF": 68.14}
COCO = {"CLIF": (0.228, 0.410, 537372.323724), "TEBN": (0.217, 0.397, 447592.849188),
        "LIF": (0.216, 0.397, 444669.07828), "IF": (0.225, 0.409, 363786.74275), "PSN": (0.213, 0.389, 1004679.03376),
        "TEBN-IF": (0.223, 0.408, 360619.852476), "OSR": (0.120, 0.247, 561747.619018)}


def _listed(*args: str) -> dict[tuple[str, str, str], str]:
    res = run_script("--list", *args)
    assert res.returncode == 0, res.stderr
    return {(t, table, col): v for t, table, col, run, v in (line.split()[:5] for line in res.stdout.splitlines()[1:])}


def test_list_detection_cells_with_their_published_numbers():
    sfod = _listed("--task", "sfod")
    assert {t for t, *_ in sfod} == {"sfod", "ncars"}  # the Gen1 cells with the N-CARS runs they need
    for column, (map50, map_, sop) in GEN1.items():
        assert float(sfod["sfod", "gen1_map50", column]) == pytest.approx(map50, rel=1e-7)
        assert float(sfod["sfod", "gen1_map", column]) == pytest.approx(map_, rel=1e-7)
        assert float(sfod["sfod", "gen1_sop", column]) == pytest.approx(sop, rel=1e-9)
        assert float(sfod["ncars", "gen1_pretrain_acc", column]) == NCARS_ACC[column]
    coco = _listed("--task", "coco")
    assert {t for t, *_ in coco} == {"coco"}
    for column, (map_, map50, sop) in COCO.items():
        assert [float(coco["coco", t, column]) for t in ("coco_map", "coco_map50", "coco_sop")] == [map_, map50, sop]
    assert len(coco) == 3 * len(COCO) and len(sfod) == 4 * len(GEN1)


def test_detection_cells_keep_the_twelve_stats():
    from common.coco_eval import STAT_KEYS

    assert survey.COCO_STATS == STAT_KEYS
    lif = survey.find("sfod", "LIF").stats
    assert list(lif) == list(STAT_KEYS) and lif["AR100"] == 0.4074153687178753  # spec §2.8 val_AR_det=100
    assert survey.find("coco", "OSR").stats["APl"] == 0.134  # spec §3.8 AP large


def test_print_detection_sop_commands(tmp_path):
    assert run_script("--print", "sfod", "LIF", "--table", "gen1_sop").stdout.strip() == (
        "python SFOD/train.py --sop --sop-mode gen1_survey --resume runs/sfod/survey/lif")
    assert run_script("--print", "coco", "TEBN-IF", "--table", "coco_sop").stdout.strip() == (
        "python coco/train.py --sop --sop-mode coco_survey --resume runs/coco/survey/tebn_if")
    for task, column, table in (("sfod", "LIF", "gen1_sop"), ("coco", "CLIF", "coco_sop")):
        argv = shlex.split(run_script("--print", task, column, "--table", table).stdout)[2:-2]  # without --resume
        args = cli.parse(_parser(task), argv)
        assert args.sop and args.sop_mode == survey.SOP_MODES[task]


def test_gen1_run_is_refused_before_its_backbone(tmp_path, capsys):
    out = str(tmp_path)
    with pytest.raises(SystemExit) as e:
        reproduce.main(["sfod", "LIF", "--out-dir", out, "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert f"sfod LIF needs the finished run {tmp_path}/ncars/survey/pretrain_lif" in err
    assert err.endswith("run it first: python scripts/reproduce.py ncars pretrain_lif")
    assert reproduce.main(["ncars", "LIF", "--out-dir", out, "--dry-run"]) == 0
    assert capsys.readouterr().out.split(" ", 2)[2].startswith("SFOD/pretrain.py --epochs 30 -b 64 --lr 0.005")
    backbone = tmp_path / "ncars" / "survey" / "pretrain_lif"
    backbone.mkdir(parents=True)
    (backbone / "summary.json").write_text("{}")
    assert reproduce.main(["sfod", "LIF", "--out-dir", out, "--dry-run"]) == 0
    assert f"SFOD/train.py --epochs 50 -b 16 --lr 0.001 --neuron lif --norm bn --backbone-ckpt {backbone} " in (
        capsys.readouterr().out)


def test_slurm_gen1_task_waits_for_its_backbone(tmp_path):
    script, text = slurm(tmp_path, "--task", "sfod", "--columns", "TEBN")
    runs = tmp_path / "runs"
    assert re.findall(r"^# cell (\d+) (\S+) (\S+) (\S+)$", text, re.M) == [
        ("0", "ncars", "TEBN", str(runs / "ncars/survey/pretrain_tebn")),
        ("1", "sfod", "TEBN", str(runs / "sfod/survey/tebn"))]
    rc, argv, out = run_index(tmp_path, script, 1)
    assert rc == 1 and argv == "" and "has not finished" in out
    rc, argv, _ = run_index(tmp_path, script, 0)
    assert rc == 0 and argv.startswith("SFOD/pretrain.py --epochs 30 ")
    (runs / "ncars/survey/pretrain_tebn").mkdir(parents=True)
    (runs / "ncars/survey/pretrain_tebn/summary.json").write_text("{}")
    rc, argv, _ = run_index(tmp_path, script, 1)
    assert rc == 0 and argv == " ".join(["SFOD/train.py", *survey.train_args(survey.find("sfod", "TEBN"), str(runs))])
    assert f"--backbone-ckpt {runs}/ncars/survey/pretrain_tebn" in argv
