"""The survey's COCO results (``coco/results.txt``: pycocotools on ``best.pt``, 3 decimals as printed; spec §3.8),
keyed by variant, with the command line of this suite that reproduces each run.

``STATS[variant]`` has the 12 pycocotools stats under the keys of :data:`common.coco_eval.STAT_KEYS`, the printed
SOP (``sop_m``, the survey's ``paper`` convention, per image) and the loop-overwritten printed "flops" (``flops_m``).
"""
from __future__ import annotations

from common.coco_eval import STAT_KEYS

# Quirks of the survey's training code (every variant); see docs/coco.md.
SURVEY_QUIRKS = ("lr_schedule_lag", "frozen_tebn_p", "fp16_best")

# variant -> (neuron, norm, the variant's own survey quirks)
VARIANTS = {
    "clif+bn": ("clif", "bn", ("clif_sigmoid_carry",)),
    "lif+tebn": ("lif", "tebn", ()),
    "lif+bn": ("lif", "bn", ()),
    "if+bn": ("if", "bn", ()),
    "spsn3+bn": ("sliding_psn", "bn", ()),
    "if+tebn": ("if", "tebn", ()),
    "osr+osr": ("online_lif", "osr", ("ots_batch_eval", "osr_fold_next_batch")),
}

_TABLE = {  # AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl, printed sop (M)
    "clif+bn": ((0.228, 0.410, 0.224, 0.111, 0.263, 0.313, 0.216, 0.376, 0.428, 0.227, 0.497, 0.583), 537372.323724),
    "lif+tebn": ((0.217, 0.397, 0.212, 0.102, 0.254, 0.299, 0.208, 0.367, 0.417, 0.214, 0.488, 0.563), 447592.849188),
    "lif+bn": ((0.216, 0.397, 0.208, 0.098, 0.254, 0.297, 0.208, 0.364, 0.416, 0.214, 0.486, 0.562), 444669.07828),
    "if+bn": ((0.225, 0.409, 0.220, 0.103, 0.262, 0.310, 0.215, 0.373, 0.424, 0.220, 0.492, 0.578), 363786.74275),
    "spsn3+bn": ((0.213, 0.389, 0.206, 0.098, 0.245, 0.302, 0.204, 0.361, 0.414, 0.216, 0.481, 0.569), 1004679.03376),
    "if+tebn": ((0.223, 0.408, 0.218, 0.098, 0.259, 0.309, 0.213, 0.370, 0.422, 0.216, 0.492, 0.570), 360619.852476),
    "osr+osr": ((0.120, 0.247, 0.101, 0.077, 0.166, 0.134, 0.137, 0.253, 0.297, 0.163, 0.394, 0.335), 561747.619018),
}
PRINTED_FLOPS_M = 80451.586  # identical for every run (spec §3.7)

STATS = {variant: {**dict(zip(STAT_KEYS, stats)), "sop_m": sop, "flops_m": PRINTED_FLOPS_M}
         for variant, (stats, sop) in _TABLE.items()}


def command(variant: str, data_dir: str = "COCO_ROOT") -> list[str]:
    """The ``coco/train.py`` arguments of a survey variant with every survey quirk."""
    neuron, norm, own = VARIANTS[variant]
    quirk_flags = [flag for q in (*SURVEY_QUIRKS, *own) for flag in ("--survey-quirk", q)]
    return ["--data-dir", data_dir, "--neuron", neuron, "--norm", norm, *quirk_flags]
