"""coco/train.py end to end on the tiny fixture: the recipe's defaults, the lagged schedule against the survey's own
loop and logged numbers, a CLI run whose loss falls, the final pycocotools evaluation, exact resume, SOP, bad input;
and the engine's ``final_eval`` hook on the tiny engine task."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from coco import evaluate, postprocess, schedule
from coco import train as coco_train
from common import checkpoint, engine, optim
from common.coco_eval import STAT_KEYS
from common.runlog import read_metrics
from tests.coco.fake_coco import KNOWN_91, write_fake_coco
from tests.common.tiny_engine_task import tiny_args, tiny_task

REPO = Path(__file__).resolve().parents[2]
SMOKE = ("--img-size", "64", "-b", "2", "--workers", "0", "--device", "cpu", "-T", "1")


def run_dir_of(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_fake_coco(tmp_path_factory.mktemp("data"), n_train=8, n_val=6)


def ground_truth_detections(outputs, extras, *args, **kwargs):
    """Stand-in for ``postprocess.detections``: every labelled box of the batch's images, read from their label
    files and scaled to original pixels here (score 1)."""
    dets = []
    for path, (h0, w0) in zip(extras["paths"], extras["orig_shapes"].tolist()):
        rows = np.loadtxt(path.replace("/images/", "/labels/").rsplit(".", 1)[0] + ".txt", ndmin=2)
        cx, cy, w, h = rows[:, 1] * w0, rows[:, 2] * h0, rows[:, 3] * w0, rows[:, 4] * h0
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, np.ones(len(rows)), rows[:, 0]], 1)
        dets.append(torch.tensor(boxes, dtype=torch.float32))
    return dets


@pytest.fixture(scope="module")
def finished_run(root, tmp_path_factory):
    """4 epochs x 3 batches through the CLI entry point, with detections = ground truth at evaluation time."""
    out = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(postprocess, "detections", ground_truth_detections)
        coco_train.main(["--data-dir", str(root), "--out-dir", str(out), "--epochs", "4", "--limit-batches", "3",
                         *SMOKE])
    return run_dir_of(out)


def test_recipe_defaults_and_nominal_batch(root, tmp_path):
    args = coco_train.parse(["--data-dir", str(root), "--out-dir", str(tmp_path)])
    assert (args.epochs, args.batch_size, args.img_size, args.T, args.seed) == (100, 16, 640, 5, 0)
    assert (args.lr, args.momentum, args.nesterov, args.wd, args.lrf) == (0.01, 0.937, True, 5e-4, 0.1)
    assert (args.warmup_epochs, args.warmup_min_iters, args.warmup_momentum, args.warmup_bias_lr) == (3, 1000, 0.8,
                                                                                                       0.1)
    assert (args.ema_decay, args.ema_ramp, args.tau, args.sg, args.sg_alpha) == (0.9999, 2000, 2.0, "atan", 2.0)
    assert args.accumulate == 4 and args.amp == torch.cuda.is_available()
    conv = nn.Conv2d(1, 1, 1)
    for b, accumulate in (("2", 32), ("48", 1), ("100", 1)):  # max(round(64 / b), 1)
        args = coco_train.parse(["--data-dir", str(root), "--out-dir", str(tmp_path), "-b", b])
        assert args.accumulate == accumulate
        groups = {g["name"]: g for g in coco_train.build_task(args).param_groups(conv)}
        assert groups["decay"]["weight_decay"] == pytest.approx(5e-4 * int(b) * accumulate / 64)
    assert coco_train.parse(["--data-dir", str(root), "--out-dir", str(tmp_path), "-b", "2",
                             "--accumulate", "3"]).accumulate == 3
    # under DDP the training loss is summed over the processes (YOLOv5's loss *= WORLD_SIZE), the test loss is not
    task = coco_train.build_task(args, n_processes=3)
    outputs = [torch.randn(2, 3, 4, 4, 85), torch.randn(2, 3, 2, 2, 85)]
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 30.0]]), "labels": torch.tensor([1])}] * 2
    assert task.train_loss(outputs, targets) == pytest.approx(3 * task.test_loss(outputs, targets).item())


def _survey_lrs(nb: int, epochs: int, lrf: float = 0.1, lr0: float = 0.01) -> list[tuple[float, float]]:
    """(lr of the weight groups, lr of the bias group) per iteration, written out from YOLOv5 v6.0's train.py loop:
    the LambdaLR's last_epoch reset to -1, per-iteration warm-up towards lr0 lf(epoch), scheduler.step per epoch."""
    lf = lambda e: ((1 - math.cos(e * math.pi / epochs)) / 2) * (lrf - 1) + 1  # noqa: E731
    nw = max(round(3 * nb), 1000)
    lr, bias_lr, sched_epoch, out = lr0, lr0, -1, []
    for epoch in range(epochs):
        for i in range(nb):
            ni = i + nb * epoch
            if ni <= nw:
                lr = np.interp(ni, [0, nw], [0.0, lr0 * lf(epoch)])
                bias_lr = np.interp(ni, [0, nw], [0.1, lr0 * lf(epoch)])
            out.append((lr, bias_lr))
        sched_epoch += 1
        lr = bias_lr = lr0 * lf(sched_epoch)
    return out


@pytest.mark.parametrize("nb", [400, 250])  # warm-up ends at an epoch boundary (3 nb = 1200) / inside epoch 4
def test_lagged_schedule_follows_the_survey_loop(nb):
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(optim.decay_groups(model, 5e-4), lr=0.01, momentum=0.937, nesterov=True)
    args = type("Args", (), dict(epochs=8, lrf=0.1, survey_quirks=["lr_schedule_lag"]))()
    sched, interval = schedule.make_scheduler(opt, args, nb)
    warm = optim.Warmup(max(round(3 * nb), 1000), 0.1, 0.8, 0.937, 4)
    groups = {g["name"]: g for g in opt.param_groups}
    got = []
    for epoch in range(args.epochs):
        for i in range(nb):
            warm.apply(opt, sched, i + nb * epoch)
            got.append((groups["decay"]["lr"], groups["bias"]["lr"]))
        opt.step()
        sched.step()
    assert interval == "epoch"
    np.testing.assert_allclose(got, _survey_lrs(nb, args.epochs), rtol=1e-12, atol=1e-15)


def test_lagged_schedule_reproduces_the_logged_survey_lrs():
    """Spec §3.6: epoch-0 row lrs 0.0033329 / 0.070004 (nb = 7,393, warm-up 22,179 iterations); epoch-99 row
    0.0010089 = 0.01 lf(98). Without the quirk epoch 99 runs at 0.01 lf(99)."""
    model = nn.Linear(2, 2)
    for quirk, expected_99 in ((["lr_schedule_lag"], 0.0010089), ([], 0.0010022)):
        opt = torch.optim.SGD(optim.decay_groups(model, 5e-4), lr=0.01, momentum=0.937)
        args = type("Args", (), dict(epochs=100, lrf=0.1, survey_quirks=quirk))()
        sched, _ = schedule.make_scheduler(opt, args, 7393)
        optim.Warmup(22179, 0.1, 0.8, 0.937, 4).apply(opt, sched, 7392)
        groups = {g["name"]: g for g in opt.param_groups}
        assert round(groups["decay"]["lr"], 7) == 0.0033329 and round(groups["bias"]["lr"], 6) == 0.070004
        for _ in range(99):
            opt.step()
            sched.step()
        assert round(groups["decay"]["lr"], 7) == expected_99


def test_frozen_tebn_p_quirk():
    from coco import model as M
    from coco.param_groups import param_groups

    model = M.build_model(M.neuron_config("lif", T=2), "tebn", T=2, img_size=64)
    p_ids = {id(p) for name, p in model.named_parameters() if name.endswith(".p")}
    assert len(p_ids) == 25
    default = {id(p) for g in param_groups(model, 5e-4) for p in g["params"]}
    survey = {id(p) for g in param_groups(model, 5e-4, survey=True) for p in g["params"]}
    assert default == {id(p) for p in model.parameters()} and p_ids.isdisjoint(survey)
    assert default - survey == p_ids


def test_cli_run_loss_falls_and_final_pycocotools_evaluation(finished_run, root):
    rows = read_metrics(finished_run / "metrics.csv")
    epochs, final = rows[:-1], rows[-1]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3, 3]
    assert epochs[-1]["train_loss"] < 0.8 * epochs[0]["train_loss"], [r["train_loss"] for r in epochs]
    for r in epochs:  # per epoch: the YOLOv5 metric (101-point AP, 0.995 for a perfect detector)
        assert r["test_AP"] == pytest.approx(0.995) and r["test_fitness"] == pytest.approx(0.995)
        assert all(math.isnan(r[f"test_{k}"]) for k in STAT_KEYS if k not in ("AP", "AP50"))
    # last row: pycocotools on checkpoint_best.pt (1.0 for ground truth), the YOLO-only columns empty
    assert all(final[f"test_{k}"] == pytest.approx(1.0) for k in ("AP", "AP50", "AP75", "AR100"))
    assert math.isnan(final["test_fitness"]) and math.isnan(final["train_loss"])
    summary = json.loads((finished_run / "summary.json").read_text())
    assert list(summary["final_eval"]) == [f"test_{k}" for k in STAT_KEYS]
    assert summary["final_eval"]["test_AP"] == pytest.approx(1.0)
    records = json.loads((finished_run / evaluate.PREDICTIONS).read_text())
    gt = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    seen = {r["image_id"] for r in records}
    assert seen == {im["id"] for im in gt["images"]}  # 3 batches of 2 = all 6 images
    assert len(records) == sum(a["image_id"] in seen for a in gt["annotations"])
    assert {r["category_id"] for r in records} <= set(KNOWN_91.values())


def test_resume_after_one_epoch_equals_the_uninterrupted_run(root, tmp_path):
    common = ["--data-dir", str(root), "--epochs", "2", "--limit-batches", "2", "--no-final-eval", *SMOKE]
    coco_train.main([*common, "--out-dir", str(tmp_path / "a")])
    coco_train.main([*common, "--out-dir", str(tmp_path / "b"), "--stop-after", "1"])
    b = run_dir_of(tmp_path / "b")
    coco_train.main(["--resume", str(b), "--device", "cpu"])
    a = run_dir_of(tmp_path / "a")
    keys = ("epoch", "train_loss", "test_loss", "test_P", "test_R", "test_AP50", "test_AP", "lr")
    assert [[r[k] for k in keys] for r in read_metrics(b / "metrics.csv")] == \
        [[r[k] for k in keys] for r in read_metrics(a / "metrics.csv")]
    ckpt_a, ckpt_b = (checkpoint.load(d / checkpoint.LATEST) for d in (a, b))
    assert ckpt_a["ema"]["updates"] == ckpt_b["ema"]["updates"] > 0
    assert ckpt_a["iteration"] == ckpt_b["iteration"] == 4
    for part in ("model", "ema"):
        state_a = ckpt_a[part] if part == "model" else ckpt_a[part]["model"]
        state_b = ckpt_b[part] if part == "model" else ckpt_b[part]["model"]
        for name, value in state_a.items():
            assert torch.equal(value, state_b[name]), (part, name)


def test_sop_in_both_modes(root, tmp_path):
    coco_train.main(["--data-dir", str(root), "--out-dir", str(tmp_path), "--epochs", "1", "--limit-batches", "1",
                     "--no-final-eval", *SMOKE, "-T", "4", "--neuron", "if"])  # spikes at init (LIF or T = 1: none)
    run = run_dir_of(tmp_path)
    results = {mode: coco_train.main(["--sop", "--resume", str(run), "--sop-mode", mode, "--device", "cpu",
                                      "--limit-batches", "2"]) for mode in ("corrected", "coco_survey")}
    stored = json.loads((run / "sop.json").read_text())
    assert set(stored) == {"corrected", "coco_survey"} and stored["coco_survey"]["n_samples"] == 4
    corrected, paper = (results[m]["per_layer"] for m in ("corrected", "coco_survey"))
    spiking_sop = {"corrected": 0.0, "coco_survey": 0.0}
    for c, p in zip(corrected, paper):
        assert c["rate"] == p["rate"] and (0 <= c["rate"] <= 1 or not c["spiking"])
        c_out, h, w = c["out_shape"]
        # survey's formula: (k^2 C_in C_out + C_out) C_out H W  vs  k^2 C_in C_out H W
        assert p["ops_per_step"] == pytest.approx((c["ops_per_step"] + c_out * h * w) * c_out)
        if c["spiking"]:
            spiking_sop["corrected"] += c["rate"] * c["ops_per_step"] / 1e6
            spiking_sop["coco_survey"] += p["rate"] * p["ops_per_step"] / 1e6
    for mode in ("corrected", "coco_survey"):
        assert results[mode]["sop_m_per_step"] == pytest.approx(spiking_sop[mode])
        assert results[mode]["sop_m_per_sample"] == pytest.approx(4 * spiking_sop[mode])
    assert spiking_sop["corrected"] > 0 and "flops_m" in results["coco_survey"]["extras"]
    assert results["corrected"]["extras"] == {}


@pytest.mark.parametrize("how", ["script", "module"])
def test_bad_data_dir_is_one_line(tmp_path, how):
    entry = [str(REPO / "coco" / "train.py")] if how == "script" else ["-m", "coco.train"]
    data_dir = tmp_path / "missing" if how == "script" else tmp_path
    proc = subprocess.run([sys.executable, *entry, "--data-dir", str(data_dir), "--out-dir", str(tmp_path / "o"),
                           "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert str(data_dir) in proc.stderr
    assert not (tmp_path / "o").exists()


def test_list_without_images_is_a_data_error(root, tmp_path, capsys):
    (tmp_path / "train2017.txt").write_text("./images/train2017/missing.txt\n")
    for name in ("val2017.txt", "annotations"):
        (tmp_path / name).symlink_to(root / name)
    with pytest.raises(SystemExit) as exc:
        from common import cli

        cli.main_guard(lambda: coco_train.main(["--data-dir", str(tmp_path), "--out-dir", str(tmp_path / "o"),
                                                *SMOKE]))
    assert exc.value.code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "names no images" in err[0]


def test_engine_final_eval_hook_runs_once_after_the_last_epoch(tmp_path):
    calls = []

    def final_eval(run_dir, best, env):
        calls.append(best)
        assert best == run_dir / checkpoint.BEST and best.is_file()
        return {"test_acc": 0.25, "test_extra": 1.0}  # test_extra: not a metrics.csv column, summary only

    args = tiny_args(tmp_path, "--epochs", "2")
    engine.fit(args, tiny_task(final_eval=final_eval), engine.setup(args))
    run_dir = run_dir_of(tmp_path)
    rows = read_metrics(run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows] == [0, 1, 1] and len(calls) == 1
    assert rows[-1]["test_acc"] == 0.25 and math.isnan(rows[-1]["train_loss"]) and "test_extra" not in rows[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final_eval"] == {"test_acc": 0.25, "test_extra": 1.0}
    again = tiny_args(tmp_path, "--epochs", "2", "--resume", str(run_dir))
    engine.fit(again, tiny_task(final_eval=final_eval), engine.setup(again))
    assert len(calls) == 1 and len(read_metrics(run_dir / "metrics.csv")) == 3


def test_survey_commands_parse_with_their_quirks(root, tmp_path):
    """The table of record's COCO cells (common.survey) parse with this script's parser (spec §3.6, §3.8)."""
    from common import survey

    cells = {c.column: c for c in survey.select("coco")}
    assert cells["CLIF"].stats["AP"] == 0.228 and cells["OSR"].stats["ARl"] == 0.335
    training = {"lr_schedule_lag", "frozen_tebn_p", "fp16_best"}
    expected = {"CLIF": ("clif", "bn", {"clif_sigmoid_carry"}), "TEBN": ("lif", "tebn", set()),
                "LIF": ("lif", "bn", set()), "IF": ("if", "bn", set()), "PSN": ("sliding_psn", "bn", set()),
                "TEBN-IF": ("if", "tebn", set()),
                "OSR": ("online_lif", "osr", {"ots_batch_eval", "osr_fold_next_batch"})}
    assert set(cells) == set(expected)
    for column, (neuron, norm, own) in expected.items():
        args = coco_train.parse([*survey.train_args(cells[column], str(tmp_path)), "--data-dir", str(root)])
        assert (args.neuron, args.norm, args.epochs, args.batch_size, args.img_size) == (neuron, norm, 100, 16, 640)
        assert set(args.survey_quirks) == training | own
