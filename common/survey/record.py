"""The cells of the survey's result tables (脉冲深度学习梯度替代算法研究综述), as data: the published numbers (its
workbooks acc_cifar.xlsx, acc_shd.xlsx and speed/outs.csv, exactly as published) and the complete argument list of
the run behind each (read from the survey's code and logs; specs survey-cf10-scf10-speed.md and
survey-shd-gen1-coco.md, with their errata); Gen1 also from results_corr.txt / acc_gen1.xlsx, COCO from
coco/results.txt. :mod:`common.survey` turns them into :class:`common.survey.Cell`
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
              "fmt": ".4g", "command": "speed",
              "notes": ["Published times: common/survey/speed_outs.csv (the survey's speed/outs.csv)."]},
    # Gen1 (SFOD/train.py, backbone from SFOD/pretrain.py on N-CARS) and COCO (coco/train.py); spec §2.8, §3.8
    "gen1_pretrain_acc": {"title": "Gen1: N-CARS pre-training accuracy (%) of the backbone", "fmt": ".2f",
                          "metric": "best_test_acc_pct",
                          "notes": ["PSN = Sliding PSN k = 3; TEBN = LIF + TEBN. Ours: best test accuracy of "
                                    "SFOD/pretrain.py (the survey's best validation accuracy; N-CARS test = val)."]},
    "gen1_map50": {"title": "Gen1: mAP@0.5 (final weights)", "metric": "final_test_AP50", "fmt": ".4f",
                   "notes": ["The survey reports the final (epoch-50) weights: ours = summary.json final_test_AP50 "
                             "(the last metrics.csv row), not the best epoch."]},
    "gen1_map": {"title": "Gen1: mAP@[.5:.95] (final weights)", "metric": "final_test_AP", "fmt": ".4f",
                 "notes": ["Ours = summary.json final_test_AP (the last metrics.csv row)."]},
    "gen1_sop": {"title": "Gen1: SOP (M per sample per step)", "metric": "sop_m", "fmt": ".5g", "command": "sop",
                 "notes": ["--sop-mode gen1_survey (the survey's SFOD counter) on the final weights."]},
    "coco_map": {"title": "COCO: AP@[.5:.95] (pycocotools, best weights)", "metric": "final_eval.test_AP",
                 "fmt": ".3f", "notes": ["PSN = Sliding PSN k = 3; TEBN = LIF + TEBN, TEBN-IF = IF + TEBN; no "
                                         "BlockALIF result. Ours = summary.json final_eval (pycocotools on "
                                         "checkpoint_best.pt), not the per-epoch YOLO AP."]},
    "coco_map50": {"title": "COCO: AP@.5 (pycocotools, best weights)", "metric": "final_eval.test_AP50",
                   "fmt": ".3f", "notes": []},
    "coco_sop": {"title": "COCO: printed SOP (M per image)", "metric": "sop_m", "fmt": ".7g", "command": "sop",
                 "notes": ["--sop-mode coco_survey: the survey's printed values, which carry its extra C_out factor."]},
}
for _name in ("sop", "first_layer_flop"):
    TABLES[_name]["command"] = "sop"  # counted on the finished run of the accuracy cell
for _name in ("train_speed", "test_speed", "memory"):
    TABLES[_name]["command"] = "throughput"  # speed/throughput.py on the cell's configuration
TASK_NAMES = {"cf10": "CIFAR10", "scf10": "Sequential CIFAR10", "shd": "SHD", "speed": "Kernel speed",
              "ncars": "N-CARS (Gen1 backbone)", "sfod": "Gen1", "coco": "COCO"}

# How the survey's runs of each task were made (collect_results: a run enters the method tables only with this
# surrogate and alpha -- per-column overrides under "columns" -- and is marked * when T, width or epochs differ).
SETTINGS = {
    "cf10": {"sg": "atan", "sg_alpha": 2.0, "epochs": 256, "T": 4, "channels": 128, "sop_mode": "paper",
             "sop_key": "sop_m_per_sample"},
    "scf10": {"sg": "atan", "sg_alpha": 2.0, "epochs": 256, "T": 32, "channels": 128, "sop_mode": "paper",
              "sop_key": "sop_m_per_sample"},
    "shd": {"sg": "atan", "sg_alpha": 5.0, "epochs": 150, "T": 126, "hidden": 256, "sop_mode": "corrected",
            "sop_key": "sop_m_per_step", "columns": {"OSR": {"sg_alpha": 2.0}}},
    "ncars": {"sg": "atan", "sg_alpha": 2.0, "epochs": 30, "T": 5, "size": 64},  # no SOP cells
    "sfod": {"sg": "atan", "sg_alpha": 2.0, "epochs": 50, "T": 5, "sop_mode": "gen1_survey",
             "sop_key": "sop_m_per_step"},
    "coco": {"sg": "atan", "sg_alpha": 2.0, "epochs": 100, "T": 5, "img_size": 640, "sop_mode": "coco_survey",
             "sop_key": "sop_m_per_sample"},
}
SOP_MODES = {task: s["sop_mode"] for task, s in SETTINGS.items() if "sop_mode" in s}

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


# Gen1 and COCO: the survey's 12 pycocotools stats of each run, in this order (common.coco_eval.STAT_KEYS)
COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
_DET_QUIRKS = {"clif": ("clif_sigmoid_carry",), "online_lif": ("ots_batch_eval",), "blockalif": ("blockalif_frozen_b",),
               "osr": ("osr_fold_next_batch",)}  # osr_stats_over_T: a no-op with the detection tasks' fixed T
_PSN3 = ("--neuron-opt", "k=3")


def _variant(neuron: str, norm: str) -> tuple[str, ...]:
    """``--neuron --norm`` of a detection run, Sliding PSN's k = 3 and the survey quirks of its neuron and norm."""
    quirk_flags = [f for q in _DET_QUIRKS.get(neuron, ()) + _DET_QUIRKS.get(norm, ()) for f in ("--survey-quirk", q)]
    return ("--neuron", neuron, "--norm", norm, *(_PSN3 if neuron == "sliding_psn" else ()), *quirk_flags)


# Gen1 (spec §2.6, §2.8; results_corr.txt = acc_gen1.xlsx): column -> (neuron, norm, lr, N-CARS accuracy (%),
# SOP (M per sample per step), the 12 stats of the final (epoch-50) weights on the test split, note)
_GEN1 = {
    "IF": ("if", "bn", "0.001", 81, 385.8605754133301, (
        0.00023276557937252428, 0.0013131505419299704, 8.358756305070185e-06, 0.00019425710186357683,
        0.0038272769351139443, 0.001271702228247224, 0.001583629157383124, 0.013224792568467928,
        0.05494099040291792, 0.08252535496957406, 0.04265949812836316, 0.028016329638717318), ""),
    "LIF": ("lif", "bn", "0.001", 91.69, 296.33485310595705, (
        0.21057425990048825, 0.43992195828987324, 0.17282688852478617, 0.0644809411961791,
        0.2551603824047747, 0.21849255163741482, 0.20266318233137018, 0.38006586418653965,
        0.4074153687178753, 0.27177615943159644, 0.4392906296915581, 0.4274642524748288), ""),
    "CLIF": ("clif", "bn", "0.0001", 85.34, 353.02718818798826, (
        0.09020373604098102, 0.23881171007701407, 0.05172719176539637, 0.03070400772004683,
        0.11414674240585926, 0.1397188678978684, 0.12034040863642015, 0.26151920799736617,
        0.3102802020019058, 0.22210536134647607, 0.3300020276159158, 0.33405180923371974),
        "the survey's run was resumed from its epoch-32 checkpoint"),
    "PSN": ("sliding_psn", "bn", "0.001", 91.41, 293.53200905249025, (
        0.23906285357767756, 0.4781183010530182, 0.20828569215654005, 0.09444843101254656,
        0.28109926701879656, 0.21904000001477797, 0.223110805099369, 0.4097051471637451,
        0.43001638950757287, 0.2806969026798818, 0.46330911623735443, 0.4251956595312632), "Sliding PSN, k = 3"),
    "TEBN": ("lif", "tebn", "0.001", 90.96, 214.71965004846192, (
        0.26555922723310904, 0.5213307913985457, 0.23629334795384585, 0.10582173016210801,
        0.311527957797925, 0.26251158297263244, 0.23491764561128797, 0.42712784175858776,
        0.445953964544098, 0.29014908835175174, 0.48061053761908246, 0.4606428208816312), "LIF + TEBN"),
    "OSR": ("online_lif", "osr", "0.0001", 56.23, 305.9300718242836, (
        0.00031848838204954767, 0.0006969921050820483, 7.751314032357488e-06, 0.000990248190301207,
        0.00036134914367823306, 0.000279141848062975, 0.0006427609542259034, 0.0014354803392513382,
        0.004153073224140713, 0.0020202116136501884, 0.00442689735882157, 0.006801195814648731), "online LIF + OSR"),
    "BlockALIF": ("blockalif", "bn", "0.001", 68.14, 232.6882028635254, (
        0.04574062475578002, 0.13473591193224072, 0.019654683675039725, 0.02365895902969289,
        0.06093944390900633, 0.011186429894357412, 0.08168630763110575, 0.23200579162757448,
        0.2891250252787454, 0.23123309386030969, 0.30035782406501643, 0.23878112925515413),
        "FastSigmoid surrogate; its size-dependent neuron parameters start fresh when the backbone loads"),
}


def _gen1_pair(column: str, neuron: str, norm: str, lr: str, acc: float, sop: float, stats: tuple,
               note: str) -> list[dict]:
    """The N-CARS pre-training cell (``SFOD/pretrain.py``, task ``ncars``) and the Gen1 cell whose
    ``--backbone-ckpt`` is that run."""
    flags, run = _variant(neuron, norm), column.lower()
    pretrain = dict(task="ncars", column=column, run=f"pretrain_{run}", folder="SFOD", entry="pretrain.py",
                    args=("--epochs", "30", "-b", "64", "--lr", "0.005", *flags),
                    published={"gen1_pretrain_acc": acc}, note=f"the backbone of sfod {run}")
    stats = dict(zip(COCO_STATS, stats))
    gen1 = dict(task="sfod", column=column, run=run, folder="SFOD", teacher=f"ncars:pretrain_{run}",
                args=("--epochs", "50", "-b", "16", "--lr", lr, *flags, "--backbone-ckpt", "{teacher}"),
                published={"gen1_map50": stats["AP50"], "gen1_map": stats["AP"], "gen1_sop": sop}, stats=stats,
                note="; ".join(filter(None, (note, f"backbone: ncars pretrain_{run}"))))
    return [pretrain, gen1]


# COCO (spec §3.6-3.8; coco/results.txt: pycocotools on best.pt, 3 decimals as printed): column -> (neuron, norm,
# printed SOP (M; --sop-mode coco_survey), the 12 stats, note). Every run has the quirks of the survey's training code;
# every printed "flops" is the loop-overwritten 80,451.586 M.
_COCO_QUIRKS = ("lr_schedule_lag", "frozen_tebn_p", "fp16_best")
_COCO_RUNS = {
    "CLIF": ("clif", "bn", 537372.323724,
             (0.228, 0.410, 0.224, 0.111, 0.263, 0.313, 0.216, 0.376, 0.428, 0.227, 0.497, 0.583),
             "the survey's run was resumed (exp4)"),
    "TEBN": ("lif", "tebn", 447592.849188,
             (0.217, 0.397, 0.212, 0.102, 0.254, 0.299, 0.208, 0.367, 0.417, 0.214, 0.488, 0.563), "LIF + TEBN"),
    "LIF": ("lif", "bn", 444669.07828,
            (0.216, 0.397, 0.208, 0.098, 0.254, 0.297, 0.208, 0.364, 0.416, 0.214, 0.486, 0.562), ""),
    "IF": ("if", "bn", 363786.74275,
           (0.225, 0.409, 0.220, 0.103, 0.262, 0.310, 0.215, 0.373, 0.424, 0.220, 0.492, 0.578), ""),
    "PSN": ("sliding_psn", "bn", 1004679.03376,
            (0.213, 0.389, 0.206, 0.098, 0.245, 0.302, 0.204, 0.361, 0.414, 0.216, 0.481, 0.569), "Sliding PSN, k = 3"),
    "TEBN-IF": ("if", "tebn", 360619.852476,
                (0.223, 0.408, 0.218, 0.098, 0.259, 0.309, 0.213, 0.370, 0.422, 0.216, 0.492, 0.570), "IF + TEBN"),
    "OSR": ("online_lif", "osr", 561747.619018,
            (0.120, 0.247, 0.101, 0.077, 0.166, 0.134, 0.137, 0.253, 0.297, 0.163, 0.394, 0.335),
            "online LIF + OSR; the survey's run was resumed (exp35)"),
}


def _coco(column: str, neuron: str, norm: str, sop: float, stats: tuple, note: str) -> dict:
    stats = dict(zip(COCO_STATS, stats))
    quirk_flags = [f for q in _COCO_QUIRKS for f in ("--survey-quirk", q)]
    return dict(task="coco", column=column, run=column.lower().replace("-", "_"), stats=stats, note=note,
                args=("--epochs", "100", "-b", "16", "--img-size", "640", *_variant(neuron, norm), *quirk_flags),
                published={"coco_map": stats["AP"], "coco_map50": stats["AP50"], "coco_sop": sop})


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
    # -------------------------------------------------- Gen1: N-CARS pre-training (SFOD/pretrain.py), then SFOD
    *[cell for column, variant in _GEN1.items() for cell in _gen1_pair(column, *variant)],
    # ---------------------------------------------------------------------------------------------------- COCO
    *[_coco(column, *variant) for column, variant in _COCO_RUNS.items()],
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
    "A Gen1 cell (`sfod`) starts from the N-CARS pre-training run of its column (`ncars`, SFOD/pretrain.py): that "
    "run directory is its `--backbone-ckpt`, so `scripts/reproduce.py` refuses to start it before the backbone run "
    "has finished, a Slurm array task waits for it (exit 1: resubmit the index) and a sweep trains it first, as "
    "for a distillation cell and its teacher.",
    "Gen1 numbers are those of the final (epoch-50) weights; COCO numbers are pycocotools on the best weights "
    "(`summary.json` `final_eval`). Both tasks' cells keep the survey's 12 COCO stats (`Cell.stats`).",
]

