"""Synaptic-operation (SOP) counting: the counter (:mod:`common.sop.counter`) and the ``--sop`` command-line mode
of every task (:mod:`common.sop.cli`)."""
from __future__ import annotations

from common.sop.cli import add_args, check_args, run
from common.sop.counter import SOP_MODES, SopOptions, count_sops, write_sop_json

__all__ = ["SOP_MODES", "SopOptions", "add_args", "check_args", "count_sops", "run", "write_sop_json"]
