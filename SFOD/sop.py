r"""The survey's Gen1 SOP convention (spec §2.7, SFOD/energy.py), registered as ``--sop-mode gen1_survey`` of
:func:`common.sop.count_sops`.

Every conv l follows a normalisation (pre-activation order), so the spikes it consumes are the **norm's input**
(rate source ``norm_input``; padded zeros included where the zero padding precedes the norm, as in the survey).
With the survey's per-slice (one sample, one step) operation count, which counts a bias term even for bias-free
convs::

    F_l = (k_h k_w C_in C_out / groups + C_out) H_out W_out
    SOP = sum_l rate_l F_l        (per sample per time step; all convs: stem, backbone, extras, SSD head)

The stem's input is event counts and the head's inputs are spike rates (multiples of 1/T): both are counted like
spikes, as the survey does (``first_layer_sop``).
"""
from __future__ import annotations

from common.sop import SOP_MODES, SopMode, syops

MODE = "gen1_survey"
OPTIONS = {"first_layer_sop": True}  # the SopOptions of the convention: every conv is counted as SOPs

SOP_MODES.register(MODE, SopMode(lambda conv, out_shape: syops(conv, out_shape[1:]), rate_source="norm_input"))
