"""The survey's published speed numbers (all measured on a GPU whose model the survey does not state).

* ``survey_outs.csv``: raw ms per call from the survey's ``speed/outs.csv`` (``cmp_speed2.py``; timing = mean of
  the last 64 of 128 CUDA-event timings after one warm-up). Columns: mode (train/infer), power, ``N = 2 << power``
  (= 2**(power+1)), T, then ``loop`` (TorchScript/Python-loop LIF), ``psn`` (addmm PSN), ``spikingjelly_cupy``
  (SpikingJelly 0.0.0.0.15 ``LIFNode`` CuPy backend), ``blockalif-L{0,1,3,7}`` and ``alif-L{0,1,3,7}``
  (latency L = block length - 1; empty where the survey skipped ``L + 1 >= T``).
* :data:`THROUGHPUT`: the survey's table of training / test samples/s and GPU memory (MB, nvidia-smi style) per
  method (``acc_cifar.xlsx``; batch 128, AMP training, fp32 test, data loading included).
"""
from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

OUTS_CSV = Path(__file__).with_name("survey_outs.csv")
SURVEY_LABEL = "survey (GPU, cmp_speed2.py)"

# impl name in speed/bench.py -> column of survey_outs.csv
IMPL_TO_SURVEY = {
    "loop": "loop", "psn": "psn", "spikingjelly": "spikingjelly_cupy",
    **{f"{kind}-L{lat}": f"{kind}-L{lat}" for kind in ("blockalif", "alif") for lat in (0, 1, 3, 7)},
}


@cache
def survey_times() -> dict[tuple[str, int, int], dict[str, float]]:
    """``{(mode, T, N): {survey column: ms}}``; missing entries are left out."""
    table = {}
    with OUTS_CSV.open() as f:
        for row in csv.DictReader(f):
            key = (row["mode"], int(row["T"]), int(row["N"]))
            table[key] = {k: float(v) for k, v in row.items() if k not in ("mode", "power", "N", "T") and v}
    return table


def survey_ms(impl: str, mode: str, T: int, N: int) -> float | None:
    """The survey's time for ``impl`` at this configuration, or ``None`` when it did not run it."""
    column = IMPL_TO_SURVEY.get(impl)
    return survey_times().get((mode, T, N), {}).get(column) if column else None


# acc_cifar.xlsx, rows 26-33: (train samples/s, test samples/s, GPU memory MB)
THROUGHPUT = {
    "cf10": {
        "IF": (1673.0782, 1472.1919, 5009), "LIF": (1659.5532, 1466.3966, 5009),
        "CLIF": (907.4299, 1003.2685, 9021), "PSN": (1242.208, 1444.4706, 5281),
        "TEBN": (1088.9637, 1336.5004, 7813), "OSR": (688.1068, 2044.9265, 3067),
        "BlockALIF": (355.736, 596.9425, 8405), "Tandem": (1602.2805, 1503.9044, 3281),
        "Response distillation": (1495.4977, 1456.3245, 4929), "Feature distillation": (1284.1706, 1411.5252, 6549),
    },
    "scf10": {
        "IF": (5872.1064, 8679.8392, 1863), "LIF": (5819.6672, 9016.528, 1863),
        "CLIF": (1112.3775, 4088.754, 2395), "Sliding PSN": (3032.3033, 8403.4047, 1959),
        "TEBN": (4151.2158, 8049.8185, 2601), "OSR": (163.9427, 1405.7603, 1201),
        "BlockALIF": (445.4115, 1626.4771, 3755),
    },
}
