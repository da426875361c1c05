r"""SOP conventions of the COCO model for :func:`common.sop.count_sops`: ``--sop-mode corrected`` (the suite's)
and ``coco_survey`` (the survey's printed values, spec §3.7), with the task's :func:`options`.

Rates: every conv's own input over the evaluated images (all T steps; rectangular batches). Operation counts ``F_l``
use the layer shapes of one ``img_size x img_size`` image (as the survey's counter does), per sample and time step.
The stem conv (image input) and the two Detect convs (membrane input) see real values: they are multiply-accumulates,
not SOPs (``float_input_flop_m_per_step``).

* ``corrected``: ``F_l = k_h k_w C_in C_out / groups * H_out W_out`` (synapses used);
  ``SOP per step = sum_{spiking l} rate_l F_l``, per sample = T times that.
* ``coco_survey`` (``coco/energy.py`` of the survey): shapes recorded with T = N = 1 as 5-D ``[1, 1, C, H, W]`` make
  the syops formula treat ``(C_out, H, W)`` as spatial, so ``F_l = (k_h k_w C_in C_out + C_out) C_out H W`` (an
  extra factor C_out); ``SOP = sum_{spiking l} rate_l F_l``; and the printed "flops" (``extras["flops_m"]``) is
  overwritten inside the loop, ending as ``F(last spiking conv) + F(Detect P4) + F(Detect P5)`` = 80,451.586 M at
  640 for every run.
"""
from __future__ import annotations

from common.sop import SOP_MODES, SopMode, syops

MODES = ("corrected", "coco_survey")


def printed_flops(per_layer: list[dict]) -> dict:
    """The survey's "flops": each spiking conv overwrites it with its ``F``, each real-input conv adds its ``F``."""
    flops = 0.0
    for layer in per_layer:
        flops = layer["ops_per_step"] if layer["spiking"] else flops + layer["ops_per_step"]
    return {"flops_m": flops / 1e6}


SOP_MODES.register("coco_survey", SopMode(syops, extras=printed_flops))


def options(img_size: int) -> dict:
    """The :class:`common.sop.SopOptions` of the task: the image repeated at every step, the Detect convs fed
    membrane values, operation counts at one ``img_size`` square image."""
    return {"static_input": True, "float_layers": ("detect",), "nominal_shape": (3, img_size, img_size)}
