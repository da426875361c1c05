"""Synaptic-operation (SOP) counting: the counter (:mod:`common.sop.counter`), its counting conventions
(:mod:`common.sop.modes`, extended by tasks) and the ``--sop`` command-line mode of every task
(:mod:`common.sop.cli`)."""
from __future__ import annotations

from common.sop.cli import add_args, check_args, run
from common.sop.counter import SopOptions, count_sops, write_sop_json
from common.sop.modes import RATE_SOURCES, SOP_MODES, SopMode, synapses, syops

__all__ = ["RATE_SOURCES", "SOP_MODES", "SopMode", "SopOptions", "add_args", "check_args", "count_sops", "run",
           "synapses", "syops", "write_sop_json"]
