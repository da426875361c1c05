"""The survey's optimizer parameter groups for COCO (YOLOv5 v6.0 ``train.py`` plus its OSR additions).

    decay    (g1): every module attribute ``weight`` that is a Parameter, except BatchNorm2d's (convs, PSN taps)
    no_decay (g0): BatchNorm2d weights (TEBN's inner BN included) and OSR ``gamma``
    bias     (g2): every module attribute ``bias`` that is a Parameter (Detect, BN, Sliding-PSN) and OSR ``beta``

In the survey everything else is never optimised -- notably TEBN's per-step scale ``p`` (so the survey's COCO
"TEBN" equals BN) and BlockALIF's ``beta/p/b``; :func:`param_groups` adds them to ``no_decay`` unless
``--survey-quirk frozen_tebn_p``. Group names match :func:`common.optim.decay_groups` (the warm-up starts the
``bias`` group at ``--warmup-bias-lr``).
"""
from __future__ import annotations

from torch import nn

from common import quirks
from common.norm import OSR

quirks.register("frozen_tebn_p", "optimise only what YOLOv5's grouping collects: TEBN's per-step scale p (so TEBN "
                "equals BN) and BlockALIF's beta/p/b keep their initial values", tasks=("coco",))


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


def param_groups(model: nn.Module, weight_decay: float, survey: bool = False) -> list[dict]:
    """:func:`survey_param_groups`; unless ``survey``, every other trainable parameter joins ``no_decay``."""
    groups = survey_param_groups(model, weight_decay)
    if survey:
        return groups
    held = {id(p) for g in groups for p in g["params"]}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in held]
    no_decay = [g for g in groups if g["name"] == "no_decay"]
    if no_decay:
        no_decay[0]["params"].extend(rest)
    elif rest:
        groups.append({"params": rest, "weight_decay": 0.0, "name": "no_decay"})
    return groups


def unoptimised(model: nn.Module, groups: list[dict]) -> list[str]:
    """Names of the parameters that no group holds (they keep their initial values)."""
    held = {id(p) for g in groups for p in g["params"]}
    return [name for name, p in model.named_parameters() if id(p) not in held]
