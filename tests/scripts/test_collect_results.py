"""scripts/collect_results.py on a temporary tree of run directories written in the engine's own format
(``common.runlog.RunLog`` for args.json / metrics.csv / summary.json, ``common.sop.write_sop_json`` for sop.json,
flags from ``common.cli.base_parser``), plus a ``speed/bench.py``-style CSV."""
from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from common import cli, rundir
from common.runlog import METRIC_COLUMNS, RunLog
from common.sop import write_sop_json

ROOT = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("collect_results", ROOT / "scripts" / "collect_results.py")
collect_results = sys.modules["collect_results"] = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(collect_results)


def write_run(root: Path, name: str, accs: list[float], *, task="cf10", flags=(), finished=True, epochs=None,
              sop: dict | None = None, speed=(1000.0, 2000.0), mem=100.0) -> Path:
    """A run directory as ``engine.fit`` leaves it: one metrics row per accuracy in ``accs``; ``summary.json`` only
    when ``finished``; ``--epochs`` defaults to ``len(accs)``."""
    argv = ["--epochs", str(epochs or len(accs)), *flags]
    args = {**vars(cli.base_parser("test").parse_args(argv)), "task": task, "argv": ["train.py", *argv]}
    run_dir = root / name
    log = RunLog(run_dir)
    rundir.write_args_once(run_dir, json.loads(json.dumps(args, default=str)))
    for epoch, acc in enumerate(accs):
        log.log_epoch({**dict.fromkeys(METRIC_COLUMNS, 1.0), "epoch": epoch, "test_acc": acc, "train_acc": acc,
                       "train_samples_per_s": speed[0] + epoch, "test_samples_per_s": speed[1] + epoch,
                       "peak_mem_mb": mem + epoch})
    log.close()
    if finished:
        best = max(range(len(accs)), key=accs.__getitem__)
        log.write_summary({"finished": True, "best_test_acc": accs[best], "best_epoch": best,
                           "epochs": args["epochs"], "epochs_done": len(accs), "run_dir": str(run_dir)})
    for mode, value in (sop or {}).items():
        write_sop_json(run_dir, {"mode": mode, "sop_m_per_sample": value, "sop_m_per_step": value / 4,
                                        "first_layer_flop_m": 0.115})
    return run_dir


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Collect a fixed tree once; returns (output folder, Inputs)."""
    root = tmp_path_factory.mktemp("runs")
    write_run(root / "cf10", "lif_s1", [0.80, 0.92], flags=["--neuron", "lif", "--seed", "1"],
              sop={"paper": 10.0, "corrected": 500.0}, speed=(1500.0, 1400.0), mem=4000.0)
    write_run(root / "cf10", "lif_s2", [0.81, 0.93], flags=["--neuron", "lif", "--seed", "2"],
              sop={"paper": 11.0}, speed=(1700.0, 1600.0), mem=4200.0)
    write_run(root / "cf10", "lif_alpha5", [0.95], flags=["--neuron", "lif", "--sg-alpha", "5"])
    write_run(root / "cf10", "lif_lr", [0.90], flags=["--neuron", "lif", "--lr", "0.05"])  # a worse configuration
    write_run(root / "cf10", "if_running", [0.50], flags=["--neuron", "if"], epochs=3, finished=False)
    write_run(root / "cf10", "clif_cut", [0.60, 0.70], flags=["--neuron", "clif"], epochs=3)  # summary, 2/3 epochs
    write_run(root / "cf10", "clif_sigmoid", [0.90], flags=["--neuron", "clif", "--sg", "sigmoid"])
    write_run(root / "shd", "tebn_if", [0.70, 0.75], task="shd",
              flags=["--neuron", "if", "--norm", "tebn", "--sg-alpha", "5"], sop={"corrected": 0.1})
    write_run(root / "shd", "osr", [0.41], task="shd",
              flags=["--neuron", "online_lif", "--norm", "osr", "--sg-alpha", "2"])
    write_run(root / "scf10", "odd", [0.50], task="scf10", flags=["--neuron", "lif", "--norm", "osr"])
    speed_csv = root / "bench" / "bench.csv"
    speed_csv.parent.mkdir()
    with open(speed_csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["impl", "mode", "T", "N", "median_ms", "iqr_ms", "peak_mem_mb", "status"])
        writer.writerows([["loop", "train", 4, 512, 2.0, 0.1, 1.0, "ok"], ["psn", "train", 4, 512, 0.5, 0.1, 1.0, "ok"],
                          ["cupy", "train", 4, 512, "", "", "", "skipped"]])
    out = tmp_path_factory.mktemp("tables")
    found = collect_results.collect([root], out)
    return out, found


def read_wide(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(path, newline="") as f:
        return {(r["dataset"], r["value"]): r for r in csv.DictReader(f)}


def md_row(path: Path, label: str) -> list[str]:
    for line in path.read_text().splitlines():
        if line.startswith(f"| {label} |"):
            return [c.strip() for c in line.strip("|").split("|")][1:]
    raise AssertionError(f"no row {label!r} in {path}")


def md_header(path: Path) -> list[str]:
    line = next(x for x in path.read_text().splitlines() if x.startswith("| Dataset |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def md_cell(path: Path, label: str, column: str) -> str:
    return md_row(path, label)[md_header(path).index(column)]


def test_accuracy_mean_std_over_seeds_beside_survey(tables):
    out, _ = tables
    # lif_s1/lif_s2: best 92 and 93 -> 92.50 ± 0.71 (sample std), 2 epochs < 256 -> '*', survey 92.98;
    # lif_lr (90 %) is another configuration of the same cell -> '†', the better one is shown
    assert md_cell(out / "accuracy.md", "CIFAR10", "LIF") == "92.50 ± 0.71 (n=2)*† / 92.98 (-0.48)"
    wide = read_wide(out / "accuracy.csv")
    assert float(wide["cf10", "ours"]["LIF"]) == pytest.approx(92.5)
    assert float(wide["cf10", "ours_std"]["LIF"]) == pytest.approx(0.70710678)
    assert wide["cf10", "n"]["LIF"] == "2"
    assert float(wide["cf10", "survey"]["LIF"]) == 92.98
    assert float(wide["cf10", "diff"]["LIF"]) == pytest.approx(92.5 - 92.98)
    assert [Path(p).name for p in wide["cf10", "runs"]["LIF"].split(";")] == ["lif_s1", "lif_s2"]


def test_missing_and_incomplete_cells(tables):
    out, _ = tables
    md = out / "accuracy.md"
    assert md_cell(md, "CIFAR10", "Tandem") == "— / 89.68"
    assert md_cell(md, "CIFAR10", "IF") == "— [1 incomplete] / 93.04"   # no summary.json
    assert md_cell(md, "CIFAR10", "CLIF") == "— [1 incomplete] / 93.21"  # summary, but 2 of 3 epochs
    assert md_cell(md, "Sequential CIFAR10", "LIF") == "— / 80.50"
    wide = read_wide(out / "accuracy.csv")
    assert wide["cf10", "ours"]["IF"] == "" and wide["cf10", "n"]["IF"] == "0"
    with open(out / "runs.csv", newline="") as f:
        status = {Path(r["path"]).name: r["status"] for r in csv.DictReader(f)}
    assert status == {"lif_s1": "finished", "lif_s2": "finished", "lif_alpha5": "finished", "lif_lr": "finished",
                      "if_running": "incomplete",
                      "clif_cut": "incomplete", "clif_sigmoid": "finished", "tebn_if": "finished", "osr": "finished",
                      "odd": "finished"}


def test_column_mapping_and_survey_surrogate(tables):
    out, found = tables
    columns = {r.path.name: r.column for r in found.runs}
    assert columns["tebn_if"] == "TEBN" and columns["osr"] == "OSR" and columns["odd"] is None
    md = out / "accuracy.md"
    # SHD: IF + TEBN at the survey's alpha 5; OSR at alpha 2 (the survey's OSR neuron kept ATan's default)
    assert md_cell(md, "SHD", "TEBN") == "75.00* / 74.54 (+0.46)"
    assert md_cell(md, "SHD", "OSR") == "41.00* / 40.93 (+0.07)"
    # other surrogates / alphas never enter the method tables (lif_alpha5 95 %, clif_sigmoid 90 %)
    assert "95.00" not in md.read_text() and "90.00" not in md.read_text()


def test_sop_speed_memory_tables(tables):
    out, _ = tables
    assert md_cell(out / "sop.md", "CIFAR10", "LIF") == "10.5 ± 0.70711 (n=2)*† / 10.095 (+0.405)"
    assert md_cell(out / "sop.md", "SHD", "TEBN") == "0.025* / 0.026191 (-0.0011909)"  # per step, corrected
    # median over epochs per run, then mean over the two seeds: (1500.5 + 1700.5) / 2
    assert md_cell(out / "train_speed.md", "CIFAR10", "LIF").startswith("1600.5 ± 141.4 (n=2)*† / 1659.6")
    assert md_cell(out / "memory.md", "CIFAR10", "LIF").startswith("4101 ± 141 (n=2)*† / 5009")  # max over epochs
    for name in ("accuracy", "sop", "train_speed", "test_speed", "memory"):
        assert (out / f"{name}.png").stat().st_size > 1000
    assert not (out / "coco_map.png").exists()  # survey-only table: no figure
    assert md_cell(out / "coco_map.md", "COCO", "CLIF") == "— / 0.228"


def test_surrogate_table(tables):
    out, _ = tables
    with open(out / "surrogates.csv", newline="") as f:
        rows = {(r["task"], r["model"], r["sg"], r["alpha"]): r for r in csv.DictReader(f)}
    lif2 = rows["cf10", "LIF", "atan", "2.0"]
    assert float(lif2["acc_mean"]) == pytest.approx(92.5) and lif2["n"] == "2"
    assert float(lif2["acc_std"]) == pytest.approx(0.70710678)
    assert float(rows["cf10", "LIF", "atan", "5.0"]["acc_mean"]) == pytest.approx(95.0)
    assert float(rows["cf10", "CLIF", "sigmoid", "4.0"]["acc_mean"]) == pytest.approx(90.0)
    assert ("cf10", "CLIF", "atan", "2.0") not in rows  # only an incomplete run
    assert float(rows["scf10", "lif+osr/bptt", "atan", "2.0"]["acc_mean"]) == pytest.approx(50.0)
    assert "| cf10 | LIF | atan | 2 | 92.50 ± 0.71 | 2 | 2 | 2 |" in (out / "surrogates.md").read_text()
    assert (out / "surrogates.png").exists()


def test_speed_table_against_survey(tables):
    out, found = tables
    assert len(found.speed) == 1
    with open(out / "speed.csv", newline="") as f:
        rows = {r["impl"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"loop", "psn"}  # the skipped row is left out
    assert float(rows["psn"]["ours_speedup"]) == pytest.approx(4.0)
    assert float(rows["loop"]["survey_ms"]) == pytest.approx(3.0512)  # survey speed_outs.csv, train N=512 T=4
    assert "| train | 512 | 4 | 2 / 3.051 | 0.5 / 0.7237 (×4.00 / ×4.22) |" in (out / "speed.md").read_text()


def test_tables_md_and_cli(tables, tmp_path, capsys):
    out, _ = tables
    text = (out / "tables.md").read_text()
    assert "### Test accuracy (%), best epoch" in text and "![Test accuracy (%), best epoch](accuracy.png)" in text
    assert "| `if_running` | cf10 | IF | atan | **incomplete** | 1/3 | 50.00 |" in text
    with pytest.raises(SystemExit) as stop:
        collect_results.main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert stop.value.code == 2 and "no such file or directory" in capsys.readouterr().err


@pytest.mark.parametrize("task, flags, column", [
    ("cf10", ["--neuron", "if"], "IF"), ("cf10", ["--neuron", "lif"], "LIF"), ("cf10", ["--neuron", "clif"], "CLIF"),
    ("cf10", ["--neuron", "psn"], "PSN"), ("cf10", ["--neuron", "sliding_psn"], None),
    ("scf10", ["--neuron", "sliding_psn"], "PSN"), ("shd", ["--neuron", "sliding_psn"], "PSN"),
    ("cf10", ["--norm", "tebn"], "TEBN"), ("cf10", ["--neuron", "if", "--norm", "tebn"], None),
    ("shd", ["--neuron", "if", "--norm", "tebn"], "TEBN"),
    ("cf10", ["--neuron", "online_lif", "--norm", "osr", "--method", "online"], "OSR"),
    ("shd", ["--neuron", "online_lif", "--norm", "osr"], "OSR"),
    ("cf10", ["--neuron", "blockalif"], "BlockALIF"), ("cf10", ["--method", "tandem"], "Tandem"),
    ("cf10", ["--method", "distill_response"], "KD-response"), ("cf10", ["--method", "distill_feature"], "KD-feature"),
    ("cf10", ["--method", "ann"], "ANN"), ("cf10", ["--neuron", "clif", "--norm", "tebn"], None),
    ("cf10", ["--method", "online"], None), ("scf10", ["--method", "tandem"], None),
])
def test_column_rules(task, flags, column):
    """A run's column is the table of record's cell with its --neuron/--norm/--method (per task)."""
    args = {**vars(cli.base_parser("test").parse_args(flags)), "task": task}
    assert collect_results.Run(Path("x"), args, [], None, None).column == column


def read_surrogates(out: Path) -> dict[tuple, dict]:
    with open(out / "surrogates.csv", newline="") as f:
        return {(r["task"], r["model"], r["sg"], r["alpha"]): r for r in csv.DictReader(f)}


def test_digits_sweep_csv(tmp_path):
    """scripts/digits_sweep.py CSVs (one per seed) feed the surrogate table, unless its run directories are there."""
    for seed, (atan, rect) in enumerate((("0.97", "0.90"), ("0.95", "0.92"))):
        folder = tmp_path / "digits" / f"s{seed}"
        folder.mkdir(parents=True)
        with open(folder / "digits_sweep.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["surrogate", "alpha", "best_test_acc", "best_epoch", "epochs", "seconds"])
            writer.writerows([["atan", 2.0, atan, 5, 12, 3.1], ["rect", 1.0, rect, 7, 12, 2.4]])
    collect_results.collect([tmp_path / "digits"], tmp_path / "out")
    rows = read_surrogates(tmp_path / "out")
    assert float(rows["digits", "LIF", "atan", "2.0"]["acc_mean"]) == pytest.approx(96.0)
    assert float(rows["digits", "LIF", "atan", "2.0"]["acc_std"]) == pytest.approx(2 ** 0.5)
    assert rows["digits", "LIF", "rect", "1.0"]["n"] == "2" and rows["digits", "LIF", "rect", "1.0"]["epochs"] == "12"
    write_run(tmp_path / "digits" / "s0", "digits_atan", [0.5], task="digits", flags=["--sg", "atan"])
    collect_results.collect([tmp_path / "digits"], tmp_path / "out2")
    rows = read_surrogates(tmp_path / "out2")
    assert list(rows) == [("digits", "LIF", "atan", "2.0")] and rows["digits", "LIF", "atan", "2.0"]["n"] == "1"


def test_a_half_written_metrics_row_makes_the_run_incomplete(tmp_path, capsys):
    run_dir = write_run(tmp_path, "live", [0.5, 0.6], flags=["--neuron", "if"], epochs=3, finished=False)
    with open(run_dir / "metrics.csv", "a") as f:
        f.write("2,0.9")  # the engine is appending epoch 2
    run = collect_results.Run.read(run_dir)
    assert not run.finished and run.metrics == []
    assert "its epochs are not counted" in capsys.readouterr().err


def _runs_csv(out: Path) -> dict[str, dict]:
    with open(out / "runs.csv", newline="") as f:
        return {Path(r["path"]).name: r for r in csv.DictReader(f)}


def test_runs_differing_from_the_survey_cell_are_marked(tmp_path):
    root = tmp_path / "runs"
    cf10 = ["--T", "4", "--epochs", "256", "-b", "128", "--amp", "--opt", "sgd", "--lr", "0.1"]  # spec §1
    write_run(root, "lif_T8", [0.90] * 256, flags=[*cf10, "--neuron", "lif", "-T", "8"])
    write_run(root, "if_ok", [0.91] * 256, flags=[*cf10, "--neuron", "if"])
    write_run(root, "tebn_lr", [0.91] * 256, flags=[*cf10, "--neuron", "lif", "--norm", "tebn", "--lr", "0.05"])
    out = tmp_path / "out"
    collect_results.collect([root], out)
    runs = _runs_csv(out)
    assert runs["lif_T8"]["differs"] == "T=8 (survey 4)"
    assert runs["if_ok"]["differs"] == ""
    assert runs["tebn_lr"]["differs"] == "lr=0.05 (survey 0.1)"
    assert md_cell(out / "accuracy.md", "CIFAR10", "LIF").startswith("90.00* / ")
    assert md_cell(out / "accuracy.md", "CIFAR10", "IF").startswith("91.00 / ")  # T, epochs as the survey's
    assert "| T=8 (survey 4) |" in (out / "tables.md").read_text()


def test_one_seed_counts_once(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "a", "lif_s1", [0.90], flags=["--neuron", "lif", "--seed", "1"])
    write_run(root / "b", "lif_s1_copy", [0.80], flags=["--neuron", "lif", "--seed", "1"])  # same config and seed
    write_run(root / "a", "lif_s2", [0.70], flags=["--neuron", "lif", "--seed", "2"])
    out = tmp_path / "out"
    collect_results.collect([root, root / "a"], out)  # overlapping paths find a/ twice
    # seeds 1 and 2 once each: (90 + 70) / 2 = 80 +- 14.14, not 3 or 4 values
    assert md_cell(out / "accuracy.md", "CIFAR10", "LIF").startswith("80.00 ± 14.14 (n=2)")
    runs = _runs_csv(out)
    assert len(runs) == 3 and runs["lif_s1_copy"]["status"] == "duplicate" and runs["lif_s1"]["status"] == "finished"


def test_digits_rows_of_one_seed_count_once(tmp_path):
    row = {"surrogate": "atan", "alpha": "2.0", "best_test_acc": "0.9", "best_epoch": "0", "epochs": "1",
           "seconds": "1.0", "T": "4", "channels": "4", "lr": "0.01", "batch_size": "64", "seed": "0"}
    for folder in ("a", "b"):  # two copies of one sweep's CSV
        (tmp_path / folder).mkdir()
        with open(tmp_path / folder / "digits_sweep.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, list(row))
            writer.writeheader()
            writer.writerow(row)
    out = tmp_path / "out"
    collect_results.collect([tmp_path], out)
    with open(out / "surrogates.csv", newline="") as f:
        (only,) = list(csv.DictReader(f))
    assert only["n"] == "1"


def test_runs_without_the_cells_survey_quirks_are_marked(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "clif_plain", [0.9], flags=["--neuron", "clif"])
    write_run(root, "clif_survey", [0.9], flags=["--neuron", "clif", "--survey-quirk", "clif_sigmoid_carry"])
    out = tmp_path / "out"
    collect_results.collect([root], out)
    runs = _runs_csv(out)
    assert "quirks=none (survey clif_sigmoid_carry)" in runs["clif_plain"]["differs"]
    assert "quirks" not in runs["clif_survey"]["differs"]


# ------------------------------------------------------------------------------------------------ Gen1 and COCO
def write_detection_run(root: Path, task: str, name: str, argv: list[str], epochs: int, summary: dict,
                        sop: dict | None = None) -> Path:
    """A run directory of SFOD/pretrain.py (ncars), SFOD/train.py (sfod) or coco/train.py (coco): args.json from the
    script's own parser, one metrics row per epoch, summary.json and sop.json as those scripts write them."""
    import importlib

    script = {"ncars": "SFOD.pretrain", "sfod": "SFOD.train", "coco": "coco.train"}[task]
    args = cli.parse(importlib.import_module(script).build_parser(), argv)
    run_dir = root / name
    log = RunLog(run_dir)
    rundir.write_args_once(run_dir, json.loads(json.dumps({**vars(args), "task": task, "argv": argv}, default=str)))
    for epoch in range(epochs):
        log.log_epoch({"epoch": epoch, "train_loss": 1.0 / (epoch + 1), "test_AP": 0.1, "test_AP50": 0.2})
    log.close()
    log.write_summary({"finished": True, "epochs": args.epochs, "epochs_done": epochs, **summary})
    for mode, result in (sop or {}).items():
        write_sop_json(run_dir, {"mode": mode, **result})
    return run_dir


@pytest.fixture(scope="module")
def detection(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    base = ["--out-dir", str(root), "--device", "cpu"]
    write_detection_run(root, "ncars", "pretrain_lif", ["--epochs", "30", "-b", "64", "--lr", "0.005", "--neuron",
                                                        "lif", *base], 12,  # early stopping after 12 of 30 epochs
                        {"stopped_early": True, "best_test_acc": 0.93})
    gen1 = ["--epochs", "50", "-b", "16", "--neuron", "lif", "--norm", "bn", *base]
    write_detection_run(root, "sfod", "lif", [*gen1, "--lr", "0.001", "--backbone-ckpt", str(root / "pretrain_lif")],
                        50, {"final_test_AP": 0.2, "final_test_AP50": 0.42, "best_test_AP": 0.25},
                        sop={"gen1_survey": {"sop_m_per_step": 300.0, "sop_m_per_sample": 1500.0}})
    write_detection_run(root, "sfod", "clif_plain", ["--epochs", "50", "--neuron", "clif", "--lr", "0.001", *base],
                        50, {"final_test_AP": 0.1, "final_test_AP50": 0.2})  # no backbone, lr, no survey quirk
    write_detection_run(root, "coco", "if", ["--epochs", "100", "-b", "16", "--img-size", "640", "--neuron", "if",
                                             "--survey-quirk", "lr_schedule_lag", "--survey-quirk", "frozen_tebn_p",
                                             "--survey-quirk", "fp16_best", *base], 100,
                        {"final_eval": {"test_AP": 0.2, "test_AP50": 0.4}, "final_test_AP": 0.9},
                        sop={"coco_survey": {"sop_m_per_sample": 360000.0, "sop_m_per_step": 72000.0}})
    out = tmp_path_factory.mktemp("det_tables")
    collect_results.collect([root], out)
    return out


def test_gen1_final_weights_beside_the_survey(detection):
    # survey (spec §2.8): LIF mAP@0.5 0.43992, mAP 0.21057, SOP 296.33485; N-CARS 91.69 %
    assert md_cell(detection / "gen1_map50.md", "Gen1", "LIF") == "0.4200 / 0.4399 (-0.0199)"
    assert md_cell(detection / "gen1_map.md", "Gen1", "LIF") == "0.2000 / 0.2106 (-0.0106)"  # final, not best
    assert md_cell(detection / "gen1_sop.md", "Gen1", "LIF") == "300 / 296.33 (+3.6651)"
    # an early-stopped pre-training run is finished
    assert md_cell(detection / "gen1_pretrain_acc.md", "N-CARS (Gen1 backbone)", "LIF") == "93.00 / 91.69 (+1.31)"


def test_coco_pycocotools_stats_beside_the_survey(detection):
    # survey (spec §3.8): IF AP 0.225, AP50 0.409, printed SOP 363786.74275; ours from summary.json final_eval
    assert md_cell(detection / "coco_map.md", "COCO", "IF") == "0.200 / 0.225 (-0.025)"
    assert md_cell(detection / "coco_map50.md", "COCO", "IF") == "0.400 / 0.409 (-0.009)"
    assert md_cell(detection / "coco_sop.md", "COCO", "IF") == "360000 / 363786.7 (-3786.743)"


def test_detection_runs_differing_from_their_cell_are_marked(detection):
    runs = _runs_csv(detection)
    assert runs["lif"]["differs"] == "" and runs["if"]["differs"] == "" and runs["pretrain_lif"]["differs"] == ""
    assert runs["clif_plain"]["differs"] == ("lr=0.001 (survey 0.0001); backbone_ckpt=none (survey: the run of "
                                             "ncars:pretrain_clif); quirks=none (survey clif_sigmoid_carry)")
    assert md_cell(detection / "gen1_map.md", "Gen1", "CLIF") == "0.1000* / 0.0902 (+0.0098)"
