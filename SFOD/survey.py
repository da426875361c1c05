"""The survey's Gen1 results and how to request each of its seven variants (spec §0.2, §2.6, §2.8; the survey's
``SFOD/results_corr.txt`` = ``acc_gen1.xlsx``), kept in one place for the docs and the table of record.

``GEN1`` maps the table column to the run's flags and its recorded numbers: the 12 COCO stats of the final (epoch-50)
weights on the test split under our ``metrics.csv`` names (``AP`` = mAP@[.5:.95], ``AP50`` = mAP@.5, ...),
``sop_m`` (SOP per sample per time step, millions), the N-CARS pre-training accuracy (%) of the backbone checkpoint,
the learning rate, and whether the reported run was resumed from a checkpoint (CLIF: from epoch 32).
"""
from __future__ import annotations

from dataclasses import dataclass

STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# survey quirks that the survey's code applies to a neuron or a norm (common.quirks; --survey-quirk NAME)
QUIRKS = {"clif": ("clif_sigmoid_carry",), "online_lif": ("ots_batch_eval",), "blockalif": ("blockalif_frozen_b",),
          "osr": ("osr_fold_next_batch",)}  # osr_stats_over_T: a no-op with Gen1's fixed T


@dataclass(frozen=True)
class Gen1Cell:
    neuron: str
    norm: str
    lr: float
    stats: tuple[float, ...]  # in STAT_KEYS order
    sop_m: float
    pretrain_acc: float
    resumed: bool = False

    def metrics(self) -> dict[str, float]:
        return dict(zip(STAT_KEYS, self.stats))

    def flags(self, survey_quirks: bool = True) -> list[str]:
        """Command-line flags of this cell for ``SFOD/train.py`` (and ``SFOD/pretrain.py``, without ``--lr``)."""
        out = ["--neuron", self.neuron, "--norm", self.norm]
        if survey_quirks:
            for name in QUIRKS.get(self.neuron, ()) + QUIRKS.get(self.norm, ()):
                out += ["--survey-quirk", name]
        return out


# column (as in common.survey.record.DETECTION_TABLES: PSN = Sliding PSN k = 3, TEBN = LIF + TEBN) -> cell
GEN1 = {
    "IF": Gen1Cell("if", "bn", 1e-3, (
        0.00023276557937252428, 0.0013131505419299704, 8.358756305070185e-06, 0.00019425710186357683,
        0.0038272769351139443, 0.001271702228247224, 0.001583629157383124, 0.013224792568467928,
        0.05494099040291792, 0.08252535496957406, 0.04265949812836316, 0.028016329638717318),
        385.8605754133301, 81.0),
    "LIF": Gen1Cell("lif", "bn", 1e-3, (
        0.21057425990048825, 0.43992195828987324, 0.17282688852478617, 0.0644809411961791,
        0.2551603824047747, 0.21849255163741482, 0.20266318233137018, 0.38006586418653965,
        0.4074153687178753, 0.27177615943159644, 0.4392906296915581, 0.4274642524748288),
        296.33485310595705, 91.69),
    "CLIF": Gen1Cell("clif", "bn", 1e-4, (
        0.09020373604098102, 0.23881171007701407, 0.05172719176539637, 0.03070400772004683,
        0.11414674240585926, 0.1397188678978684, 0.12034040863642015, 0.26151920799736617,
        0.3102802020019058, 0.22210536134647607, 0.3300020276159158, 0.33405180923371974),
        353.02718818798826, 85.34, resumed=True),
    "PSN": Gen1Cell("sliding_psn", "bn", 1e-3, (
        0.23906285357767756, 0.4781183010530182, 0.20828569215654005, 0.09444843101254656,
        0.28109926701879656, 0.21904000001477797, 0.223110805099369, 0.4097051471637451,
        0.43001638950757287, 0.2806969026798818, 0.46330911623735443, 0.4251956595312632),
        293.53200905249025, 91.41),
    "TEBN": Gen1Cell("lif", "tebn", 1e-3, (
        0.26555922723310904, 0.5213307913985457, 0.23629334795384585, 0.10582173016210801,
        0.311527957797925, 0.26251158297263244, 0.23491764561128797, 0.42712784175858776,
        0.445953964544098, 0.29014908835175174, 0.48061053761908246, 0.4606428208816312),
        214.71965004846192, 90.96),
    "OSR": Gen1Cell("online_lif", "osr", 1e-4, (
        0.00031848838204954767, 0.0006969921050820483, 7.751314032357488e-06, 0.000990248190301207,
        0.00036134914367823306, 0.000279141848062975, 0.0006427609542259034, 0.0014354803392513382,
        0.004153073224140713, 0.0020202116136501884, 0.00442689735882157, 0.006801195814648731),
        305.9300718242836, 56.23),
    "BlockALIF": Gen1Cell("blockalif", "bn", 1e-3, (
        0.04574062475578002, 0.13473591193224072, 0.019654683675039725, 0.02365895902969289,
        0.06093944390900633, 0.011186429894357412, 0.08168630763110575, 0.23200579162757448,
        0.2891250252787454, 0.23123309386030969, 0.30035782406501643, 0.23878112925515413),
        232.6882028635254, 68.14),
}



def pretrain_command(column: str, data_dir: str = "NCARS_ROOT") -> list[str]:
    """``python SFOD/pretrain.py ...`` for the backbone of a survey cell (every recipe value is the default)."""
    return ["python", "SFOD/pretrain.py", "--data-dir", data_dir, *GEN1[column].flags()]


def train_command(column: str, data_dir: str = "GEN1_ROOT", backbone: str = "PRETRAIN_RUN_DIR") -> list[str]:
    """``python SFOD/train.py ...`` for a survey cell (lr: the default follows --neuron / --norm)."""
    return ["python", "SFOD/train.py", "--data-dir", data_dir, "--backbone-ckpt", backbone, *GEN1[column].flags()]


__all__ = ["GEN1", "QUIRKS", "STAT_KEYS", "Gen1Cell", "pretrain_command", "train_command"]
