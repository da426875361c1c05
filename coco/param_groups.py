"""The survey's optimizer parameter groups for COCO (YOLOv5 v6.0 ``train.py`` plus its OSR additions).

    decay    (g1): every module attribute ``weight`` that is a Parameter, except BatchNorm2d's (convs, PSN taps)
    no_decay (g0): BatchNorm2d weights (TEBN's inner BN included) and OSR ``gamma``
    bias     (g2): every module attribute ``bias`` that is a Parameter (Detect, BN, Sliding-PSN) and OSR ``beta``

Everything else is never optimised -- notably TEBN's per-step scale ``p`` (so the survey's COCO "TEBN" equals BN)
and BlockALIF's ``beta/p/b``. Group names match :func:`common.optim.decay_groups` (the warm-up starts the ``bias``
group at ``--warmup-bias-lr``).
"""
from __future__ import annotations

from torch import nn

from common.norm import OSR


def survey_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    groups: dict[str, list[nn.Parameter]] = {"no_decay": [], "decay": [], "bias": []}
    for m in model.modules():
        if isinstance(getattr(m, "bias", None), nn.Parameter):
            groups["bias"].append(m.bias)
        if isinstance(m, nn.BatchNorm2d):
            groups["no_decay"].append(m.weight)
        elif isinstance(getattr(m, "weight", None), nn.Parameter):
            groups["decay"].append(m.weight)
        if isinstance(m, OSR):
            groups["no_decay"].append(m.gamma)
            groups["bias"].append(m.beta)
    return [{"params": params, "weight_decay": weight_decay if name == "decay" else 0.0, "name": name}
            for name, params in groups.items() if params]


def unoptimised(model: nn.Module, groups: list[dict]) -> list[str]:
    """Names of the parameters that no group holds (they keep their initial values)."""
    held = {id(p) for g in groups for p in g["params"]}
    return [name for name, p in model.named_parameters() if id(p) not in held]
