"""``SFOD/train.py`` (Gen1 detection) on tiny fixtures: the CLI at the full 240x304 shape with a backbone from a
pre-training run, recipe defaults, training loss falling and exact resume on a smaller sensor (128x160: the task
builds the model for the sensor of its samples), SOP of a run's final weights, bad --data-dir."""
import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from common import checkpoint, cli, engine
from common import survey as record
from common.neuron import NeuronConfig
from common.runlog import read_metrics
from common.state import reset_net
from SFOD import gen1, pretrain, recipe, train
from SFOD.model import NCarsClassifier, SpikingSSD, survey_neuron_config
from tests.sfod.fake_prophesee import small_gen1, synthetic_gen1, write_ncars

ROOT = Path(__file__).resolve().parents[2]
CPU = ["--device", "cpu", "--workers", "0"]
SMALL = gen1.Gen1Params(T=1, height=128, width=160)
GEN1 = record.select("sfod")  # the survey's Gen1 cells (table of record)
COCO_COLUMNS = ["test_AP", "test_AP50", "test_AP75", "test_APs", "test_APm", "test_APl", "test_AR1", "test_AR10",
                "test_AR100", "test_ARs", "test_ARm", "test_ARl"]


def run_dir_of(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory):
    """A one-epoch N-CARS pre-training run directory."""
    tmp = tmp_path_factory.mktemp("pretrain")
    root = write_ncars(tmp / "ncars", n_per_class=2)
    pretrain.main(["--data-dir", str(root), "--out-dir", str(tmp / "runs"), *CPU, "-T", "2", "-b", "2",
                   "--epochs", "1", "--limit-batches", "1"])
    return run_dir_of(tmp / "runs")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, pretrain_run):
    """``SFOD/train.py`` at the full Gen1 shape: one epoch of one batch, backbone from ``pretrain_run``."""
    tmp = tmp_path_factory.mktemp("gen1")
    root = synthetic_gen1(tmp / "gen1", n_recordings=1, splits=("train", "test"))
    summary = train.main(["--data-dir", str(root), "--out-dir", str(tmp / "runs"), *CPU, "-T", "2", "-b", "1",
                          "--epochs", "1", "--limit-batches", "1", "--backbone-ckpt", str(pretrain_run)])
    return root, run_dir_of(tmp / "runs"), summary


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    return small_gen1(tmp_path_factory.mktemp("small"), sensor=(SMALL.height, SMALL.width))


def fit_small(root, out, *flags, T: int = 1):
    args = cli.parse(train.build_parser(), ["--data-dir", str(root), "--out-dir", str(out), *CPU, "-b", "2",
                                            "-T", str(T), "--limit-batches", "1", *flags])
    return engine.fit(args, train.build_task(args, replace(SMALL, T=T)), engine.setup(args))


def test_recipe_defaults_and_survey_lr():
    parse = train.build_parser().parse_args
    args = parse([])
    assert (args.epochs, args.batch_size, args.opt, args.lr, args.wd, args.lr_schedule, args.lr_min) == \
        (50, 16, "adamw", 1e-3, 1e-4, "cosine", 1e-5)
    assert (args.amp, args.clip_grad_norm, args.T, args.seed) == (True, 1.0, 5, 2025)
    assert parse(["--neuron", "clif"]).lr == 1e-4
    assert parse(["--neuron", "online_lif", "--norm", "osr"]).lr == 1e-4
    assert parse(["--neuron", "sliding_psn"]).lr == 1e-3
    assert parse(["--neuron", "clif", "--lr", "0.01"]).lr == 0.01
    assert recipe.neuron_config(parse(["--neuron", "sliding_psn"])).extra == {"k": 3}
    assert recipe.neuron_config(parse(["--neuron", "blockalif"])).surrogate == "fast_sigmoid"


def test_survey_cells_are_valid_command_lines(tmp_path):
    assert [c.column for c in GEN1] == ["IF", "LIF", "CLIF", "PSN", "TEBN", "OSR", "BlockALIF"]
    for cell in GEN1:
        args = cli.parse(train.build_parser(), record.train_args(cell, str(tmp_path)))
        assert args.lr == (1e-4 if cell.column in ("CLIF", "OSR") else 1e-3) == train.survey_lr(args)  # spec §2.6
        assert len(cell.stats) == 12 and cell.stats["AP50"] >= cell.stats["AP"]
        backbone = cli.parse(pretrain.build_parser(), record.train_args(record.dependency(cell), str(tmp_path)))
        assert (backbone.neuron, backbone.norm) == (args.neuron, args.norm)
        assert args.backbone_ckpt == f"{tmp_path}/ncars/survey/{backbone.run_name}"
    assert record.find("sfod", "TEBN").stats["AP50"] == pytest.approx(0.5213, abs=1e-4)


@pytest.mark.parametrize("column", [c.column for c in GEN1])
def test_every_survey_variant_builds_trains_and_scores(column, tmp_path):
    """Each variant's flags (survey quirks included) through the task: loss, backward, COCO evaluator."""
    cell = record.find("sfod", column)
    args = cli.parse(train.build_parser(), [*record.train_args(cell, str(tmp_path)), *CPU, "-T", "2"])
    torch.manual_seed(0)
    task = train.build_task(args, replace(SMALL, T=2))
    osr = [m for m in task.model.modules() if hasattr(m, "fold_next_batch")]
    is_osr = cell.flag("--norm") == "osr"
    assert all(m.fold_next_batch for m in osr) and bool(osr) == is_osr  # the quirk reached the norms
    x = (torch.rand(2, 2, 4, SMALL.height, SMALL.width) < 0.05).float()
    targets = [{"boxes": torch.tensor([[10.0, 20, 60, 56]]), "labels": torch.tensor([0])},
               {"boxes": torch.tensor([[80.0, 40, 110, 90]]), "labels": torch.tensor([1])}]
    loss = task.train_loss(task.model(x), targets)
    loss.backward()
    assert torch.isfinite(loss)
    reset_net(task.model)
    task.model.eval()
    with torch.no_grad():
        outputs = task.model(x)
    evaluator = task.make_evaluator()
    evaluator.update(outputs, targets, {})
    assert set(evaluator.compute()) == {c[len("test_"):] for c in COCO_COLUMNS}


def test_cli_full_size_run_directory(full_run, pretrain_run):
    _, run_dir, summary = full_run
    rows = read_metrics(run_dir / "metrics.csv")
    assert len(rows) == 1 and set(COCO_COLUMNS) <= set(rows[0])
    assert summary["best_metric"] == "test_AP" and "final_test_AP" in summary
    recorded = json.loads((run_dir / "args.json").read_text())
    assert recorded["task"] == "sfod" and recorded["lr"] == 1e-3 and recorded["wd"] == 1e-4
    init = recorded["backbone_init"]
    best = pretrain_run / checkpoint.BEST
    assert init["checkpoint"] == str(best.resolve()) and init["task"] == "ncars"
    assert init["sha256"] == hashlib.sha256(best.read_bytes()).hexdigest()
    assert init["reinitialised"] == [] and init["missing"] == []


def test_backbone_loaded_from_a_pretrain_run_dir(pretrain_run):
    torch.manual_seed(0)
    model = SpikingSSD(NeuronConfig(name="lif", T=2), "bn", 2, image_size=(128, 160))
    head = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    info = train.load_backbone(model, pretrain_run)
    saved = checkpoint.load(pretrain_run / checkpoint.BEST)["model"]
    expected = {k: v for k, v in saved.items() if k.startswith("backbone.")}
    assert info["loaded"] == len(expected) == len([k for k in model.state_dict() if k.startswith("backbone.")])
    for key, value in expected.items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    for key, value in head.items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)


def test_blockalif_neuron_parameters_start_fresh(tmp_path):
    cfg = survey_neuron_config(NeuronConfig(name="blockalif", T=1))
    pre = NCarsClassifier(cfg, "bn", 1)
    checkpoint.save_atomic({"model": pre.state_dict(), "task": "ncars", "args": {"neuron": "blockalif"}},
                           tmp_path / "pre.pt")
    torch.manual_seed(1)
    model = SpikingSSD(cfg, "bn", 1, image_size=(128, 160))
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    info = train.load_backbone(model, tmp_path / "pre.pt")
    assert info["reinitialised"] and all(k.rsplit(".", 1)[-1] in ("beta_raw", "p_raw", "b_raw")
                                         for k in info["reinitialised"])
    for key in info["reinitialised"]:
        torch.testing.assert_close(model.state_dict()[key], fresh[key], rtol=0, atol=0)
    torch.testing.assert_close(model.backbone.stem_unit.conv[0].weight, pre.backbone.stem_unit.conv[0].weight)


def test_training_loss_falls(small_root, tmp_path, capsys):
    fit_small(small_root, tmp_path, "--epochs", "4", "--limit-batches", "2", T=2)
    losses = [r["train_loss"] for r in read_metrics(run_dir_of(tmp_path) / "metrics.csv")]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses
    assert "skipped" not in capsys.readouterr().err


def test_resume_is_exact(small_root, tmp_path, capsys):
    fit_small(small_root, tmp_path / "a", "--epochs", "2", T=2)
    fit_small(small_root, tmp_path / "b", "--epochs", "2", "--stop-after", "1", T=2)
    run_b = run_dir_of(tmp_path / "b")
    fit_small(small_root, tmp_path / "b", "--epochs", "2", "--resume", str(run_b), T=2)
    keys = ["epoch", "train_loss", "test_loss", "lr", *COCO_COLUMNS]
    rows_a = read_metrics(run_dir_of(tmp_path / "a") / "metrics.csv")
    rows_b = read_metrics(run_b / "metrics.csv")
    assert [[r[k] for k in keys] for r in rows_b] == [[r[k] for k in keys] for r in rows_a]
    assert "skipped" not in capsys.readouterr().err  # the steps really changed the weights


def test_sop_of_the_final_weights(full_run):
    root, run_dir, _ = full_run
    result = train.main(["--sop", "--resume", str(run_dir), *CPU, "-b", "1", "--limit-batches", "1"])
    saved = json.loads((run_dir / "sop.json").read_text())["gen1_survey"]
    assert saved["checkpoint"] == str(run_dir / checkpoint.LATEST) and saved["n_samples"] == 1
    assert saved["sop_m_per_step"] == pytest.approx(result["sop_m_per_step"]) and result["sop_m_per_step"] > 0
    # the stem's rate is the mean of the zero-padded event counts of the first test sample (by hand from the data)
    x, _, _ = gen1.load_split(root, "test", root / "cache", gen1.Gen1Params(T=2), progress=False)[0]
    stem = next(layer for layer in saved["per_layer"] if layer["name"] == "backbone.stem_unit.conv.0")
    assert stem["rate"] == pytest.approx(F.pad(x, (1, 1, 1, 1)).mean().item(), rel=1e-6)
    assert stem["ops_per_step"] == (9 * 4 * 32 + 32) * 120 * 152


@pytest.mark.parametrize("how", ["missing", "empty"])
def test_bad_data_dir_is_one_line(tmp_path, how):
    data = tmp_path / "gen1"
    if how == "empty":
        (data / "train").mkdir(parents=True)
    command = ["-m", "SFOD.train"] if how == "missing" else ["SFOD/train.py"]
    proc = subprocess.run([sys.executable, *command, "--data-dir", str(data), "--no-amp", "--device", "cpu",
                           "--out-dir", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and str(data) in lines[0], proc.stderr
    assert proc.returncode == (2 if how == "missing" else 3)
    assert not (tmp_path / "out").exists()
