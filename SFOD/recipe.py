"""What the two SFOD scripts (``SFOD/pretrain.py``, ``SFOD/train.py``) share: the survey's recipe defaults, the AMP
switch and the neuron settings (spec §2.6).

Both run AdamW with AMP (``precision='16-mixed'``), gradient-norm clipping at 1.0 and T = 5 steps of 20 ms; the seed
is the survey's 2025 (recorded for the detection runs; assumed for the pre-training).
"""
from __future__ import annotations

from common import methods
from common.errors import UsageError
from common.neuron import NeuronConfig
from SFOD.model import survey_neuron_config

DEFAULTS = dict(opt="adamw", T=5, amp=True, clip_grad_norm=1.0, skip_nonfinite=True, label_smoothing=0.0, seed=2025)


def add_amp_switch(parser) -> None:
    """``--no-amp`` (AMP is on by default in this recipe; off CUDA the engine trains in fp32 anyway)."""
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="train in fp32 (the recipe uses AMP)")


def neuron_config(args) -> NeuronConfig:
    """The flags' neuron with the survey's SFOD settings filled in where the flags leave them open."""
    return survey_neuron_config(NeuronConfig.from_args(args))


def require_bptt(args) -> None:
    """The SFOD models read the whole sequence at once (rates over T): only ``--method bptt`` drives them."""
    if args.method != "bptt":
        raise UsageError(f"--method {args.method}: the SFOD models train with --method bptt only")
    if methods.get(args.method).model_kind != "snn":
        raise UsageError(f"--method {args.method} trains a non-spiking variant, which SFOD does not have")


def read_data_first(task) -> None:
    """Open the dataset before the engine claims a run directory, so bad data (a one-line error) leaves nothing
    behind; prints the sample counts."""
    train, test = task.data
    print(f"{task.name}: {len(train)} training and {len(test)} test samples", flush=True)
