"""The cells of the survey's result tables (脉冲深度学习梯度替代算法研究综述), as data: the published numbers (its
workbooks acc_cifar.xlsx, acc_shd.xlsx and speed/outs.csv, exactly as published) and the complete argument list of
the run behind each (read from the survey's code and logs; specs survey-cf10-scf10-speed.md and
survey-shd-gen1-coco.md, with their errata). :mod:`common.survey` turns them into :class:`common.survey.Cell`
objects and command lines; edit cells here and nowhere else, then run ``python scripts/gen_docs.py``.
"""
from __future__ import annotations

# Table -> how scripts/collect_results.py shows it (metric: a name of collect_results.METRICS or a summary.json key).
TABLES = {
    "accuracy": {"title": "Test accuracy (%), best epoch", "metric": "best_test_acc_pct", "fmt": ".2f",
                 "notes": ["PSN = full PSN on CIFAR10, Sliding PSN (k = 4) on sequential CIFAR10, Sliding PSN with k "
                           "in {2, 3, 4} on SHD (the survey does not record which k; all three run, the best shows).",
                           "The SHD TEBN entry is IF + TEBN."]},
    "sop": {"title": "SOP (M per sample; SHD: per sample per step)", "metric": "sop_m", "fmt": ".5g",
            "notes": ["The sequential CIFAR10 BlockALIF SOP is the integer 1 in the workbook, most likely a "
                      "placeholder.", "CIFAR10 / sequential CIFAR10: --sop-mode paper (the survey's syops-counter "
                      "numbers); SHD: --sop-mode corrected (its own Linear counter)."]},
    "first_layer_flop": {"title": "First-layer FLOP (M)", "metric": "first_layer_flop_m", "fmt": ".4g",
                         "notes": ["The survey gives one value per dataset; it is listed under LIF."]},
    "train_speed": {"title": "Train speed (samples/s)", "metric": "train_samples_per_s", "fmt": ".1f",
                    "extra_rows": ["shd"],
                    "notes": ["Survey: batch 128, AMP training, loader time included, GPU not stated; BlockALIF "
                              "with 0 loader workers. Ours: median over epochs."]},
    "test_speed": {"title": "Test speed (samples/s)", "metric": "test_samples_per_s", "fmt": ".1f",
                   "extra_rows": ["shd"],
                   "notes": ["Survey: fp32 test, batch 128, loader time included. Ours: median over epochs."]},
    "memory": {"title": "GPU memory (MB)", "metric": "peak_mem_mb", "fmt": ".0f", "extra_rows": ["shd"],
               "notes": ["Survey: probably nvidia-smi (CUDA context and allocator cache included). Ours: peak "
                         "allocated by torch, so expect lower numbers."]},
    "speed": {"title": "Neuron kernel speed (ms per call; speedup over the loop LIF)", "metric": "median_ms",
              "fmt": ".4g", "notes": ["Published times: common/survey/speed_outs.csv (the survey's speed/outs.csv)."]},
}
TASK_NAMES = {"cf10": "CIFAR10", "scf10": "Sequential CIFAR10", "shd": "SHD", "speed": "Kernel speed"}

# How the survey's runs of each task were made (collect_results: a run enters the method tables only with this
# surrogate and alpha -- per-column overrides under "columns" -- and is marked * when T, width or epochs differ).
SETTINGS = {
    "cf10": {"sg": "atan", "sg_alpha": 2.0, "epochs": 256, "T": 4, "channels": 128, "sop_mode": "paper",
             "sop_key": "sop_m_per_sample"},
    "scf10": {"sg": "atan", "sg_alpha": 2.0, "epochs": 256, "T": 32, "channels": 128, "sop_mode": "paper",
              "sop_key": "sop_m_per_sample"},
    "shd": {"sg": "atan", "sg_alpha": 5.0, "epochs": 150, "T": 126, "hidden": 256, "sop_mode": "corrected",
            "sop_key": "sop_m_per_step", "columns": {"OSR": {"sg_alpha": 2.0}}},
}
SOP_MODES = {task: s["sop_mode"] for task, s in SETTINGS.items()}

# speed/throughput.py: the survey's batch, width and AMP, with its timing (loader included, loop CLIF, BlockALIF -j 0)
THROUGHPUT_ARGS = ("--device", "cuda", "--channels", "128", "-b", "128", "--amp", "--survey-timing")
# speed/bench.py: the survey's grid (N = 2 << power, power 8, 12, 16) and statistic (mean of the last 64 of 128 calls)
SPEED_BENCH_ARGS = ("--device", "cuda", "--N", "512,8192,131072", "--T", "2,4,8,16,32,64", "--mode", "train,infer",
                    "--statistic", "survey")

_CF10 = ("--T", "4", "--epochs", "256", "-b", "128", "--amp", "--opt", "sgd", "--lr", "0.1")
_SCF10 = ("--epochs", "256", "-b", "128", "--amp", "--opt", "sgd", "--lr", "0.1")
_SHD = ("--epochs", "150", "-b", "256", "--survey-quirk", "untrained_variant_params",
        "--survey-quirk", "unmasked_padding", "--survey-quirk", "shd_folder_test_order")
_CLIF = ("--neuron", "clif", "--norm", "bn", "--method", "bptt", "--survey-quirk", "clif_sigmoid_carry")
_OSR = ("--survey-quirk", "ots_batch_eval", "--survey-quirk", "osr_stats_over_T",
        "--survey-quirk", "osr_fold_next_batch")
_BLOCKALIF = ("--neuron", "blockalif", "--norm", "bn", "--method", "bptt", "--survey-quirk", "blockalif_frozen_b")


def _bptt(neuron: str, norm: str = "bn") -> tuple[str, ...]:
    return ("--neuron", neuron, "--norm", norm, "--method", "bptt")


def _published(acc, sop, speed=None) -> dict:
    """Published numbers of one method cell: accuracy, SOP and (train, test samples/s, GPU MB) where given."""
    out = {"accuracy": acc, "sop": sop}
    if speed is not None:
        out.update(train_speed=speed[0], test_speed=speed[1], memory=speed[2])
    return out


CELLS = [
    # ------------------------------------------------------------------------------------------------- CIFAR10
    dict(task="cf10", column="ANN", run="ann", args=(*_CF10, "--method", "ann"),
         note="the distillation teacher (its checkpoint_latest.pt); no number in the survey"),
    dict(task="cf10", column="IF", run="if", args=(*_CF10, *_bptt("if")),
         published=_published(93.04, 12.063, (1673.0782, 1472.1919, 5009))),
    dict(task="cf10", column="LIF", run="lif", args=(*_CF10, *_bptt("lif")),
         published={**_published(92.98, 10.095, (1659.5532, 1466.3966, 5009)), "first_layer_flop": 0.115}),
    dict(task="cf10", column="CLIF", run="clif", args=(*_CF10, *_CLIF),
         published=_published(93.21, 13.774, (907.4299, 1003.2685, 9021)),
         note="the survey's CLIFSpike carries sigmoid(m) (in-place sigmoid_) in cf10 too"),
    dict(task="cf10", column="PSN", run="psn", args=(*_CF10, *_bptt("psn")),
         published=_published(93.22, 31.31, (1242.208, 1444.4706, 5281)), note="full T x T PSN"),
    dict(task="cf10", column="TEBN", run="tebn", args=(*_CF10, *_bptt("lif", "tebn")),
         published=_published(93.32, 15.672, (1088.9637, 1336.5004, 7813))),
    dict(task="cf10", column="OSR", run="osr",
         args=(*_CF10, "--neuron", "online_lif", "--norm", "osr", "--method", "online", *_OSR),
         published=_published(92.61, 22.337, (688.1068, 2044.9265, 3067))),
    dict(task="cf10", column="BlockALIF", run="blockalif", args=(*_CF10, *_BLOCKALIF, "--neuron-opt", "latency=1"),
         published=_published(90.27, 15.516, (355.736, 596.9425, 8405)),
         note="the ATan latency-1 run (blockalifatan_la1); the survey ran it with -j 0"),
    dict(task="cf10", column="Tandem", run="tandem",
         args=(*_CF10[:-4], "--method", "tandem", "--opt", "sgd", "--lr", "0.001",
               "--survey-quirk", "tandem_count_readout", "--survey-quirk", "tandem_authors_layers"),
         published=_published(89.68, 15.184, (1602.2805, 1503.9044, 3281)),
         note="spike-count readout fc10(count) and the authors' lib/snn.py layers; --sop-mode paper counts pool4 "
              "twice as the survey's hooks did"),
    dict(task="cf10", column="KD-response", run="distill_response", teacher="ann",
         args=(*_CF10, *_bptt("lif")[:4], "--method", "distill_response", "--teacher", "{teacher}",
               "--kd-alpha", "0.001", "--kd-temp", "4", "--survey-quirk", "kd_raw_teacher_logits"),
         published=_published(93.11, 10.16, (1495.4977, 1456.3245, 4929))),
    dict(task="cf10", column="KD-feature", run="distill_feature", teacher="ann",
         args=(*_CF10, *_bptt("lif")[:4], "--method", "distill_feature", "--teacher", "{teacher}",
               "--kd-beta", "0.1"),
         published=_published(93.18, 13.735, (1284.1706, 1411.5252, 6549))),
    # --------------------------------------------------------------------------------------- sequential CIFAR10
    dict(task="scf10", column="IF", run="if", args=(*_SCF10, *_bptt("if")),
         published=_published(78.31, 2.548, (5872.1064, 8679.8392, 1863))),
    dict(task="scf10", column="LIF", run="lif", args=(*_SCF10, *_bptt("lif")),
         published={**_published(80.5, 1.819, (5819.6672, 9016.528, 1863)), "first_layer_flop": 0.041}),
    dict(task="scf10", column="CLIF", run="clif", args=(*_SCF10, *_CLIF),
         published=_published(81.55, 2.047, (1112.3775, 4088.754, 2395)),
         note="the survey's CLIFSpike carries sigmoid(m) (in-place sigmoid_) in scf10 too"),
    dict(task="scf10", column="PSN", run="psn", args=(*_SCF10, *_bptt("sliding_psn"), "--neuron-opt", "k=4"),
         published=_published(86.31, 2.084, (3032.3033, 8403.4047, 1959)), note="Sliding PSN, k = 4"),
    dict(task="scf10", column="TEBN", run="tebn", args=(*_SCF10, *_bptt("lif", "tebn")),
         published=_published(82.6, 2.027, (4151.2158, 8049.8185, 2601))),
    dict(task="scf10", column="OSR", run="osr",
         args=(*_SCF10, "--neuron", "online_lif", "--norm", "osr", "--method", "online", *_OSR),
         published=_published(63.63, 3.407, (163.9427, 1405.7603, 1201))),
    dict(task="scf10", column="BlockALIF", run="blockalif",
         args=(*_SCF10, *_BLOCKALIF, "--neuron-opt", "latency=3"),
         published=_published(34.62, 1, (445.4115, 1626.4771, 3755)),
         note="the latency-3 ATan run (blockalifatan_la3, best 34.62; latency 1 peaked at 64.81); SOP 1 is a "
              "placeholder in the workbook"),
    # ---------------------------------------------------------------------------------------------------- SHD
    dict(task="shd", column="IF", run="if", args=(*_SHD, *_bptt("if")),
         published=_published(78.33, 0.025137400787353499)),
    dict(task="shd", column="LIF", run="lif", args=(*_SHD, *_bptt("lif")),
         published=_published(66.98, 0.026226556091308501)),
    dict(task="shd", column="CLIF", run="clif", args=(*_SHD, *_CLIF),
         published=_published(66.1, 0.026319002685546801)),
    *[dict(task="shd", column="PSN", run=f"psn_k{k}", args=(*_SHD, *_bptt("sliding_psn"), "--neuron-opt", f"k={k}"),
           published=_published(69.23, 0.026405228515625),
           note="Sliding PSN; the survey does not record k, so k = 2, 3, 4 all run and the best stands for the cell")
      for k in (2, 3, 4)],
    dict(task="shd", column="TEBN", run="tebn_if", args=(*_SHD, *_bptt("if", "tebn")),
         published=_published(74.54, 0.026190912231445301),
         note="IF + TEBN (checkpoint logs/if_tebn); only TEBN pads to 126 steps (AutoPadding)"),
    dict(task="shd", column="OSR", run="osr",
         args=(*_SHD, "--neuron", "online_lif", "--norm", "osr", "--method", "bptt", "--sg-alpha", "2", *_OSR),
         published=_published(40.93, 0.022753688842773401), note="OnlineLIFNode with ATan(alpha = 2)"),
    dict(task="shd", column="BlockALIF", run="blockalif", args=(*_SHD, *_BLOCKALIF, "--neuron-opt", "latency=1"),
         published=_published(82.36, 0.023854278411865201)),
    # ------------------------------------------------------------------------------------------- kernel speed
    *[dict(task="speed", column=column, run=impl, args=(*SPEED_BENCH_ARGS, "--impl", impl if impl == "loop" else
                                                         f"loop,{impl}"),
           published={"speed": f"speed_outs.csv: {csv_column}"}, note=note)
      for column, impl, csv_column, note in (
          ("LIF", "loop", "loop", "TorchScript-helper Python loop LIF (the reference of every speedup)"),
          ("PSN", "psn", "psn", "addmm PSN"),
          ("cp", "spikingjelly-cupy", "spikingjelly_cupy", "SpikingJelly LIFNode, CuPy backend (CUDA only)"),
          *[(f"BlockALIF-L{lat}", f"blockalif-survey-L{lat}", f"blockalif-L{lat}",
             "the authors' conv-based Blocks, FastSigmoid, batch 1") for lat in (0, 1, 3, 7)],
          *[(f"ALIF-L{lat}", f"alif-survey-L{lat}", f"alif-L{lat}",
             "the authors' sequential ALIF, FastSigmoid, batch 1") for lat in (0, 1, 3, 7)])],
]

NOTES = [
    "Every survey-compatibility switch is one `--survey-quirk NAME` (common/quirks.py); the table below lists what "
    "each reproduces. Default behaviour follows the methods' papers.",
    "`--sop-mode paper` stays a counting mode, not a quirk: it is a convention of the SOP counter (common/sop "
    "SOP_MODES), chosen when a finished run is counted (`--sop --resume RUN`), changes nothing in training and is "
    "not part of a run's recorded configuration; one run can be counted in both conventions.",
    "SOP cells count the finished run of the accuracy cell: `--sop --sop-mode MODE --resume RUN_DIR` (the run's "
    "recorded configuration is taken over).",
    "Throughput cells time the cell's configuration with speed/throughput.py at the survey's batch, width and AMP; "
    "`--survey-timing` reproduces its timing (loader included, Python-loop CLIF, BlockALIF with -j 0).",
]

# Gen1 (SFOD) and COCO: the published numbers only, until their cells (with commands) join through
# common.survey.EXTENSIONS; cells of these tasks then take precedence over these rows.
_DET = ("IF", "LIF", "CLIF", "PSN", "TEBN", "OSR", "BlockALIF")
_COCO = ("IF", "LIF", "CLIF", "PSN", "TEBN", "TEBN-IF", "OSR")
DETECTION_TABLES = {
    "gen1_pretrain_acc": ("Gen1: N-CARS pre-training accuracy (%)", "pretrain_acc_pct", ".2f", "gen1", _DET,
                          (81, 91.69, 85.34, 91.41, 90.96, 56.23, 68.14),
                          ["PSN = Sliding PSN k = 3; TEBN = LIF + TEBN."]),
    "gen1_map50": ("Gen1: mAP@0.5", "map50", ".4f", "gen1", _DET,
                   (0.0013131505419299704, 0.43992195828987324, 0.23881171007701407, 0.4781183010530182,
                    0.5213307913985457, 0.0006969921050820483, 0.13473591193224072), []),
    "gen1_map": ("Gen1: mAP@0.5:0.95", "map", ".4f", "gen1", _DET,
                 (0.00023276557937252428, 0.21057425990048825, 0.09020373604098102, 0.23906285357767756,
                  0.26555922723310904, 0.00031848838204954767, 0.04574062475578002), []),
    "gen1_sop": ("Gen1: SOP (M)", "sop_m", ".5g", "gen1", _DET,
                 (385.8605754133301, 296.33485310595705, 353.02718818798826, 293.53200905249025, 214.71965004846192,
                  305.9300718242836, 232.6882028635254), []),
    "coco_map": ("COCO: AP@[.5:.95] (pycocotools)", "map", ".3f", "coco", _COCO,
                 (0.225, 0.216, 0.228, 0.213, 0.217, 0.223, 0.120),
                 ["PSN = Sliding PSN k = 3; TEBN = LIF + TEBN, TEBN-IF = IF + TEBN; no BlockALIF result."]),
    "coco_map50": ("COCO: AP@.5 (pycocotools)", "map50", ".3f", "coco", _COCO,
                   (0.409, 0.397, 0.410, 0.389, 0.397, 0.408, 0.247), []),
    "coco_sop": ("COCO: printed SOP (M)", "sop_m", ".7g", "coco", _COCO,
                 (363786.74275, 444669.07828, 537372.323724, 1004679.03376, 447592.849188, 360619.852476,
                  561747.619018), ["These values carry the survey's extra C_out factor."]),
}
TASK_NAMES.update(gen1="Gen1", coco="COCO")
