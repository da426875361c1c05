"""scripts/reproduce.py and the table of record (common/survey): every cell of the survey's cf10 / scf10 / SHD /
speed tables is listed with the published number of the spec, every printed command parses with its task's own
parser into the survey run's configuration (expectations transcribed here from the specs, independently of the
table), the Slurm job array is valid bash that starts, resumes or skips each run, and no survey configuration is
spelled out anywhere else."""
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


def run_script(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/reproduce.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, **kwargs)


def _parser(task: str):
    import importlib

    return importlib.import_module(f"{task}.train").build_parser()


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


def test_every_training_cell_is_expected():
    cells = {(c.task, c.run) for c in survey.cells() if c.task in survey.SOP_MODES}
    assert cells == set(EXPECTED)


# ------------------------------------------------------------------------------------------------ --print
@pytest.mark.parametrize("task, run", list(EXPECTED))
def test_print_builds_the_survey_run_configuration(task, run, tmp_path):
    line = run_script("--print", task, run, "--out-dir", str(tmp_path)).stdout.strip()
    assert line.startswith(f"python {task}/train.py ") and "\n" not in line
    argv = shlex.split(line)[2:]
    args = cli.parse(_parser(task), argv)
    expected = dict(EXPECTED[task, run])
    assert set(args.survey_quirks) == expected.pop("quirks", set())
    assert dict(args.neuron_extra) == expected.pop("extra", {}), run
    for key, value in expected.items():
        assert getattr(args, key) == value, (task, run, key)
    assert args.out_dir == f"{tmp_path}/{task}/survey" and args.run_name == run
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
    (["--print", "coco", "LIF"], "no survey cells for task 'coco'"),
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
    _, everything = slurm(tmp_path)
    assert f"#SBATCH --array=0-{len(EXPECTED) - 1}" in everything


def test_slurm_task_starts_resumes_skips_and_waits_for_its_teacher(tmp_path):
    script, _ = slurm(tmp_path, "--task", "cf10", "--columns", "KD-feature")  # 0: ann, 1: distill_feature
    runs = tmp_path / "runs" / "cf10" / "survey"
    rc, argv, _ = run_index(tmp_path, script, 0)
    assert rc == 0 and argv == " ".join(["cf10/train.py", *survey.train_args(survey.find("cf10", "ANN"),
                                                                             str(tmp_path / "runs"))])
    rc, argv, out = run_index(tmp_path, script, 1)
    assert rc == 1 and argv == "" and "its teacher" in out and "has not finished" in out
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
    for task in survey.SOP_MODES:
        _parser(task)
    for cell in survey.cells():
        for name in cell.quirks():
            assert cell.task in quirks.QUIRKS[name].tasks, (cell.task, name)
    used = {q for c in survey.cells() for q in c.quirks()}
    ours = {q.name for q in quirks.QUIRKS.values() if set(q.tasks) & set(survey.SOP_MODES)}
    assert ours == used  # no survey switch of these tasks is left out of the table


# old switches and survey recipes that must not reappear outside the table of record
STRAY = re.compile(r"--kd-survey-quirk|--no-mask-padding|--mask-padding|--survey-param-groups|clif_sigmoid_carry="
                   r"|ots_batch_eval=|b_init=1\.8|--epochs 256 -b 128|--epochs 150 -b 256|--survey-quirk \w+ --")
GENERATED = {"docs/reproducing-table.md"}
# tasks whose cells have not joined the table yet (common.survey.EXTENSIONS): drop them here when they do
PENDING = {"docs/coco.md", "docs/sfod.md"}


def test_no_survey_configuration_outside_the_table_of_record():
    found = []
    for folder in ("scripts", "speed", "docs", "cf10", "scf10", "shd"):
        for path in sorted((ROOT / folder).rglob("*")):
            rel = path.relative_to(ROOT).as_posix()
            if path.suffix not in (".py", ".sh", ".md", ".json") or rel in GENERATED | PENDING or "/flags/" in rel:
                continue
            for k, line in enumerate(path.read_text().splitlines(), 1):
                if STRAY.search(line):
                    found.append(f"{rel}:{k}: {line.strip()[:100]}")
    assert found == []


def test_generated_table_page_is_fresh():
    assert (ROOT / reproduce.DOC).read_text() == reproduce.markdown(), "run: python scripts/gen_docs.py"


def test_collect_results_reads_the_table():
    spec = survey.collect_spec()
    assert spec["tables"]["accuracy"]["rows"]["shd"]["TEBN"] == 74.54
    assert spec["tables"]["sop"]["rows"]["scf10"]["BlockALIF"] == 1
    assert spec["tables"]["coco_map"]["rows"]["coco"]["TEBN-IF"] == 0.223
    assert json.dumps(spec)  # plain data
